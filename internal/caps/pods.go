package caps

import (
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

// HostObjects admits creates of one kind of host object within a cap:
// host pods (NewHostPods, --max-host-pods) or host Services
// (NewHostServices, --max-host-services). It counts the virtual cluster's
// objects from an informer of their metadata (host pods claimed or not,
// held or running, until the host removes them), so pods of creates the
// tenant's own admission refused after podbridge's count too until they
// are collected: a tenant that floods creates fills its own cap, not the
// shared host. Creates admitted but not yet seen by the informer are held
// in memory, so concurrent admissions cannot pass the cap together.
type HostObjects struct {
	Max int
	// flag and kind name the cap and the objects in refusals
	// (FlagMaxHostPods and "host pod" unless NewHostServices made it).
	flag, kind string

	mu   sync.Mutex
	seen map[string]bool
	// reserved are creates admitted and not yet seen, by host pod name.
	reserved map[string]time.Time
	now      func() time.Time
}

// NewHostPods returns a counter for a cap of limit host pods (0: no cap).
func NewHostPods(limit int) *HostObjects {
	return &HostObjects{Max: limit, flag: FlagMaxHostPods, kind: "host pod", seen: map[string]bool{}, reserved: map[string]time.Time{}, now: time.Now}
}

// Handler is the informer event handler that keeps the count.
func (h *HostObjects) Handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { h.observe(obj, true) },
		UpdateFunc: func(_, obj any) { h.observe(obj, true) },
		DeleteFunc: func(obj any) {
			if gone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = gone.Obj
			}
			h.observe(obj, false)
		},
	}
}

func (h *HostObjects) observe(obj any, present bool) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if present {
		h.seen[m.GetName()] = true
		delete(h.reserved, m.GetName())
		return
	}
	delete(h.seen, m.GetName())
}

// Reserve admits creating host pod name, or refuses with a *LimitError
// when the cap is met. release gives the reservation back when the create
// failed. A name the informer shows already (a retried admission, a stale
// pod replaced) adds nothing.
func (h *HostObjects) Reserve(name string) (release func(), err error) {
	if h == nil || h.Max <= 0 {
		return func() {}, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for n, at := range h.reserved {
		if now.Sub(at) > reservationLifetime {
			delete(h.reserved, n)
		}
	}
	if h.seen[name] {
		return func() {}, nil
	}
	use := int64(len(h.seen) + len(h.reserved))
	if _, again := h.reserved[name]; !again && use+1 > int64(h.Max) {
		refusals.WithLabelValues(h.flag).Inc()
		return nil, &LimitError{Flag: h.flag, Object: h.kind + " " + name, Limit: int64(h.Max), Use: use, Adding: 1}
	}
	at := now
	h.reserved[name] = at
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.reserved[name].Equal(at) {
			delete(h.reserved, name)
		}
	}, nil
}
