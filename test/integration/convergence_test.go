package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/translate"
)

// Host pods of this virtual cluster that no virtual pod claims are
// collected by sync ID, whatever their name: one under a name the webhook
// would not give (an older naming scheme, an operator's copy) and one that
// names no virtual pod at all.
func TestOrphansAreCollectedWhateverTheirName(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	renamed := hostPodFor(env.Options.Translate.VCluster, ns, "renamed-"+ns)
	renamed.Name = "old-scheme-" + ns
	bare := hostPodFor(env.Options.Translate.VCluster, ns, "bare-"+ns)
	bare.Name = "bare-" + ns
	delete(bare.Annotations, translate.AnnotationName)
	delete(bare.Annotations, translate.AnnotationNamespace)
	start := time.Now()
	for _, p := range []*corev1.Pod{renamed, bare} {
		if err := hostClient.Create(ctx, p); err != nil {
			t.Fatalf("creating host pod %s: %v", p.Name, err)
		}
	}
	for _, p := range []*corev1.Pod{renamed, bare} {
		eventually(t, orphanGrace+20*time.Second, "orphan "+p.Name+" deleted", func(ctx context.Context) (bool, string) {
			return goneOrGoing(ctx, hostClient, p)
		})
	}
	if took := time.Since(start); took < orphanGrace {
		t.Errorf("orphans deleted %s after their creation, before the grace period of %s", took, orphanGrace)
	}
}

// The reflector is stopped and started again at many points of a churn
// (creates, virtual deletions, host deletions): each stop cancels its
// requests wherever they are, as a crash would from the apiservers' point
// of view. Whatever the points, the pairs converge: check finds nothing,
// every deletion is carried out, every survivor runs bound.
func TestReflectorRestartedAtManyPointsConverges(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	const pods, restarts, seed = 24, 8, 15
	rng := rand.New(rand.NewPCG(seed, seed))
	name := func(i int) string { return fmt.Sprintf("churn-%02d", i) }

	// The restarts run beside the churn, at seeded points.
	pauses := make([]time.Duration, restarts)
	for i := range pauses {
		pauses[i] = time.Duration(50+rng.IntN(400)) * time.Millisecond
	}
	var restartErr error
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for _, pause := range pauses {
			time.Sleep(pause) // a fault schedule, not a wait for a condition.
			if err := env.RestartReflector(); err != nil {
				restartErr = err
				return
			}
		}
	}()

	virtualDeleted, hostDeleted := map[string]bool{}, map[string]bool{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := simplePod(ns, name(i))
			if err := virtualClient.Create(ctx, pod); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("creating %s: %w", pod.Name, err))
				mu.Unlock()
				return
			}
			var err error
			switch i % 4 {
			case 1: // deleted by the tenant
				err = virtualClient.Delete(ctx, pod)
				mu.Lock()
				virtualDeleted[pod.Name] = true
				mu.Unlock()
			case 2: // lost on the host
				host := &corev1.Pod{}
				host.Namespace, host.Name = env.Options.Translate.HostNamespace, translate.HostName(pod.Name, ns, env.Options.Translate.VCluster)
				err = hostClient.Delete(ctx, host)
				mu.Lock()
				hostDeleted[pod.Name] = true
				mu.Unlock()
			}
			if client.IgnoreNotFound(err) != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("deleting %s: %w", pod.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-restarted
	if restartErr != nil {
		t.Fatalf("restarting the reflector: %v", restartErr)
	}
	for _, err := range errs {
		t.Error(err)
	}

	eventually(t, 90*time.Second, "pairs converged after the restarts", func(ctx context.Context) (bool, string) {
		virtualPods, hostPods := &corev1.PodList{}, &corev1.PodList{}
		if err := virtualClient.List(ctx, virtualPods, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		if err := hostClient.List(ctx, hostPods, client.InNamespace(env.Options.Translate.HostNamespace)); err != nil {
			return false, err.Error()
		}
		var ours []corev1.Pod
		for _, h := range hostPods.Items {
			if h.Annotations[translate.AnnotationNamespace] == ns {
				ours = append(ours, h)
			}
		}
		violations := check.Evaluate(virtualPods.Items, ours, check.Options{Config: env.Options.Translate, OrphanGracePeriod: orphanGrace, Statuses: true, Now: time.Now()})
		if len(violations) > 0 {
			return false, fmt.Sprintf("%d violations, first: %s%s", len(violations), violations[0], hostPodState(ours, violations[0].Host))
		}
		for _, v := range virtualPods.Items {
			switch {
			case virtualDeleted[v.Name] || hostDeleted[v.Name]:
				return false, fmt.Sprintf("virtual pod %s still there (terminating: %v)", v.Name, v.DeletionTimestamp != nil)
			case v.Spec.NodeName == "" || !isReady(&v):
				return false, fmt.Sprintf("virtual pod %s not bound and ready", v.Name)
			}
		}
		if want := pods - len(virtualDeleted) - len(hostDeleted); len(virtualPods.Items) != want || len(ours) != want {
			return false, fmt.Sprintf("%d virtual and %d host pods, want %d of each", len(virtualPods.Items), len(ours), want)
		}
		return true, ""
	})
	// Nothing of the deleted pods is left behind on the host.
	for name := range virtualDeleted {
		host := &corev1.Pod{}
		err := hostClient.Get(ctx, client.ObjectKey{Namespace: env.Options.Translate.HostNamespace, Name: translate.HostName(name, ns, env.Options.Translate.VCluster)}, host)
		if !apierrors.IsNotFound(err) {
			t.Errorf("host pod of deleted virtual pod %s: err=%v, want not found", name, err)
		}
	}
}

// hostPodState describes host pod name among pods as the reflector's
// decision reads it, for a failure message: whether it is terminating,
// bound, still held by podbridge's gate.
func hostPodState(pods []corev1.Pod, name string) string {
	for _, h := range pods {
		if h.Name == name {
			return fmt.Sprintf(" (host pod: deletionTimestamp %v, node %q, phase %s, %d scheduling gates, resourceVersion %s)",
				h.DeletionTimestamp, h.Spec.NodeName, h.Status.Phase, len(h.Spec.SchedulingGates), h.ResourceVersion)
		}
	}
	return ""
}
