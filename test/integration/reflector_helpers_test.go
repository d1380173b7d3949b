package integration

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// testNodeLabel marks a host node that only one test's pods select.
const testNodeLabel = "podbridge-test/node"

var testNodes atomic.Int32

// newHostNode registers a kwok node on the host that only pods selecting it
// (podOnNode) run on, waits until it is Ready and schedulable, and removes
// it when the test ends. Tests that watch a virtual node come and go need a
// node no other test's pods use.
func newHostNode(t *testing.T, taints ...corev1.Taint) string {
	t.Helper()
	ctx := context.Background()
	n := testNodes.Add(1)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-node-", Labels: map[string]string{"type": "kwok"}},
		Spec:       corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.244.%d.0/24", 100+n), PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", 100+n)}, Taints: taints},
		Status: corev1.NodeStatus{
			Capacity: capacity, Allocatable: capacity,
			// On loopback: an apiserver may dial a node's address.
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("127.0.1.%d", n)}},
		},
	}
	if err := hostClient.Create(ctx, node); err != nil {
		t.Fatalf("creating host node: %v", err)
	}
	t.Cleanup(func() {
		if err := hostClient.Delete(context.Background(), node); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting host node %s: %v", node.Name, err)
		}
	})
	// The label goes on after the name is known, so selectors can name it.
	patch := client.MergeFrom(node.DeepCopy())
	node.Labels[testNodeLabel] = node.Name
	if err := hostClient.Patch(ctx, node, patch); err != nil {
		t.Fatalf("labelling host node: %v", err)
	}
	eventually(t, 30*time.Second, "host node "+node.Name+" Ready", func(ctx context.Context) (bool, string) {
		if err := hostClient.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return false, err.Error()
		}
		return isNodeReady(node), fmt.Sprintf("conditions %v", node.Status.Conditions)
	})
	// What the node lifecycle controller of a real host does (lift the
	// not-ready taint); this host has none.
	patch = client.MergeFrom(node.DeepCopy())
	node.Spec.Taints = taints
	if err := hostClient.Patch(ctx, node, patch); err != nil {
		t.Fatalf("untainting host node: %v", err)
	}
	return node.Name
}

// podOnNode is simplePod placed on the host node newHostNode made.
func podOnNode(namespace, name, node string) *corev1.Pod {
	pod := simplePod(namespace, name)
	pod.Spec.NodeSelector = map[string]string{testNodeLabel: node}
	return pod
}

// waitRunningBound waits until the virtual pod is Running, Ready and bound
// to a node, and returns it.
func waitRunningBound(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got := &corev1.Pod{}
	eventually(t, 30*time.Second, "virtual pod "+pod.Name+" Running, Ready and bound", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
			return false, err.Error()
		}
		return got.Status.Phase == corev1.PodRunning && isReady(got) && got.Spec.NodeName != "",
			fmt.Sprintf("phase=%s ready=%v node=%q", got.Status.Phase, isReady(got), got.Spec.NodeName)
	})
	return got
}

// watchFinalState starts watching the virtual pod namespace/name and returns
// a function that waits for the pod's deletion and returns its state as the
// DELETED event carries it: the last status it had.
func watchFinalState(t *testing.T, namespace, name string) func(timeout time.Duration) *corev1.Pod {
	t.Helper()
	wc, err := client.NewWithWatch(env.Virtual.Config, client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := wc.Watch(ctx, &corev1.PodList{}, client.InNamespace(namespace), client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatalf("watching virtual pod %s/%s: %v", namespace, name, err)
	}
	t.Cleanup(w.Stop)
	return func(timeout time.Duration) *corev1.Pod {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatalf("watch of virtual pod %s/%s closed before its deletion", namespace, name)
				}
				if ev.Type == watch.Deleted {
					return ev.Object.(*corev1.Pod)
				}
			case <-deadline:
				t.Fatalf("virtual pod %s/%s not deleted within %s", namespace, name, timeout)
			}
		}
	}
}

// waitEvent waits for an event with reason about the virtual pod and
// returns its message.
func waitEvent(t *testing.T, pod *corev1.Pod, reason string) string {
	t.Helper()
	message := ""
	eventually(t, 20*time.Second, fmt.Sprintf("event %s on virtual pod %s", reason, pod.Name), func(ctx context.Context) (bool, string) {
		events := &corev1.EventList{}
		if err := virtualClient.List(ctx, events, client.InNamespace(pod.Namespace), client.MatchingFields{"involvedObject.name": pod.Name}); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.InvolvedObject.UID == pod.UID && e.Reason == reason {
				message = e.Message
				return true, ""
			}
			seen = append(seen, e.Reason)
		}
		return false, fmt.Sprintf("reasons %v", seen)
	})
	return message
}

// actionCount reads the reflector's actions_total counter for action.
func actionCount(t *testing.T, action string) float64 {
	t.Helper()
	return metricSum(t, "podbridge_reflector_actions_total", "action", action)
}

// lagObservations reads how many reflection lags the dev reflector
// observed (over its restarts).
func lagObservations(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	count, err := env.HistogramCount(ctx, "podbridge_reflector_reflection_lag_seconds", nil)
	if err != nil {
		t.Fatalf("reading the reflector's metrics: %v", err)
	}
	return uint64(count)
}

// hostPodFor builds a host pod as the webhook would for virtual pod
// namespace/ghost of virtual cluster vcluster, with sync ID syncID, created
// directly on the host: what a failed admission leaves behind.
func hostPodFor(vcluster, namespace, syncID string) *corev1.Pod {
	const name = "ghost"
	cfg := env.Options.Translate
	automount := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      translate.HostName(name, namespace, vcluster),
			Namespace: cfg.HostNamespace,
			Labels: map[string]string{
				translate.LabelManagedBy: translate.ManagedByValue,
				translate.LabelVCluster:  vcluster,
				translate.LabelNamespace: namespace,
			},
			Annotations: map[string]string{
				translate.AnnotationSyncID:    syncID,
				translate.AnnotationName:      name,
				translate.AnnotationNamespace: namespace,
				translate.AnnotationVCluster:  vcluster,
			},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:           cfg.HostServiceAccount,
			AutomountServiceAccountToken: &automount,
			Containers:                   []corev1.Container{{Name: "app", Image: "nginx"}},
		},
	}
}

// goneOrGoing reports whether obj is absent from c, or being deleted.
func goneOrGoing(ctx context.Context, c client.Client, obj client.Object) (bool, string) {
	current := obj.DeepCopyObject().(client.Object)
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), current)
	switch {
	case apierrors.IsNotFound(err):
		return true, "gone"
	case err != nil:
		return false, err.Error()
	case current.GetDeletionTimestamp() != nil:
		return true, "being deleted"
	}
	return false, "exists"
}

// isNodeReady reports whether node's Ready condition is True.
func isNodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
