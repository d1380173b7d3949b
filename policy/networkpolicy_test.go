package policy

import (
	"reflect"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podbridge/podbridge/translate"
)

// networkPolicyTypes are the types a NetworkPolicySpec holds, by the
// prefix of their fields in networkPolicyFields.
var networkPolicyTypes = map[string]reflect.Type{
	"":         reflect.TypeFor[networkingv1.NetworkPolicySpec](),
	"ingress.": reflect.TypeFor[networkingv1.NetworkPolicyIngressRule](),
	"egress.":  reflect.TypeFor[networkingv1.NetworkPolicyEgressRule](),
	"peer.":    reflect.TypeFor[networkingv1.NetworkPolicyPeer](),
	"port.":    reflect.TypeFor[networkingv1.NetworkPolicyPort](),
	"ipBlock.": reflect.TypeFor[networkingv1.IPBlock](),
}

// Every field of a NetworkPolicySpec, and of the rules, peers, ports and
// blocks it holds, has a decision: a field a new Kubernetes version adds
// fails this test rather than being dropped (a dropped field of a peer
// could widen the host policy) or carried unexamined.
func TestEveryNetworkPolicyFieldIsClassified(t *testing.T) {
	var names []string
	for prefix, ty := range networkPolicyTypes {
		names = append(names, jsonFieldNames(prefix, ty)...)
	}
	checkEveryFieldClassified(t, "networkPolicyFields", networkPolicyFields, names)
}

// docs/networkpolicy.md's table lists every field with the code's treatment.
func TestDocsListEveryNetworkPolicyField(t *testing.T) {
	checkDocsListEveryField(t, "../docs/networkpolicy.md", networkPolicyFields)
}

func gatePolicy(peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: peers}},
		},
	}
}

func block(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// The decision on each ipBlock: only outside the platform's reserved
// ranges, refused naming the field and the flag.
func TestCheckNetworkPolicyIPBlock(t *testing.T) {
	reserved := []string{"10.244.0.0/16", "10.96.0.0/12", "169.254.169.254/32"}
	cases := []struct {
		name     string
		reserved []string
		peer     networkingv1.NetworkPolicyPeer
		want     []string // substrings of the errors; none: admitted
	}{
		{"no ranges named: refused", nil, block("192.0.2.0/24"), []string{"spec.egress[0].to[0].ipBlock", "--" + FlagReservedCIDRs}},
		{"outside the reserved ranges", reserved, block("192.0.2.0/24"), nil},
		{"covering the pod range", reserved, block("10.0.0.0/8"), []string{"spec.egress[0].to[0].ipBlock.cidr", "10.244.0.0/16", "--" + FlagReservedCIDRs}},
		{"inside the pod range (another tenant's pod)", reserved, block("10.244.3.7/32"), []string{"lies in the reserved range 10.244.0.0/16"}},
		{"the metadata address", reserved, block("169.254.0.0/16"), []string{"169.254.169.254/32"}},
		{"everything, the reserved ranges excepted", reserved, block("0.0.0.0/0", "10.0.0.0/8", "169.254.169.254/32"), nil},
		{"everything, one reserved range left in", reserved, block("0.0.0.0/0", "10.244.0.0/16", "169.254.169.254/32"), []string{"10.96.0.0/12"}},
		{"IPv6 with no IPv6 range named", reserved, block("2001:db8::/32"), []string{"no reserved address range of its family"}},
		{"not a CIDR", reserved, block("10.1.2.3"), []string{"spec.egress[0].to[0].ipBlock.cidr"}},
		{"pod selectors need no flag", nil, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := serviceTestConfig
			cfg.ReservedCIDRs = tc.reserved
			g := Gate{Config: cfg}
			np := gatePolicy(tc.peer)
			host, errs := translate.HostNetworkPolicy(np, cfg, "id", nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			got := g.CheckNetworkPolicy(np, host).ToAggregate()
			checkRefusal(t, got, tc.want)
		})
	}
}

// Whatever translation produced, a host policy is refused unless it
// selects only this virtual cluster's pods of the policy's namespace and
// each peer only its pods or addresses outside the reserved ranges.
func TestCheckNetworkPolicyHostRules(t *testing.T) {
	cfg := serviceTestConfig
	cfg.ReservedCIDRs = []string{"10.244.0.0/16"}
	g := Gate{Config: cfg}
	np := gatePolicy(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}})
	for name, mutate := range map[string]func(*networkingv1.NetworkPolicy){
		"unscoped podSelector": func(h *networkingv1.NetworkPolicy) { delete(h.Spec.PodSelector.MatchLabels, translate.LabelVCluster) },
		"another namespace":    func(h *networkingv1.NetworkPolicy) { h.Spec.PodSelector.MatchExpressions[0].Values = []string{"other"} },
		"not podbridge's pods": func(h *networkingv1.NetworkPolicy) { delete(h.Spec.PodSelector.MatchLabels, translate.LabelManagedBy) },
		"peer of another tenant": func(h *networkingv1.NetworkPolicy) {
			h.Spec.Egress[0].To[0].PodSelector.MatchLabels[translate.LabelVCluster] = "other"
		},
		"peer in any namespace": func(h *networkingv1.NetworkPolicy) {
			h.Spec.Egress[0].To[0].NamespaceSelector = &metav1.LabelSelector{}
		},
		"peer with no selector":   func(h *networkingv1.NetworkPolicy) { h.Spec.Egress[0].To[0] = networkingv1.NetworkPolicyPeer{} },
		"peer of the pod network": func(h *networkingv1.NetworkPolicy) { h.Spec.Egress[0].To[0] = block("10.244.0.0/16") },
		"a tenant annotation":     func(h *networkingv1.NetworkPolicy) { h.Annotations["projectcalico.org/x"] = "y" },
	} {
		t.Run(name, func(t *testing.T) {
			host, errs := translate.HostNetworkPolicy(np, cfg, "id", nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if errs := g.CheckNetworkPolicy(np, host); len(errs) > 0 {
				t.Fatalf("the translation itself refused: %v", errs)
			}
			mutate(host)
			if errs := g.CheckNetworkPolicy(np, host); len(errs) == 0 {
				t.Error("admitted")
			}
		})
	}
}
