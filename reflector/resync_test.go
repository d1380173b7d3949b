package reflector

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// The full pass waits for the caches, runs once at start-up and then again
// every period, enqueueing every key it lists.
func TestFullPassRunsAtStartAndPeriodically(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	synced := make(chan struct{})
	var passes atomic.Int32
	key := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "pod"}}
	src := fullPass("test", 50*time.Millisecond,
		func(ctx context.Context) bool {
			select {
			case <-synced:
				return true
			case <-ctx.Done():
				return false
			}
		},
		func(context.Context) ([]reconcile.Request, error) {
			passes.Add(1)
			return []reconcile.Request{key}, nil
		})
	if err := src.Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	if n := passes.Load(); n != 0 {
		t.Fatalf("%d passes before the caches synced", n)
	}
	close(synced)

	got, _ := q.Get() // the start-up pass
	if got != key {
		t.Errorf("enqueued %v, want %v", got, key)
	}
	q.Done(got)
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return passes.Load() >= 3, nil
	})
	if err != nil {
		t.Fatalf("passes after start-up: %d, want periodic ones", passes.Load())
	}
}
