package reflector

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podbridge/podbridge/internal/kube"
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

// A full pass whose list fails (right after start-up a cache may not
// serve a kind yet) is retried at once, not left to the next period: a
// restarted reflector whose first list failed used to sit idle for the
// whole resync period.
func TestFullPassRetriesAFailedList(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var calls atomic.Int32
	key := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "pod"}}
	src := fullPass("test", time.Hour, func(context.Context) bool { return true },
		func(context.Context) ([]reconcile.Request, error) {
			if calls.Add(1) == 1 {
				return nil, errors.New("/v1, Kind=Pod is not cached")
			}
			return []reconcile.Request{key}, nil
		})
	if err := src.Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	got, shutdown := q.Get() // blocks until the retried list enqueues
	if shutdown || got != key {
		t.Fatalf("enqueued %v (shut down: %v), want %v", got, shutdown, key)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("lists: %d, want 2 (one failed, one retried)", n)
	}
}

// synced starts the informers it waits for: a cache's own
// WaitForCacheSync covers only the informers that already exist.
func TestSyncedStartsTheInformersItWaitsFor(t *testing.T) {
	informers := &informertest.FakeInformers{Scheme: kube.Scheme}
	if !synced(watched{informers, &corev1.Pod{}})(context.Background()) {
		t.Fatal("synced reported false")
	}
	if _, ok := informers.InformersByGVK[corev1.SchemeGroupVersion.WithKind("Pod")]; !ok {
		t.Errorf("no Pod informer was started; informers: %v", informers.InformersByGVK)
	}
}
