//go:build node && nodescale

package node

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/vcluster"
)

// scalePods is how many tenant pods the scale test runs.
const scalePods = 1000

// A virtual cluster whose control plane runs on the real node holds 1,000
// tenant pods: a tenant Deployment of 1,000 replicas, each pod admitted
// by podbridge's webhook, made on the host and mirrored back by the
// reflector, runs on the host's kwok nodes (the real node cannot run
// 1,000 containers; the control plane's work per pod is the same: the
// host reports them Running and Ready as a kubelet would). The test logs
// the time to 1,000 available, the control-plane pod's CPU over a quiet
// window and each container's memory working set then, and delete's time.
// Minutes long: behind the build tag nodescale, run alone (docs/testing.md).
func TestVirtualClusterThousandPods(t *testing.T) {
	const name, ns = "scale", "vc-scale"
	ctx := context.Background()
	t.Cleanup(func() {
		if t.Failed() {
			controlPlaneLogs(t, name, ns)
		}
		if left, err := vcluster.Remains(ctx, hostClient, name, ns); err == nil && len(left) > 0 {
			delCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			defer cancel()
			if err := vcluster.Delete(delCtx, hostClient, name, ns, testWriter{t}); err != nil {
				t.Logf("cleaning up %s: %v", name, err)
			}
		}
	})
	o := createOptions(t, name, ns)
	// No placement flags: tenant pods go where the host's scheduler puts
	// them, the kwok nodes (the real node's taint keeps them off it). The
	// DNS server would run on kwok too, answering nothing: left out.
	o.PodbridgeFlags, o.SkipDNS = nil, true
	if _, err := vcluster.Create(ctx, env.Host.Config, o, testWriter{t}); err != nil {
		t.Fatalf("podbridge create %s: %v", name, err)
	}
	cp := vcluster.ControlPlane(name) + "-0"
	logIdleUsage(t, ns, cp)

	// A forward of its own: the Deployment takes minutes.
	var started time.Time
	connectedFor(t, name, ns, 30*time.Minute, func(_ *rest.Config, c client.Client) {
		pod := tenantPod("load", "pause")
		load := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "load", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](scalePods),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "load"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "load"}}, Spec: pod.Spec},
			},
		}
		started = time.Now()
		if err := c.Create(ctx, load); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 2*time.Second, 20*time.Minute, true, func(ctx context.Context) (bool, error) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(load), load); err != nil {
				return false, nil //nolint:nilerr // the status says how far it got at the end
			}
			return load.Status.AvailableReplicas == scalePods, nil
		})
		if err != nil {
			t.Fatalf("%d replicas available: %v (status %+v)", scalePods, err, load.Status)
		}
		t.Logf("FIGURE a tenant Deployment of %d replicas (on kwok nodes) to available through the control-plane pod on the real node: %s", scalePods, time.Since(started).Round(time.Second))

		// Every virtual pod is bound to a virtual node mirroring a kwok node
		// and Ready; every host pod is on a kwok node.
		var vpods corev1.PodList
		if err := c.List(ctx, &vpods, client.InNamespace("default")); err != nil {
			t.Fatal(err)
		}
		var readyPods int
		for i := range vpods.Items {
			if ready(&vpods.Items[i]) == corev1.ConditionTrue && vpods.Items[i].Spec.NodeName != "" && vpods.Items[i].Spec.NodeName != env.RealNode.Name() {
				readyPods++
			}
		}
		var hpods corev1.PodList
		if err := hostClient.List(ctx, &hpods, client.InNamespace(ns), client.MatchingLabels{translate.LabelVCluster: name, translate.LabelManagedBy: translate.ManagedByValue}); err != nil {
			t.Fatal(err)
		}
		if readyPods != scalePods || len(hpods.Items) != scalePods {
			t.Errorf("virtual pods Ready on kwok nodes: %d, host pods: %d; want %d each", readyPods, len(hpods.Items), scalePods)
		}
	})
	// Two windows back to back: the first still sees the reflector's and
	// the controllers' tail of work, the second what holding 1,000 pods
	// costs.
	logIdleUsage(t, ns, cp)
	logIdleUsage(t, ns, cp)

	delCtx, cancelDel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancelDel()
	started = time.Now()
	if err := vcluster.Delete(delCtx, hostClient, name, ns, testWriter{t}); err != nil {
		t.Fatalf("podbridge delete %s: %v", name, err)
	}
	t.Logf("FIGURE podbridge delete with %d tenant pods: %s", scalePods, time.Since(started).Round(time.Second))
	if left, err := vcluster.Remains(ctx, hostClient, name, ns); err != nil || len(left) > 0 {
		t.Errorf("after podbridge delete, left of %s: %d objects (%v)", name, len(left), err)
	}
	if deleted, err := vcluster.ReleaseNamespace(delCtx, env.Host.Config, ns, testWriter{t}); err != nil || !deleted {
		t.Errorf("the namespace create made for %s: deleted %t (%v)", name, deleted, err)
	}
}
