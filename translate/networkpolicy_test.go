package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var policyConfig = Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "sa"}

func tenantPolicy(mutate func(*networkingv1.NetworkPolicy)) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-front", Namespace: "shop", Labels: map[string]string{"team": "a"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
			}},
		},
	}
	if mutate != nil {
		mutate(np)
	}
	return np
}

// hostPod is the labels a host pod of this package's tests carries: the
// podbridge labels of virtual cluster vc and namespace ns, and the tenant's
// labels under tenant keys.
func hostPod(vc, ns string, tenant map[string]string) labels.Set {
	l := labels.Set(tenantLabels(tenant))
	l[LabelManagedBy], l[LabelVCluster], l[LabelNamespace] = ManagedByValue, vc, ns
	return l
}

func matches(t *testing.T, s *metav1.LabelSelector, pod labels.Set) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("host selector %v: %v", s, err)
	}
	return sel.Matches(pod)
}

// What each translated selector reaches, among host pods of this tenant,
// another tenant, podbridge-looking labels and the tenant's other
// namespaces: never another tenant's pod, whatever the tenant writes.
func TestHostNetworkPolicyPeers(t *testing.T) {
	namespaces := NamespaceLabels{
		"shop":    {"kubernetes.io/metadata.name": "shop", "env": "prod"},
		"billing": {"kubernetes.io/metadata.name": "billing", "env": "prod"},
		"lab":     {"kubernetes.io/metadata.name": "lab"},
	}
	web := map[string]string{"app": "web"}
	pods := map[string]labels.Set{
		"own web in shop":       hostPod("vc", "shop", web),
		"own web in billing":    hostPod("vc", "billing", web),
		"own web in lab":        hostPod("vc", "lab", web),
		"other tenant's web":    hostPod("other", "shop", web),
		"other tenant, any pod": hostPod("other", "shop", nil),
		"not podbridge's":       {"app": "web", LabelVCluster: "vc", LabelNamespace: "shop"},
	}
	peer := func(p networkingv1.NetworkPolicyPeer) func(*networkingv1.NetworkPolicy) {
		return func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{p} }
	}
	webPods := &metav1.LabelSelector{MatchLabels: web}
	prod := &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	cases := []struct {
		name  string
		np    func(*networkingv1.NetworkPolicy)
		reach []string
	}{
		{"podSelector: this namespace only", nil, []string{"own web in shop"}},
		{"podSelector mimicking another tenant's labels", peer(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{LabelVCluster: "other", LabelManagedBy: ManagedByValue}}}), nil},
		{"podSelector mimicking by expression", peer(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: LabelVCluster, Operator: metav1.LabelSelectorOpIn, Values: []string{"other"}}}}}), nil},
		{"empty podSelector: every pod of this namespace", peer(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}), []string{"own web in shop"}},
		{"empty namespaceSelector: this tenant's pods in every namespace, no other tenant's", peer(networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{}}), []string{"own web in shop", "own web in billing", "own web in lab"}},
		{"namespaceSelector by label: the namespaces labelled so now", peer(networkingv1.NetworkPolicyPeer{
			NamespaceSelector: prod, PodSelector: webPods}), []string{"own web in shop", "own web in billing"}},
		{"namespaceSelector by name", peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"kubernetes.io/metadata.name": "lab"}}}), []string{"own web in lab"}},
		{"namespaceSelector matching no namespace: nothing", peer(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"env": "staging"}}}), nil},
		{"no peers: this tenant's pods only (no reserved ranges named)", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].From = nil },
			[]string{"own web in shop", "own web in billing", "own web in lab"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host, errs := HostNetworkPolicy(tenantPolicy(tc.np), policyConfig, "id", namespaces)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if len(host.Spec.Ingress) != 1 || len(host.Spec.Ingress[0].From) == 0 {
				t.Fatalf("host ingress %+v: want one rule with peers (no peers would admit every source)", host.Spec.Ingress)
			}
			for name, pod := range pods {
				reached := false
				for _, p := range host.Spec.Ingress[0].From {
					if p.NamespaceSelector != nil || p.IPBlock != nil {
						t.Fatalf("host peer %+v: only pod selectors in the host namespace", p)
					}
					reached = reached || matches(t, p.PodSelector, pod)
				}
				want := false
				for _, r := range tc.reach {
					want = want || r == name
				}
				if reached != want {
					t.Errorf("%s reached: %v, want %v", name, reached, want)
				}
			}
		})
	}
}

