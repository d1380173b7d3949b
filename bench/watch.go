package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// probeCondition is the pod condition the bench writes on host pods to
// measure reflection: the reflector copies host conditions to the virtual
// pod, and kwok's stages leave it alone.
const probeCondition corev1.PodConditionType = "bench.podbridge.io/probe"

// podWatcher follows the pods of one namespace with an informer and keeps
// what the scenarios wait on: how many exist and are Ready, and when each
// pod's probe condition changed.
type podWatcher struct {
	cancel  context.CancelFunc
	factory informers.SharedInformerFactory

	mu     sync.Mutex
	ready  map[string]bool
	probe  map[string]string
	nReady int
	// changed is closed and replaced on every event, waking waiters.
	changed chan struct{}
	// onProbe, when set, is called with the receipt time of every new
	// probe condition message.
	onProbe func(name, message string, at time.Time)
}

// watchPods starts a watcher on namespace and returns once it has listed.
func watchPods(ctx context.Context, c *cluster, namespace string, onProbe func(name, message string, at time.Time)) (*podWatcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &podWatcher{
		cancel:  cancel,
		factory: informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithNamespace(namespace)),
		ready:   map[string]bool{},
		probe:   map[string]string{},
		changed: make(chan struct{}),
		onProbe: onProbe,
	}
	informer := w.factory.Core().V1().Pods().Informer()
	// Keep only what the bench reads: 10,000 full pods would cost the
	// bench, which shares the machine, memory and CPU.
	if err := informer.SetTransform(stripPod); err != nil {
		cancel()
		return nil, err
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.update(obj, false) },
		UpdateFunc: func(_, obj any) { w.update(obj, false) },
		DeleteFunc: func(obj any) { w.update(obj, true) },
	})
	if err != nil {
		cancel()
		return nil, err
	}
	w.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		w.stop()
		return nil, fmt.Errorf("watching pods in %s %s: cache did not sync", c.name, namespace)
	}
	return w, nil
}

func stripPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: kept as it is.
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: pod.Name, Namespace: pod.Namespace, ResourceVersion: pod.ResourceVersion, UID: pod.UID,
	}}
	out.Spec.NodeName = pod.Spec.NodeName
	out.Status.Phase = pod.Status.Phase
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady || c.Type == probeCondition {
			out.Status.Conditions = append(out.Status.Conditions, corev1.PodCondition{Type: c.Type, Status: c.Status, Message: c.Message})
		}
	}
	return out, nil
}

func (w *podWatcher) update(obj any, deleted bool) {
	now := time.Now()
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ready, probe := false, ""
	for _, c := range pod.Status.Conditions {
		switch c.Type {
		case corev1.PodReady:
			ready = c.Status == corev1.ConditionTrue
		case probeCondition:
			probe = c.Message
		}
	}
	w.mu.Lock()
	if w.ready[pod.Name] {
		w.nReady--
	}
	if deleted {
		delete(w.ready, pod.Name)
		delete(w.probe, pod.Name)
	} else {
		w.ready[pod.Name] = ready
		if ready {
			w.nReady++
		}
	}
	newProbe := !deleted && probe != "" && probe != w.probe[pod.Name]
	if newProbe {
		w.probe[pod.Name] = probe
	}
	close(w.changed)
	w.changed = make(chan struct{})
	onProbe := w.onProbe
	w.mu.Unlock()
	if newProbe && onProbe != nil {
		onProbe(pod.Name, probe, now)
	}
}

// setOnProbe replaces the probe callback.
func (w *podWatcher) setOnProbe(f func(name, message string, at time.Time)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onProbe = f
}

// waitUntil waits until cond holds for the counts, woken by each event.
func (w *podWatcher) waitUntil(ctx context.Context, timeout time.Duration, what string, alive func() error, cond func(total, ready int) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A dead component sends no events: check it every few seconds too.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		w.mu.Lock()
		total, ready, changed := len(w.ready), w.nReady, w.changed
		w.mu.Unlock()
		if cond(total, ready) {
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
			if err := alive(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (%d pods, %d ready)", what, ctx.Err(), total, ready)
		}
	}
}

// stop ends the watch.
func (w *podWatcher) stop() {
	w.cancel()
	w.factory.Shutdown()
}
