//go:build node

package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/vcluster"
)

// A control-plane pod's podbridge runs as the user podbridge in no group,
// with the grants its rbac init container applied before it started. The
// tenant, cluster-admin of the virtual cluster, deletes the binding:
// podbridge refuses what it can no longer do, naming the grant; the
// control-plane pod deleted comes back with the grants restored, and the
// same pod is admitted and runs.
func TestVirtualClusterRestoresPodbridgesGrants(t *testing.T) {
	const name, ns = "gamma", "vc-gamma"
	ctx := context.Background()
	t.Cleanup(func() {
		if t.Failed() {
			identityLogs(t, name, ns)
		}
		if left, err := vcluster.Remains(ctx, hostClient, name, ns); err == nil && len(left) > 0 {
			delCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			if err := vcluster.Delete(delCtx, hostClient, name, ns, testWriter{t}); err != nil {
				t.Errorf("podbridge delete %s: %v", name, err)
			}
		}
	})
	if _, err := vcluster.Create(ctx, env.Host.Config, createOptions(t, name, ns), testWriter{t}); err != nil {
		t.Fatalf("podbridge create %s: %v", name, err)
	}
	var cp corev1.Pod
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: vcluster.ControlPlane(name) + "-0"}, &cp); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "podbridge"}}
	withConfig := func(podName string) (*corev1.ConfigMap, *corev1.Pod) {
		pod := tenantPod(podName, "env", "pause")
		pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: podName}}}}
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: podName}, Data: map[string]string{"K": "v"}}, pod
	}
	connected(t, name, ns, func(_ *rest.Config, c client.Client) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(binding), binding); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(binding.ManagedFields, func(f metav1.ManagedFieldsEntry) bool { return f.Manager == vcluster.BootstrapFieldManager }) {
			t.Errorf("the binding's managers %v lack the bootstrap step's", binding.ManagedFields)
		}
		if err := c.Delete(ctx, binding); err != nil {
			t.Fatal(err)
		}
		n := 0
		eventually(t, time.Minute, "a pod refused while podbridge lacks its grants", func(ctx context.Context) (bool, string) {
			n++
			cm, pod := withConfig(fmt.Sprintf("refused-%d", n))
			if err := c.Create(ctx, cm); err != nil {
				return false, err.Error()
			}
			err := c.Create(ctx, pod)
			return err != nil && strings.Contains(err.Error(), `User "podbridge" cannot get resource "configmaps"`), fmt.Sprint(err)
		})
	})

	if err := hostClient.Delete(ctx, &cp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Minute, "a new control-plane pod ready", func(ctx context.Context) (bool, string) {
		var p corev1.Pod
		if err := hostClient.Get(ctx, client.ObjectKeyFromObject(&cp), &p); err != nil {
			return false, err.Error()
		}
		return p.UID != cp.UID && ready(&p) == corev1.ConditionTrue, fmt.Sprintf("uid %s, phase %s", p.UID, p.Status.Phase)
	})
	connected(t, name, ns, func(_ *rest.Config, c client.Client) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(binding), binding); err != nil {
			t.Fatalf("after the restart, podbridge's binding: %v", err)
		}
		cm, pod := withConfig("admitted")
		if err := c.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatalf("a pod with a ConfigMap after the restart: %v", err)
		}
		if lines := waitTenantOutput(t, name, ns, pod, 1); !slices.Contains(lines, "K=v") {
			t.Errorf("the pod's environment %q lacks K=v: its ConfigMap copied to the host", lines)
		}
		eventually(t, 2*time.Minute, "the pod running in the virtual cluster", func(ctx context.Context) (bool, string) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return false, err.Error()
			}
			return pod.Status.Phase == corev1.PodRunning && pod.Spec.NodeName != "", fmt.Sprintf("phase %s, node %q", pod.Status.Phase, pod.Spec.NodeName)
		})
	})
}

// identityLogs logs the last lines of the containers this test is about.
func identityLogs(t *testing.T, name, namespace string) {
	pod := vcluster.ControlPlane(name) + "-0"
	for _, c := range []string{"init", "rbac", "kube-apiserver", "webhook", "reflector", "certs"} {
		b, err := hostSet.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: c, TailLines: ptr.To[int64](20)}).DoRaw(context.Background())
		t.Logf("last lines of %s/%s %s (%v):\n%s", namespace, pod, c, err, b)
	}
}