// The policy selects only this tenant's pods of its namespace, and the
// host object carries ports, endPort, policyTypes and podbridge's keys.
func TestHostNetworkPolicy(t *testing.T) {
	np := tenantPolicy(func(np *networkingv1.NetworkPolicy) {
		np.Annotations = map[string]string{"note": "x"}
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		np.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Protocol: ptrTo(corev1.ProtocolTCP), Port: ptrTo(intstr.FromInt32(8000)), EndPort: ptrTo(int32(8080))}}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptrTo(intstr.FromString("dns"))}}}}
	})
	host, errs := HostNetworkPolicy(np, policyConfig, "id", nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if host.Name != "allow-front-x-shop-x-vc" || host.Namespace != "host" {
		t.Errorf("host name %s/%s", host.Namespace, host.Name)
	}
	for name, pod := range map[string]labels.Set{"own db": hostPod("vc", "shop", map[string]string{"app": "db"})} {
		if !matches(t, &host.Spec.PodSelector, pod) {
			t.Errorf("spec.podSelector misses %s", name)
		}
	}
	for name, pod := range map[string]labels.Set{
		"other tenant's db":       hostPod("other", "shop", map[string]string{"app": "db"}),
		"own db in another ns":    hostPod("vc", "billing", map[string]string{"app": "db"}),
		"a db podbridge not made": {"tenant.podbridge.io/app": "db", LabelVCluster: "vc", LabelNamespace: "shop"},
	} {
		if matches(t, &host.Spec.PodSelector, pod) {
			t.Errorf("spec.podSelector selects %s", name)
		}
	}
	if p := host.Spec.Ingress[0].Ports[0]; p.Port.IntVal != 8000 || *p.EndPort != 8080 || *p.Protocol != corev1.ProtocolTCP {
		t.Errorf("ports %+v not carried", host.Spec.Ingress[0].Ports)
	}
	if host.Spec.Egress[0].Ports[0].Port.StrVal != "dns" || len(host.Spec.PolicyTypes) != 2 {
		t.Errorf("egress %+v, policyTypes %v not carried", host.Spec.Egress, host.Spec.PolicyTypes)
	}
	if len(host.Annotations) != 5 || host.Annotations["note"] != "" || host.Annotations[AnnotationSyncID] != "id" {
		t.Errorf("annotations %v: podbridge's only", host.Annotations)
	}
	if host.Labels[TenantKey("team")] != "a" || host.Labels[LabelVCluster] != "vc" || host.Labels["team"] != "" {
		t.Errorf("labels %v", host.Labels)
	}
	if !SameHostNetworkPolicy(host, host) {
		t.Error("a host policy differs from itself")
	}
}

// With the platform's reserved ranges named, "every peer" is this
// tenant's pods and every address outside them, per family named.
func TestHostNetworkPolicyEveryPeer(t *testing.T) {
	cfg := policyConfig
	cfg.ReservedCIDRs = []string{"10.244.0.0/16", "10.96.0.0/12", "fd00::/8"}
	host, errs := HostNetworkPolicy(tenantPolicy(func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		np.Spec.Ingress = nil
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
	}), cfg, "id", nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	to := host.Spec.Egress[0].To
	if len(to) != 3 || to[0].PodSelector == nil || to[0].PodSelector.MatchLabels[LabelVCluster] != "vc" {
		t.Fatalf("egress to %+v", to)
	}
	if b := to[1].IPBlock; b.CIDR != "0.0.0.0/0" || len(b.Except) != 2 || b.Except[0] != "10.244.0.0/16" {
		t.Errorf("IPv4 block %+v", b)
	}
	if b := to[2].IPBlock; b.CIDR != "::/0" || len(b.Except) != 1 || b.Except[0] != "fd00::/8" {
		t.Errorf("IPv6 block %+v", b)
	}
	iso := IsolationPolicy(cfg)
	if len(iso.Spec.Ingress) != 1 || len(iso.Spec.Ingress[0].From) != 3 || !matches(t, &iso.Spec.PodSelector, hostPod("vc", "any", nil)) ||
		matches(t, &iso.Spec.PodSelector, hostPod("other", "any", nil)) || iso.Name != "podbridge-isolation-vc" {
		t.Errorf("isolation policy %+v", iso.Spec)
	}
	if matches(t, iso.Spec.Ingress[0].From[0].PodSelector, hostPod("other", "shop", nil)) {
		t.Error("the isolation policy admits another tenant's pods")
	}
}

// Invalid keys and selectors are refused naming the field.
func TestHostNetworkPolicyInvalid(t *testing.T) {
	for name, mutate := range map[string]func(*networkingv1.NetworkPolicy){
		"bad key": func(np *networkingv1.NetworkPolicy) {
			np.Spec.PodSelector.MatchLabels = map[string]string{"a/b/c": "x"}
		},
		"bad namespace selector": func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].From[0].NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Near"}}}
		},
		"no name": func(np *networkingv1.NetworkPolicy) { np.Name = "" },
	} {
		t.Run(name, func(t *testing.T) {
			if _, errs := HostNetworkPolicy(tenantPolicy(mutate), policyConfig, "id", NamespaceLabels{"shop": {"env": "prod"}}); len(errs) == 0 {
				t.Error("admitted")
			}
		})
	}
}
