package caps

import (
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podbridge/podbridge/translate"
)

// FlagMaxClaimStorage names the cap on the storage the host claims of one
// virtual cluster request together.
const FlagMaxClaimStorage = "max-claim-storage"

// HostStorage admits host claim creates and resizes within a cap on the
// storage all host claims of the virtual cluster request together. It
// counts from an informer of the virtual cluster's host claims (their
// spec.resources.requests.storage, whatever made them, until the host
// removes them), so claims of creates the tenant's own admission refused
// after podbridge's count until collected. Writes admitted and not yet
// seen are held in memory, so concurrent admissions cannot pass the cap
// together.
type HostStorage struct {
	// Max is the cap in bytes (0: no cap).
	Max int64

	mu   sync.Mutex
	seen map[string]int64
	// total is the sum of seen.
	total int64
	// reserved are writes admitted and not yet seen, by host claim name.
	reserved map[string]storageReservation
	now      func() time.Time
}

type storageReservation struct {
	bytes int64
	at    time.Time
}

// NewHostStorage returns a counter for a cap of limit bytes (0: no cap).
func NewHostStorage(limit int64) *HostStorage {
	return &HostStorage{Max: limit, seen: map[string]int64{}, reserved: map[string]storageReservation{}, now: time.Now}
}

// Handler is the informer event handler that keeps the count; the
// informer holds host claims (*corev1.PersistentVolumeClaim).
func (h *HostStorage) Handler() toolscache.ResourceEventHandler {
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

func (h *HostStorage) observe(obj any, present bool) {
	c, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total -= h.seen[c.Name]
	if !present {
		delete(h.seen, c.Name)
		claimStorage.Set(float64(h.total))
		return
	}
	bytes := translate.RequestedStorage(c)
	h.seen[c.Name] = bytes
	h.total += bytes
	claimStorage.Set(float64(h.total))
	if r, ok := h.reserved[c.Name]; ok && r.bytes <= bytes {
		delete(h.reserved, c.Name)
	}
}

// Reserve admits host claim name requesting bytes (a create, or a resize
// of a claim the informer shows), or refuses with a *LimitError when the
// total would pass the cap. A write that keeps or shrinks a claim's
// request is always admitted. release gives the reservation back when the
// write failed.
func (h *HostStorage) Reserve(name string, bytes int64) (release func(), err error) {
	if h == nil || h.Max <= 0 {
		return func() {}, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	use := h.total
	for n, r := range h.reserved {
		switch seen := h.seen[n]; {
		case now.Sub(r.at) > reservationLifetime:
			delete(h.reserved, n)
		case r.bytes > seen:
			use += r.bytes - seen
		}
	}
	current := h.seen[name]
	if r, ok := h.reserved[name]; ok && r.bytes > current {
		current = r.bytes
	}
	if bytes <= current {
		return func() {}, nil
	}
	if use-current+bytes > h.Max {
		refusals.WithLabelValues(FlagMaxClaimStorage).Inc()
		return nil, &LimitError{Flag: FlagMaxClaimStorage, Object: "host claim " + name, Limit: h.Max, Use: use, Adding: bytes - current}
	}
	previous, had := h.reserved[name]
	at := now
	h.reserved[name] = storageReservation{bytes: bytes, at: at}
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.reserved[name].at.Equal(at) {
			if had {
				h.reserved[name] = previous
			} else {
				delete(h.reserved, name)
			}
		}
	}, nil
}

// formatBytes renders a byte count as a binary quantity (10Gi).
func formatBytes(n int64) string {
	return resource.NewQuantity(n, resource.BinarySI).String()
}

func storageLimitMessage(e *LimitError) string {
	return fmt.Sprintf("%s: requesting %s more would exceed this virtual cluster's limit of %s of storage requested by host claims (--%s; %s in use, including claims of recently refused creates until collected)",
		e.Object, formatBytes(e.Adding), formatBytes(e.Limit), e.Flag, formatBytes(e.Use))
}
