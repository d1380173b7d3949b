package integration

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/staticpolicy"
)

// The tenant is cluster-admin of the virtual cluster, and the virtual
// apiserver dials what Nodes, Endpoints and pod statuses name. With
// podbridge's static admission policies (loaded from files; the tenant can
// neither see nor delete them) a tenant cannot make it dial anything but
// podbridge's kubelet API: not by a Node of its own, not by editing
// podbridge's, not through the proxy subresources, whose URL picks the
// scheme and port too. Every target below is a real listener of this
// machine: the host apiserver, which would answer.
func TestVirtualAPIServerDialsOnlyPodbridgesKubeletAPI(t *testing.T) {
	ctx := context.Background()
	hostAPI, err := url.Parse(env.Host.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	hostPort, err := strconv.Atoi(hostAPI.Port())
	if err != nil {
		t.Fatal(err)
	}
	kubelet := env.Kubelet

	// The policies are not the tenant's to delete: they are not API objects.
	policies := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyList"}}
	if err := virtualClient.List(ctx, policies); err != nil {
		t.Fatal(err)
	}
	for _, p := range policies.Items {
		if p.Name == staticpolicy.NodesPolicy || p.Name == staticpolicy.ProxyPolicy {
			t.Errorf("static policy %s is visible through the API", p.Name)
		}
	}

	node := func(name, address string, port int32) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{
				Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: address}},
				DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}},
			},
		}
	}
	for _, tc := range []struct {
		name string
		node *corev1.Node
	}{
		{"a Node at the host apiserver's address and port", node("tenant-node-apiserver", hostAPI.Hostname(), int32(hostPort))},
		{"a Node at podbridge's kubelet address, another port", node("tenant-node-port", kubelet.Address, int32(hostPort))},
		{"a Node at another address, podbridge's kubelet port", node("tenant-node-address", "127.0.0.2", kubelet.Port)},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			err := virtualClient.Create(ctx, tc.node)
			if err == nil {
				_ = virtualClient.Delete(ctx, tc.node)
				t.Fatal("the tenant's Node was stored")
			}
			if !strings.Contains(err.Error(), "podbridge's kubelet API") {
				t.Errorf("refusal does not say why: %v", err)
			}
		})
	}

	// podbridge's own node: its address cannot be repointed.
	ns := namespace(t)
	pod := simplePod(ns, "proxied")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod = waitRunningBound(t, pod)
	mirror := &corev1.Node{}
	if err := virtualClient.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, mirror); err != nil {
		t.Fatal(err)
	}
	repointed := mirror.DeepCopy()
	repointed.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: hostAPI.Hostname()}}
	repointed.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(hostPort)
	if err := virtualClient.Status().Update(ctx, repointed); err == nil || !strings.Contains(err.Error(), "podbridge's kubelet API") {
		t.Errorf("repointing podbridge's node: %v, want the policy's refusal", err)
	}

	// A Service for services/proxy: the refusal comes before any endpoint
	// is looked up (the apiserver refuses loopback endpoints anyway; a
	// platform's network has other addresses worth reaching).
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "host-api", Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}},
	}
	if err := virtualClient.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}

	c := clientset(t, env.Virtual.Config)
	for _, path := range []string{
		"/api/v1/nodes/" + pod.Spec.NodeName + "/proxy/healthz",
		"/api/v1/nodes/http:" + pod.Spec.NodeName + ":" + strconv.Itoa(hostPort) + "/proxy/healthz",
		"/api/v1/nodes/https:" + pod.Spec.NodeName + ":" + strconv.Itoa(hostPort) + "/proxy/version",
		"/api/v1/namespaces/" + ns + "/services/https:host-api:https/proxy/version",
		"/api/v1/namespaces/" + ns + "/services/host-api/proxy/version",
		"/api/v1/namespaces/" + ns + "/pods/" + pod.Name + "/proxy/",
		"/api/v1/namespaces/" + ns + "/pods/https:" + pod.Name + ":" + strconv.Itoa(hostPort) + "/proxy/version",
	} {
		t.Run("proxy refused/"+path, func(t *testing.T) {
			body, err := c.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
			// DoRaw's error is generic for a 422; the Status in the body says who refused.
			if err == nil || !strings.Contains(string(body), "proxies to no node, service or pod") {
				t.Errorf("answered %q (%v), want the policy's refusal", body, err)
			}
		})
	}
}
