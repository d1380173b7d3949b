package reflector

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// DefaultResyncPeriod is how often the full pass runs when Options leave it unset.
const DefaultResyncPeriod = 10 * time.Minute

// fullPass is a controller source that enqueues every key list returns once
// synced reports the caches ready, and again every period (with 10%
// jitter): the start-up pass and the periodic pass that catch whatever a
// missed event or a stopped reflector left behind, orphans included. A
// pass whose list fails is retried with backoff, not left to the next
// period.
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
				var keys []reconcile.Request
				err := wait.ExponentialBackoffWithContext(ctx, fullPassRetry, func(ctx context.Context) (bool, error) {
					var err error
					if keys, err = list(ctx); err != nil {
						log.Error(err, "Failed to list objects for the full pass; retrying")
						return false, nil
					}
					return true, nil
				})
				if err != nil {
					log.Error(err, "Gave up the full pass until the next period")
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

// fullPassRetry bounds the retries of a failed full-pass list: about two
// minutes in all.
var fullPassRetry = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 12, Cap: 30 * time.Second}

// watched is an object kind a controller reads from a cache.
type watched struct {
	cache cache.Cache
	obj   client.Object
}

// synced reports, once they are, that the informers of every kind have
// synced; false if ctx ends first. It starts the informers itself: a
// cache's WaitForCacheSync covers only the informers that exist, and a
// controller's watches create theirs asynchronously, so right after
// start-up it may report a cache synced that has no informer yet, and a
// list then fails with "not cached".
func synced(kinds ...watched) func(context.Context) bool {
	return func(ctx context.Context) bool {
		for _, k := range kinds {
			informer, err := k.cache.GetInformer(ctx, k.obj)
			if err != nil {
				return false // only when ctx ends or the kind is unknown: both fatal to the pass.
			}
			if !toolscache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
				return false
			}
		}
		return true
	}
}
