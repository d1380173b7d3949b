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
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/controlplane"
	"github.com/podbridge/podbridge/internal/realnode"
)

// corefile serves the cluster domain from the kubernetes plugin and
// nothing else: no forward plugin is compiled in.
const corefile = `.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loop
    reload
    loadbalance
}
`

// The CoreDNS image `make node-bins` builds from source runs on the real
// node where issue 22's DNS will run it: as a tenant's pod, through
// podbridge, reading the virtual apiserver with the pod's token (its
// kubernetes plugin's in-cluster configuration: the KUBERNETES_SERVICE_*
// podbridge sets and the mounted token; the node's firewall lets pods
// reach no other apiserver). Queried from this machine at its pod address
// on the bridge, it answers a virtual Service's and kubernetes.default's
// names with their ClusterIPs, and a name outside the cluster domain with
// no address: the binary has no forward plugin, so nothing is asked off
// the machine.
func TestCoreDNSImageAnswersFromTheVirtualAPIServer(t *testing.T) {
	ctx := context.Background()
	root, err := controlplane.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	plugins, err := exec.Command(filepath.Join(root, "bin", "node", "coredns"), "-plugins").Output()
	if err != nil {
		t.Fatalf("coredns -plugins: %v", err)
	}
	compiled := strings.Fields(string(plugins))
	for _, p := range []string{"kubernetes", "hosts", "cache", "errors", "health", "ready", "loop", "reload", "loadbalance"} {
		if !slices.Contains(compiled, p) {
			t.Errorf("coredns lacks the %s plugin: %v", p, compiled)
		}
	}
	if slices.Contains(compiled, "forward") {
		t.Errorf("coredns has the forward plugin: %v", compiled)
	}

	ns := namespace(t)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "coredns-"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "namespaces", "pods"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	if err := virtualClient.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), role) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "default"}},
	}
	if err := virtualClient.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), binding) })
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "coredns"}, Data: map[string]string{"Corefile": corefile}}
	if err := virtualClient.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := virtualClient.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	kubernetesSvc := &corev1.Service{}
	if err := virtualClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, kubernetesSvc); err != nil {
		t.Fatal(err)
	}

	pod := realPod(ns, "coredns")
	pod.Spec.Containers[0].Image = realnode.CoreDNSImage
	pod.Spec.Containers[0].Args = []string{"-conf", "/etc/coredns/Corefile"}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}}
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}},
		PeriodSeconds: 1,
	}
	pod.Spec.Volumes = []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}, DefaultMode: ptr.To[int32](0o444),
	}}}}
	create(t, pod)
	waitVirtualReady(t, pod)
	server := net.JoinHostPort(hostPodIP(t, pod), "53")
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
	for name, want := range map[string]string{
		"web." + ns + ".svc.cluster.local.":     web.Spec.ClusterIP,
		"kubernetes.default.svc.cluster.local.": kubernetesSvc.Spec.ClusterIP,
	} {
		eventually(t, 30*time.Second, fmt.Sprintf("CoreDNS at %s answering %s with %s", server, name, want), func(ctx context.Context) (bool, string) {
			addrs, err := resolver.LookupHost(ctx, name)
			return err == nil && slices.Equal(addrs, []string{want}), fmt.Sprint(addrs, err)
		})
	}
	lookup, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if addrs, err := resolver.LookupHost(lookup, "podbridge-off-cluster.example."); err == nil || len(addrs) > 0 {
		t.Errorf("a name outside the cluster domain: %v %v, want no address", addrs, err)
	}
}
