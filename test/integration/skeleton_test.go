package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// A pod created in the virtual cluster gets a host pod before it is stored;
// kwok runs the host pod and the virtual pod becomes Running and Ready,
// bound to a virtual node named like the host node.
func TestPodCrossesToHostAndBecomesReady(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "web")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	syncID := pod.Annotations[translate.AnnotationSyncID]
	if syncID == "" {
		t.Fatalf("virtual pod has no %s annotation: %v", translate.AnnotationSyncID, pod.Annotations)
	}

	// Synchronous: the host pod exists as soon as the create returned.
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatalf("host pod right after the virtual create: %v", err)
	}
	cfg := env.Options.Translate
	wantLabels := map[string]string{translate.TenantKey("app"): "web", translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: cfg.VCluster, translate.LabelNamespace: ns}
	for k, v := range wantLabels {
		if host.Labels[k] != v {
			t.Errorf("host label %s = %q, want %q", k, host.Labels[k], v)
		}
	}
	wantAnnotations := map[string]string{translate.AnnotationSyncID: syncID, translate.AnnotationName: "web", translate.AnnotationNamespace: ns, translate.AnnotationVCluster: cfg.VCluster}
	for k, v := range wantAnnotations {
		if host.Annotations[k] != v {
			t.Errorf("host annotation %s = %q, want %q", k, host.Annotations[k], v)
		}
	}
	if host.Spec.AutomountServiceAccountToken == nil || *host.Spec.AutomountServiceAccountToken {
		t.Errorf("host pod automountServiceAccountToken = %v, want false", host.Spec.AutomountServiceAccountToken)
	}
	if pod.Annotations[translate.AnnotationHostName] != host.Name {
		t.Errorf("virtual annotation %s = %q, want %q", translate.AnnotationHostName, pod.Annotations[translate.AnnotationHostName], host.Name)
	}

	eventually(t, 30*time.Second, "virtual pod Running and Ready", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		return pod.Status.Phase == corev1.PodRunning && isReady(pod) && pod.Spec.NodeName != "",
			fmt.Sprintf("phase=%s ready=%v node=%q", pod.Status.Phase, isReady(pod), pod.Spec.NodeName)
	})
	host, err = getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != host.Spec.NodeName {
		t.Errorf("virtual pod bound to %q, host pod runs on %q", pod.Spec.NodeName, host.Spec.NodeName)
	}
	if pod.Status.PodIP == "" || pod.Status.PodIP != host.Status.PodIP {
		t.Errorf("virtual pod IP %q, host pod IP %q", pod.Status.PodIP, host.Status.PodIP)
	}
	node := &corev1.Node{}
	if err := virtualClient.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
		t.Fatalf("virtual node %s: %v", pod.Spec.NodeName, err)
	}
	if node.Labels[translate.LabelManagedBy] != translate.ManagedByValue {
		t.Errorf("virtual node labels %v lack %s=%s", node.Labels, translate.LabelManagedBy, translate.ManagedByValue)
	}
}

// A Deployment in the virtual cluster reaches its ready count while the
// host namespace holds one host pod per replica; deleting a virtual pod
// removes both.
func TestDeploymentReadyAndPodDeletion(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
			},
		},
	}
	if err := virtualClient.Create(ctx, deploy); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	eventually(t, 60*time.Second, "deployment 3/3 ready", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(deploy), deploy); err != nil {
			return false, err.Error()
		}
		return deploy.Status.ReadyReplicas == 3, fmt.Sprintf("ready=%d", deploy.Status.ReadyReplicas)
	})

	hostPods := &corev1.PodList{}
	if err := hostClient.List(ctx, hostPods, client.InNamespace(env.Options.Translate.HostNamespace), client.MatchingLabels{translate.LabelNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	if len(hostPods.Items) != 3 {
		t.Fatalf("host pods for namespace %s: %d, want 3", ns, len(hostPods.Items))
	}
	for _, h := range hostPods.Items {
		// generateName pods: the webhook chose the name, both sides agree.
		if name := h.Annotations[translate.AnnotationName]; !strings.HasPrefix(name, "web-") || len(name) == 0 {
			t.Errorf("host pod %s names virtual pod %q", h.Name, name)
		}
		if _, ok := h.Annotations[translate.AnnotationOwnerReferences]; !ok || len(h.OwnerReferences) != 0 {
			t.Errorf("host pod %s: owner references %v, annotation present %v", h.Name, h.OwnerReferences, ok)
		}
	}

	victim := &corev1.Pod{}
	virtualKey := client.ObjectKey{Namespace: ns, Name: hostPods.Items[0].Annotations[translate.AnnotationName]}
	if err := virtualClient.Get(ctx, virtualKey, victim); err != nil {
		t.Fatalf("virtual pod of host pod %s: %v", hostPods.Items[0].Name, err)
	}
	if err := virtualClient.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	waitGone(t, virtualClient, victim, 20*time.Second)
	waitGone(t, hostClient, &hostPods.Items[0], 20*time.Second)
	eventually(t, 60*time.Second, "deployment back to 3/3 ready", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(deploy), deploy); err != nil {
			return false, err.Error()
		}
		return deploy.Status.ReadyReplicas == 3 && deploy.Status.Replicas == 3, fmt.Sprintf("ready=%d replicas=%d", deploy.Status.ReadyReplicas, deploy.Status.Replicas)
	})
}

// Pods the host must not run, or that podbridge cannot carry, are refused
// with a message naming the field, and leave nothing on the host.
func TestRefusedPodsLeaveNothingOnHost(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   string
	}{
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "hostNetwork"},
		{"privileged", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}, "privileged"},
		{"node name", func(p *corev1.Pod) { p.Spec.NodeName = "kwok-node-0" }, "spec.nodeName"},
		{"reserved label", func(p *corev1.Pod) { p.Labels[translate.LabelVCluster] = "other" }, "metadata.labels[" + translate.LabelVCluster + "]"},
	}
	refusedBefore := metricSum(t, "podbridge_webhook_admissions_total", "outcome", "refused")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(ns, fmt.Sprintf("refused-%d", i))
			tc.mutate(pod)
			err := virtualClient.Create(ctx, pod)
			if err == nil {
				t.Fatalf("pod was admitted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			if _, err := getHostPod(ctx, pod); !apierrors.IsNotFound(err) {
				t.Errorf("host pod after refusal: %v, want NotFound", err)
			}
		})
	}
	// Other tests refuse pods too, so the count grows by at least ours.
	if got := metricSum(t, "podbridge_webhook_admissions_total", "outcome", "refused") - refusedBefore; got < float64(len(cases)) {
		t.Errorf("podbridge_webhook_admissions_total{outcome=refused} grew by %.0f, want at least %d", got, len(cases))
	}
}

// A dry-run create goes through the webhook and creates nothing on the host.
func TestDryRunCreatesNothingOnHost(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "dry")
	if err := virtualClient.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	if pod.Annotations[translate.AnnotationSyncID] == "" {
		t.Errorf("dry-run answer was not mutated by the webhook: %v", pod.Annotations)
	}
	if _, err := getHostPod(ctx, pod); !apierrors.IsNotFound(err) {
		t.Errorf("host pod after dry run: %v, want NotFound", err)
	}
}
