package reflector

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podbridge/podbridge/translate"
)

// writtenOver remembers, per pod pair, the resourceVersions of the pods
// this process last wrote over (a status write, a binding, an update, a
// removal). While the cache still shows one of them it has not caught up
// with the write, and acting on it would repeat the write: a conflict, a
// second binding, a deletion of what is gone. The write's own watch event
// brings the pair back. A write that changed nothing (same resourceVersion)
// is not recorded, so no pair waits for an event that will not come.
type writtenOver struct {
	mu    sync.Mutex
	pairs map[types.NamespacedName]pairVersions
}

type pairVersions struct{ virtual, host string }

func (w *writtenOver) virtual(key types.NamespacedName, before, after string) {
	w.record(key, func(v *pairVersions) { v.virtual = before }, before, after)
}

func (w *writtenOver) host(key types.NamespacedName, before, after string) {
	w.record(key, func(v *pairVersions) { v.host = before }, before, after)
}

// record notes before as written over, unless the write left the object
// at before (after == before); after is "" when the response did not say.
func (w *writtenOver) record(key types.NamespacedName, set func(*pairVersions), before, after string) {
	if before == "" || before == after {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pairs == nil {
		w.pairs = map[types.NamespacedName]pairVersions{}
	}
	v := w.pairs[key]
	set(&v)
	w.pairs[key] = v
}

// lagging reports whether the cached pods of a pair predate a write of
// this process; once they do not, the pair is forgotten.
func (w *writtenOver) lagging(key types.NamespacedName, virtual, host *corev1.Pod) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.pairs[key]
	if !ok {
		return false
	}
	if (virtual != nil && v.virtual != "" && virtual.ResourceVersion == v.virtual) ||
		(host != nil && v.host != "" && host.ResourceVersion == v.host) {
		return true
	}
	delete(w.pairs, key)
	return false
}

// gonePods remembers the virtual pods this process saw deleted, by sync ID
// and UID, for ttl (the orphan grace period). That grace period is for host
// pods and token Secrets whose virtual pod may not be stored yet (its
// admission is under way); the objects of a pod seen deleted need no wait.
// A restarted process has forgotten them, and the grace period applies.
type gonePods struct {
	ttl   time.Duration
	clock clock.PassiveClock

	mu        sync.Mutex
	bySyncID  map[string]time.Time
	byUID     map[types.UID]time.Time
	lastPrune time.Time
}

func newGonePods(ttl time.Duration, c clock.PassiveClock) *gonePods {
	return &gonePods{ttl: ttl, clock: c, bySyncID: map[string]time.Time{}, byUID: map[types.UID]time.Time{}}
}

func (g *gonePods) put(pod *corev1.Pod) {
	syncID := pod.Annotations[translate.AnnotationSyncID]
	if syncID == "" {
		return // not admitted by podbridge.
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock.Now()
	g.bySyncID[syncID], g.byUID[pod.UID] = now, now
	if now.Sub(g.lastPrune) < g.ttl/2 {
		return
	}
	g.lastPrune = now
	for id, at := range g.bySyncID {
		if now.Sub(at) > g.ttl {
			delete(g.bySyncID, id)
		}
	}
	for uid, at := range g.byUID {
		if now.Sub(at) > g.ttl {
			delete(g.byUID, uid)
		}
	}
}

// syncID reports whether the virtual pod of this sync ID was seen deleted.
func (g *gonePods) syncID(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.bySyncID[id]
	return ok && id != ""
}

// uid reports whether the virtual pod of this UID was seen deleted.
func (g *gonePods) uid(uid types.UID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.byUID[uid]
	return ok && uid != ""
}

// recordDeletes wraps a pod event handler and passes each deleted pod to
// record before its key is enqueued, so the reconcile it causes knows.
type recordDeletes struct {
	handler.TypedEventHandler[*corev1.Pod, reconcile.Request]
	record func(*corev1.Pod)
}

// Delete implements handler.TypedEventHandler.
func (h recordDeletes) Delete(ctx context.Context, e event.TypedDeleteEvent[*corev1.Pod], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.record(e.Object)
	h.TypedEventHandler.Delete(ctx, e, q)
}
