package reflector

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// DefaultResyncPeriod is how often the full pass runs when Options leave it unset.
const DefaultResyncPeriod = 10 * time.Minute

// fullPass is a controller source that enqueues every key list returns once
// synced reports the caches ready, and again every period (with 10%
// jitter): the start-up pass and the periodic pass that catch whatever a
// missed event or a stopped reflector left behind, orphans included.
//
// Unlike the cache's SyncPeriod, it covers both clusters' objects, needs no
// watch event to replay, and runs only where the controller runs (the
// leader).
func fullPass(name string, period time.Duration, synced func(context.Context) bool, list func(context.Context) ([]reconcile.Request, error)) source.Source {
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		log := logf.FromContext(ctx).WithValues("controller", name)
		go func() {
			if !synced(ctx) {
				return // stopped before the caches synced.
			}
			wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
				keys, err := list(ctx)
				if err != nil {
					log.Error(err, "Failed to list objects for the full pass")
					return
				}
				for _, k := range keys {
					q.Add(k)
				}
				log.V(1).Info("Enqueued full pass", "keys", len(keys))
			}, period, 0.1, true)
		}()
		return nil
	})
}

// synced reports, once they are, that all caches have synced; false if ctx ends first.
func synced(caches ...cache.Cache) func(context.Context) bool {
	return func(ctx context.Context) bool {
		for _, c := range caches {
			if !c.WaitForCacheSync(ctx) {
				return false
			}
		}
		return true
	}
}
