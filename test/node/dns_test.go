//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/translate"
)

// The test bed's CoreDNS (make node-bins, from its Go module) has the
// plugins its Corefile names and no forward plugin: nothing is asked off
// the machine.
func TestCoreDNSBinaryForwardsNowhere(t *testing.T) {
	root, err := controlplane.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	plugins, err := exec.Command(filepath.Join(root, "bin", "node", "coredns"), "-plugins").Output()
	if err != nil {
		t.Fatalf("coredns -plugins: %v", err)
	}
	compiled := strings.Fields(string(plugins))
	for _, p := range []string{"kubernetes", "cache", "errors", "health", "ready", "loop", "reload", "loadbalance"} {
		if !slices.Contains(compiled, p) {
			t.Errorf("coredns lacks the %s plugin: %v", p, compiled)
		}
	}
	if slices.Contains(compiled, "forward") {
		t.Errorf("coredns has the forward plugin: %v", compiled)
	}
}

// Inside a tenant pod, kubernetes.default.svc resolves (through the
// virtual cluster's DNS, the virtual kube-system CoreDNS run through
// podbridge) to the virtual default/kubernetes ClusterIP, the virtual
// apiserver's host Service and never the host's kubernetes Service, and
// there the virtual apiserver, verified against the pod's CA under that
// name, authenticates the pod's token as its virtual service account, as
// it does at KUBERNETES_SERVICE_HOST.
func TestKubernetesDefaultSvcIsTheVirtualAPIServer(t *testing.T) {
	ctx := context.Background()
	hostKubernetes := &corev1.Service{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, hostKubernetes); err != nil {
		t.Fatal(err)
	}
	virtualKubernetes := &corev1.Service{}
	if err := virtualClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, virtualKubernetes); err != nil {
		t.Fatal(err)
	}
	if ip := virtualKubernetes.Spec.ClusterIP; ip != env.Options.Translate.KubernetesServiceIP || ip == hostKubernetes.Spec.ClusterIP {
		t.Fatalf("virtual default/kubernetes at %s: want %s, never the host's %s", ip, env.Options.Translate.KubernetesServiceIP, hostKubernetes.Spec.ClusterIP)
	}
	ns := namespace(t)
	pod := realPod(ns, "in-cluster", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	user := "whoami=system:serviceaccount:" + ns + ":default"
	for _, step := range []string{"lookup:kubernetes.default.svc", "lookup:kubernetes.default", "whoami:kubernetes.default.svc:443", "whoami:kubernetes.default.svc.cluster.local:443", "whoami"} {
		out := strings.TrimSpace(execWorkload(t, pod, "", step))
		want := user
		if name, ok := strings.CutPrefix(step, "lookup:"); ok {
			want = "lookup " + name + "=" + virtualKubernetes.Spec.ClusterIP
		}
		if out != want {
			t.Errorf("%s: %q, want %q", step, out, want)
		}
	}
}

// A tenant pod reaches another tenant pod's Service by its full name, its
// short name (the virtual namespace's search domain) and its ClusterIP,
// and the answers come from the Service's pod; an ExternalName Service
// naming it resolves to it. The lookup's latency
// through the Service address against the same query sent straight to the
// CoreDNS pod is logged: issue 22's closing figure.
func TestServiceReachedByNameAndAddress(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	backend := realPod(ns, "web", "serve::8080")
	create(t, backend)
	caller := realPod(ns, "caller", "pause")
	create(t, caller)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := virtualClient.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), svc) })
	waitVirtualReady(t, backend)
	waitVirtualReady(t, caller)
	tc := env.Options.Translate
	hostSvc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: tc.HostNamespace, Name: translate.HostServiceName(svc.Name, ns, tc.VCluster)}}
	waitEndpoints(t, hostSvc, net.JoinHostPort(hostPodIP(t, backend), "8080"))
	fqdn := "web." + ns + ".svc.cluster.local"
	if out, want := strings.TrimSpace(execWorkload(t, caller, "", "lookup:"+fqdn)), "lookup "+fqdn+"="+svc.Spec.ClusterIP; out != want {
		t.Errorf("%q, want %q", out, want)
	}
	for _, url := range []string{"http://" + fqdn + "/", "http://web/", "http://web." + ns + "/", "http://" + svc.Spec.ClusterIP + "/"} {
		if out, want := strings.TrimSpace(execWorkload(t, caller, "", "fetch:"+url)), "fetched "+url+"=hostname=web"; out != want {
			t.Errorf("%q, want %q", out, want)
		}
	}

	// An ExternalName Service is a CNAME to its name, which resolves here.
	alias := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alias"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: fqdn},
	}
	if err := virtualClient.Create(ctx, alias); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), alias) })
	if out, want := strings.TrimSpace(execWorkload(t, caller, "", "lookup:alias")), "lookup alias="+svc.Spec.ClusterIP; out != want {
		t.Errorf("%q, want %q", out, want)
	}

	pods := &corev1.PodList{}
	if err := virtualClient.List(ctx, pods, client.InNamespace("kube-system"), client.MatchingLabels{"k8s-app": "kube-dns"}); err != nil || len(pods.Items) == 0 {
		t.Fatalf("the virtual cluster's DNS pods: %v %v", pods.Items, err)
	}
	through := strings.TrimSpace(execWorkload(t, caller, "", "dnstime:300:"+fqdn+".", "dnstime:300:"+fqdn+".@"+pods.Items[0].Status.PodIP))
	t.Logf("DNS lookup latency in microseconds, through the DNS Service %s then straight to the CoreDNS pod:\n%s", env.Options.Translate.DNSNameserver, through)
}

// A StatefulSet's pod answers at <pod>.<service>.<namespace>.svc: its
// headless Service's record, from the virtual EndpointSlice's hostname.
func TestStatefulSetPodAnswersAtItsName(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := virtualClient.Create(ctx, headless); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), headless) })
	template := realPod(ns, "db", "serve::8080")
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "db", Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: template.Labels}, Spec: template.Spec},
		},
	}
	if err := virtualClient.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = virtualClient.Delete(context.Background(), set, client.PropagationPolicy(metav1.DeletePropagationForeground))
	})
	caller := realPod(ns, "caller", "pause")
	create(t, caller)
	member := waitVirtualReady(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-0"}})
	waitVirtualReady(t, caller)
	name := fmt.Sprintf("db-0.db.%s.svc.cluster.local", ns)
	if out, want := strings.TrimSpace(execWorkload(t, caller, "", "lookup:"+name)), "lookup "+name+"="+member.Status.PodIP; out != want {
		t.Errorf("%q, want %q", out, want)
	}
	url := "http://" + net.JoinHostPort(name, "8080") + "/"
	if out, want := strings.TrimSpace(execWorkload(t, caller, "", "fetch:"+url)), "fetched "+url+"=hostname=db-0"; out != want {
		t.Errorf("%q, want %q", out, want)
	}
}
