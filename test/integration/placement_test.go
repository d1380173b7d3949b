package integration

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/translate"
)

// With DNS, the virtual apiserver address, enforced placement and a
// priority-class allow-list configured, the host pod carries them, its pod
// selectors are scoped to the tenant, and the host scheduler places it.
func TestPlacementAndDNSReachHost(t *testing.T) {
	ctx := context.Background()
	virtual := secondVirtual(t)
	ns := "default"
	for _, pc := range []string{"tenant-high", "tenant-low"} {
		class := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: pc}, Value: 1000}
		for _, c := range []client.Client{virtual, hostClient} {
			if err := c.Create(ctx, class.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	tc := env.Options.Translate
	tc.VCluster = "placement"
	tc.DNSNameserver = "10.96.0.10"
	tc.APIServerHost, tc.APIServerPort, tc.KubernetesServiceIP = "10.96.0.1", 443, "10.96.0.1"
	tc.NodeSelector = map[string]string{"type": "kwok"}
	tc.Tolerations = []corev1.Toleration{{Key: "tenants", Operator: corev1.TolerationOpExists}}
	tc.PriorityClasses = []string{"tenant-high"}
	hook := startExtraWebhook(t, "zz-placement", tc, certs.Options{
		Mode: certs.ModeSelfManaged, SecretName: "placement-test-tls", CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"},
	})

	pod := simplePod(ns, "placed")
	pod.Labels[certTestLabel] = hook.name
	// No token: no reflector runs for this virtual cluster to bind one.
	// The test releases podbridge's gate itself, below.
	pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	pod.Spec.PriorityClassName = "tenant-high"
	pod.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		TopologyKey: "kubernetes.io/hostname", LabelSelector: metav1LabelSelectorFor("app", "placed"),
	}}}}
	pod.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: metav1LabelSelectorFor("app", "placed"),
	}}
	low := simplePod(ns, "low")
	low.Labels[certTestLabel] = hook.name
	low.Spec.PriorityClassName = "tenant-low"
	for _, p := range []*corev1.Pod{pod, low} {
		if err := virtual.Create(ctx, p); err != nil {
			t.Fatalf("creating %s: %v", p.Name, err)
		}
	}
	hostKeyOf := func(p *corev1.Pod) client.ObjectKey {
		return client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostName(p.Name, ns, tc.VCluster)}
	}
	t.Cleanup(func() {
		for _, p := range []*corev1.Pod{pod, low} {
			_ = virtual.Delete(context.Background(), p)
			_ = hostClient.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: hostKeyOf(p).Name, Namespace: tc.HostNamespace}})
		}
	})

	host := &corev1.Pod{}
	if err := hostClient.Get(ctx, hostKeyOf(pod), host); err != nil {
		t.Fatal(err)
	}
	s := host.Spec
	if s.DNSPolicy != corev1.DNSNone || s.DNSConfig == nil || s.DNSConfig.Nameservers[0] != "10.96.0.10" || s.DNSConfig.Searches[0] != ns+".svc.cluster.local" {
		t.Errorf("DNS: policy %s config %+v", s.DNSPolicy, s.DNSConfig)
	}
	env := map[string]string{}
	for _, e := range s.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" || env["KUBERNETES_SERVICE_PORT"] != "443" {
		t.Errorf("virtual apiserver address: %v", env)
	}
	// Host service links would name host Services, and override the address.
	if s.EnableServiceLinks == nil || *s.EnableServiceLinks {
		t.Errorf("host enableServiceLinks = %v, want false", s.EnableServiceLinks)
	}
	if s.NodeSelector["type"] != "kwok" || len(s.Tolerations) == 0 || s.Tolerations[len(s.Tolerations)-1].Key != "tenants" {
		t.Errorf("enforced placement: nodeSelector %v tolerations %v", s.NodeSelector, s.Tolerations)
	}
	if s.PriorityClassName != "tenant-high" {
		t.Errorf("allowed priority class: %q", s.PriorityClassName)
	}
	term := s.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	if term.LabelSelector.MatchLabels[translate.LabelVCluster] != tc.VCluster || term.Namespaces[0] != tc.HostNamespace {
		t.Errorf("anti-affinity not scoped to the tenant: %+v", term)
	}
	if sel := s.TopologySpreadConstraints[0].LabelSelector; sel.MatchLabels[translate.LabelVCluster] != tc.VCluster {
		t.Errorf("spread constraint not scoped: %+v", sel)
	}
	lowHost := &corev1.Pod{}
	if err := hostClient.Get(ctx, hostKeyOf(low), lowHost); err != nil {
		t.Fatal(err)
	}
	if lowHost.Spec.PriorityClassName != "" {
		t.Errorf("priority class outside the allow-list reached the host: %q", lowHost.Spec.PriorityClassName)
	}
	// Every host pod waits for the reflector to compare it with the stored
	// virtual pod; none runs for this virtual cluster, so the test does
	// what its release would.
	if !translate.HeldForVirtualPod(host) {
		t.Errorf("host pod not held by %s: %v", translate.GateVirtualPod, host.Spec.SchedulingGates)
	}
	released := host.DeepCopy()
	released.Spec.SchedulingGates = nil
	if err := hostClient.Update(ctx, released); err != nil {
		t.Fatalf("releasing the host pod: %v", err)
	}
	eventually(t, 30*time.Second, "the host scheduler to place the pod", func(ctx context.Context) (bool, string) {
		err := hostClient.Get(ctx, hostKeyOf(pod), host)
		return err == nil && host.Spec.NodeName != "", host.Spec.NodeName
	})
}
