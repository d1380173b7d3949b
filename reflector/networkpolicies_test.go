package reflector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

func storedPolicy(mutate ...func(*networkingv1.NetworkPolicy)) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow", Namespace: "shop", Annotations: map[string]string{translate.AnnotationSyncID: "id"}},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "front"}},
			}}}},
		},
	}
	for _, m := range mutate {
		m(np)
	}
	return np
}

func hostPolicyOf(virtual *networkingv1.NetworkPolicy, namespaces translate.NamespaceLabels, age time.Duration) *networkingv1.NetworkPolicy {
	h, errs := translate.HostNetworkPolicy(virtual, svcGate().Config, virtual.Annotations[translate.AnnotationSyncID], namespaces)
	if len(errs) > 0 {
		panic(fmt.Sprint(errs))
	}
	h.CreationTimestamp = metav1.NewTime(svcNow.Add(-age))
	return h
}

// The NetworkPolicy reconciler's decision for each state of a pair,
// the attacks among them.
func TestDecideNetworkPolicy(t *testing.T) {
	grace := 30 * time.Second
	stored := storedPolicy()
	none := translate.NamespaceLabels{"shop": {}}
	labelled := translate.NamespaceLabels{"shop": {}, "web": {"team": "front"}}
	cases := []struct {
		name          string
		virtual, host *networkingv1.NetworkPolicy
		namespaces    translate.NamespaceLabels
		want          string
	}{
		{"in sync", stored, hostPolicyOf(stored, none, time.Hour), none, ""},
		{"a namespace labelled later is selected then (level-based)", stored, hostPolicyOf(stored, none, time.Hour), labelled, "UpdateHost"},
		{"a namespace's label removed: no longer selected", stored, hostPolicyOf(stored, labelled, time.Hour), none, "UpdateHost"},
		{"orphan past the grace period", nil, hostPolicyOf(stored, none, time.Minute), none, "DeleteOrphan"},
		{"orphan still young: wait", nil, hostPolicyOf(stored, none, time.Second), none, "requeue"},
		{"host policy gone: the virtual one goes", stored, nil, none, "DeleteVirtual"},
		{"never admitted by podbridge: an event, nothing on the host", storedPolicy(func(np *networkingv1.NetworkPolicy) { np.Annotations = nil }), nil, none, "NotAdmitted"},
		{"changed while the registration was away: carried", storedPolicy(func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].From[0].PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		}), hostPolicyOf(stored, none, time.Hour), none, "UpdateHost"},
		{"changed while the registration was away to an ipBlock over the pod range: refused", storedPolicy(func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}
		}), hostPolicyOf(stored, none, time.Hour), none, "Refused"},
		{"a change just after the webhook wrote: wait", storedPolicy(func(np *networkingv1.NetworkPolicy) {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}), func() *networkingv1.NetworkPolicy {
			h := hostPolicyOf(stored, none, time.Hour)
			h.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: translate.FieldManagerWebhook, Time: ptr.To(metav1.NewTime(svcNow.Add(-5 * time.Second)))}}
			return h
		}(), none, "requeue"},
		{"host policy of an earlier policy of the same name", storedPolicy(func(np *networkingv1.NetworkPolicy) { np.Annotations[translate.AnnotationSyncID] = "new" }),
			hostPolicyOf(stored, none, time.Minute), none, "DeleteOrphan DeleteVirtual"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gate := svcGate()
			gate.Config.ReservedCIDRs = []string{"10.244.0.0/16"}
			d := decideNetworkPolicy(tc.virtual, tc.host, tc.namespaces, gate, svcNow, grace)
			var got []string
			for _, s := range d.steps {
				got = append(got, s.String())
			}
			if d.requeue > 0 {
				got = append(got, "requeue")
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("decided %q, want %q (refused: %v)", strings.Join(got, " "), tc.want, d.refused)
			}
			if d.desired != nil {
				// Whatever is written still selects only this tenant's pods.
				if errs := gate.CheckNetworkPolicy(tc.virtual, d.desired); len(errs) > 0 {
					t.Errorf("desired host policy fails the gate: %v", errs)
				}
			}
		})
	}
}
