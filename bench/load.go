package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// labelSeries marks every pod the bench creates with the series it belongs to.
const labelSeries = "bench.podbridge.io/series"

// benchPod is the pod the load generator creates: one container and no
// resource requests, so the kwok nodes' pod count is the only capacity
// limit. It keeps the defaults a tenant gets, the projected
// service-account token included, so podbridge does the work it does for
// real pods.
func benchPod(name, series string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench", labelSeries: series}},
		Spec:       podSpec(),
	}
}

func podSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/bench/app:1"}}}
}

// podNames are n deterministic names: prefix-00000, prefix-00001, …
func podNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return names
}

// loadResult is one batch of requests.
type loadResult struct {
	// Latencies of the successful requests, in no particular order.
	Latencies  []time.Duration
	Errors     int
	FirstError string
	Wall       time.Duration
}

// runConcurrently calls do for every index in [0,n) from concurrency
// workers, timing each call; it stops early when ctx ends.
func runConcurrently(ctx context.Context, n, concurrency int, do func(ctx context.Context, i int) error) loadResult {
	var (
		next   atomic.Int64
		mu     sync.Mutex
		result loadResult
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range min(concurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				began := time.Now()
				err := do(ctx, i)
				took := time.Since(began)
				mu.Lock()
				if err != nil {
					result.Errors++
					if result.FirstError == "" {
						result.FirstError = err.Error()
					}
				} else {
					result.Latencies = append(result.Latencies, took)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	result.Wall = time.Since(start)
	if ctx.Err() != nil && len(result.Latencies)+result.Errors < n {
		result.Errors += n - len(result.Latencies) - result.Errors
		if result.FirstError == "" {
			result.FirstError = fmt.Sprintf("deadline: %v", ctx.Err())
		}
	}
	return result
}

// createPods creates a bench pod for each name.
func createPods(ctx context.Context, pods typedcorev1.PodInterface, names []string, series string, concurrency int) loadResult {
	return runConcurrently(ctx, len(names), concurrency, func(ctx context.Context, i int) error {
		_, err := pods.Create(ctx, benchPod(names[i], series), metav1.CreateOptions{})
		return err
	})
}

// deletePods deletes each named pod with its default grace period, as a
// tenant would; a pod already gone is no error.
func deletePods(ctx context.Context, pods typedcorev1.PodInterface, names []string, concurrency int) loadResult {
	return runConcurrently(ctx, len(names), concurrency, func(ctx context.Context, i int) error {
		if err := pods.Delete(ctx, names[i], metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
}

// paced calls do n times at a steady rate per second from a pool of
// workers, open loop: a slow call delays no other call unless every worker
// is busy. It returns the achieved rate.
func paced(ctx context.Context, rate float64, n, workers int, do func(ctx context.Context, i int)) float64 {
	jobs := make(chan int, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				do(ctx, i)
			}
		})
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	sent := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := range n {
		// Sleep until the i-th slot from the start, not for an interval
		// after the previous send, so delays do not accumulate.
		timer.Reset(time.Until(start.Add(time.Duration(i) * interval)))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
		jobs <- i
		sent++
	}
	close(jobs)
	wg.Wait()
	return float64(sent) / time.Since(start).Seconds()
}

// countPods counts the pods of a namespace cheaply: a list of one item
// carries the number of the others.
func countPods(ctx context.Context, cs kubernetes.Interface, namespace string) (int, error) {
	list, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("counting pods in %s: %w", namespace, err)
	}
	n := len(list.Items)
	if list.RemainingItemCount != nil {
		n += int(*list.RemainingItemCount)
	}
	return n, nil
}

// nsRef is a namespace in one cluster.
type nsRef struct {
	c         *cluster
	namespace string
}

// waitEmpty waits until every namespace has no pods, failing fast when a
// component died.
func (e *env) waitEmpty(ctx context.Context, timeout time.Duration, refs ...nsRef) error {
	var left string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := e.checkAlive(); err != nil {
			return false, err
		}
		for _, r := range refs {
			n, err := countPods(ctx, r.c.client, r.namespace)
			if err != nil {
				return false, err
			}
			if n > 0 {
				left = fmt.Sprintf("%d pods in %s %s", n, r.c.name, r.namespace)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for empty namespaces: %w (%s left)", err, left)
	}
	return nil
}

// emptyNamespaces deletes every pod of the first namespace one by one, as
// tenants do, and waits until it and the others are empty: for podbridge
// pods, the host namespace too. (One deletecollection request would do,
// but with thousands of pods it outlives the apiserver's 60 s request
// timeout.)
func (e *env) emptyNamespaces(ctx context.Context, timeout time.Duration, del nsRef, alsoWait ...nsRef) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pods := del.c.client.CoreV1().Pods(del.namespace)
	var names []string
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := pods.List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing pods in %s %s: %w", del.c.name, del.namespace, err)
		}
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	run := deletePods(ctx, pods, names, e.cfg.Concurrency[len(e.cfg.Concurrency)-1])
	if run.Errors > 0 {
		return fmt.Errorf("deleting pods in %s %s: %d of %d failed, first: %s", del.c.name, del.namespace, run.Errors, len(names), run.FirstError)
	}
	return e.waitEmpty(ctx, timeout, append([]nsRef{del}, alsoWait...)...)
}

// cleanupTimeout bounds the removal of n pods, orphan path included.
func (e *env) cleanupTimeout(n int) time.Duration {
	return 2*time.Minute + time.Duration(e.cfg.OrphanGraceSeconds*float64(time.Second)) + time.Duration(n)*50*time.Millisecond
}
