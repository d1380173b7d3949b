package staticpolicy

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/podbridge/podbridge/translate"
)

// The node policy pins addresses and port to the kubelet endpoint, or to
// none when there is none; every policy has a binding that denies.
func TestObjects(t *testing.T) {
	for _, tc := range []struct {
		kubelet   translate.KubeletEndpoint
		addresses string
		ports     string
	}{
		{translate.KubeletEndpoint{Address: "podbridge-kubelet.tenant-a.svc", Port: 10350}, `in ["podbridge-kubelet.tenant-a.svc"]`, "in [0, 10350]"},
		{translate.KubeletEndpoint{}, "in []", "in [0]"},
	} {
		objs := Objects(tc.kubelet)
		if len(objs) != 4 {
			t.Fatalf("%d objects, want two policies and their bindings", len(objs))
		}
		nodes := objs[0].(*admissionregistrationv1.ValidatingAdmissionPolicy)
		if got := nodes.Spec.Validations[0].Expression; !strings.HasSuffix(got, tc.addresses+")") {
			t.Errorf("address rule %q, want it to end %q", got, tc.addresses+")")
		}
		if got := nodes.Spec.Validations[1].Expression; !strings.HasSuffix(got, tc.ports) {
			t.Errorf("port rule %q, want it to end %q", got, tc.ports)
		}
		for i := 0; i < 4; i += 2 {
			p := objs[i].(*admissionregistrationv1.ValidatingAdmissionPolicy)
			b := objs[i+1].(*admissionregistrationv1.ValidatingAdmissionPolicyBinding)
			if !strings.HasSuffix(p.Name, ".static.k8s.io") || b.Spec.PolicyName != p.Name || b.Spec.ValidationActions[0] != admissionregistrationv1.Deny {
				t.Errorf("policy %s, binding %+v", p.Name, b.Spec)
			}
		}
	}
}
