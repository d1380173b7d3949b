//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
)

// A tenant's Service without a selector routes on the real node only to
// addresses the platform allows. Its EndpointSlice first names the tenant's
// pod and a pod of another virtual cluster on the same node (serving, and
// reachable from the tenant's pod at its own address): kube-proxy DNATs
// the Service only to the tenant's pod, which answers. Then the slice
// names only the other pod: kube-proxy's rules go and the Service answers
// nothing.
func TestSelectorlessServiceRoutesOnlyToAllowedAddresses(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	tc := env.Options.Translate

	backend := realPod(ns, "slice-backend", "serve::8080")
	create(t, backend)
	caller := realPod(ns, "slice-caller", "pause")
	create(t, caller)
	// Another tenant's pod, as its podbridge would label it, on the same node.
	other := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: tc.HostNamespace, GenerateName: "other-tenant-",
			Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "other-tenant"}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{realnode.LabelRealNode: "true"},
			Tolerations:                   []corev1.Toleration{{Key: realnode.TaintRealNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			ServiceAccountName:            tc.HostServiceAccount,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			Containers:                    []corev1.Container{{Name: "w", Image: realnode.WorkloadImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: []string{"serve::8080"}}},
		},
	}
	if err := hostClient.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), other, client.GracePeriodSeconds(0)) })
	var otherIP string
	eventually(t, 60*time.Second, "the other tenant's pod running", func(ctx context.Context) (bool, string) {
		if err := hostClient.Get(ctx, client.ObjectKeyFromObject(other), other); err != nil {
			return false, err.Error()
		}
		otherIP = other.Status.PodIP
		return other.Status.Phase == corev1.PodRunning && otherIP != "", string(other.Status.Phase)
	})
	waitVirtualReady(t, backend)
	waitVirtualReady(t, caller)
	backendIP := hostPodIP(t, backend)
	if out := strings.TrimSpace(execWorkload(t, caller, "", "get:http://"+net.JoinHostPort(otherIP, "8080")+"/")); out != "get=200" {
		t.Fatalf("the other tenant's pod at its own address: %q, want get=200 (the bridge connects them)", out)
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
	if err := virtualClient.Create(ctx, svc); err != nil {
		t.Fatalf("creating the tenant's Service: %v", err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), svc) })
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "db-1", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{backendIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{otherIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if err := virtualClient.Create(ctx, slice); err != nil {
		t.Fatal(err)
	}
	hostService := tc.HostNamespace + "/" + translate.HostServiceName(svc.Name, ns, tc.VCluster)
	get := func() string {
		return strings.TrimSpace(execWorkload(t, caller, "", "get:http://"+net.JoinHostPort(svc.Spec.ClusterIP, "80")+"/"))
	}
	waitDNAT(t, hostService, net.JoinHostPort(backendIP, "8080"))
	for range 5 {
		if out := get(); out != "get=200" {
			t.Fatalf("the Service with the tenant's own pod: %q, want get=200", out)
		}
	}

	// Only the other tenant's pod left: kube-proxy's rules for the tenant's
	// pod go, and none ever names the other pod.
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(slice), slice); err != nil {
		t.Fatal(err)
	}
	slice.Endpoints = slice.Endpoints[1:]
	if err := virtualClient.Update(ctx, slice); err != nil {
		t.Fatal(err)
	}
	waitDNAT(t, hostService)
	if out := get(); !strings.HasPrefix(out, "get-error=") {
		t.Errorf("the Service whose only endpoint is another tenant's pod: %q, want no answer", out)
	}
	if err := realnode.FirewallFirst(); err != nil {
		t.Error(err)
	}
}

// waitDNAT waits until kube-proxy DNATs the host Service (namespace/name)
// to exactly want.
func waitDNAT(t *testing.T, hostService string, want ...string) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("kube-proxy's DNAT of %s to %v", hostService, want), func(context.Context) (bool, string) {
		dnat, err := dnatTargets(hostService)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(dnat, want), fmt.Sprint(dnat)
	})
}
