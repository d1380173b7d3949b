package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/translate"
)

// Each NetworkPolicy path serves its own kind of request only, and makes
// no host call for another (the handler has no clients).
func TestNetworkPolicyPathsServeTheirOwnKind(t *testing.T) {
	raw, err := json.Marshal(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	req := func(op admissionv1.Operation, resource, kind string) admission.Request {
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Operation: op, Resource: metav1.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: resource},
			Kind: metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: kind}, Namespace: "shop",
			Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: raw},
		}}
	}
	for _, tc := range []struct {
		name   string
		update bool
		req    admission.Request
		want   string
	}{
		{"an update sent to the create path", false, req(admissionv1.Update, "networkpolicies", "NetworkPolicy"), translate.WebhookPathNetworkPolicy},
		{"a create sent to the update path", true, req(admissionv1.Create, "networkpolicies", "NetworkPolicy"), translate.WebhookPathNetworkPolicyUpdate},
		{"a Service sent to the create path", false, req(admissionv1.Create, "services", "Service"), "not a NetworkPolicy admission request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := (&networkPolicyMutator{Update: tc.update}).Handle(context.Background(), tc.req)
			if resp.Allowed || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, tc.want) {
				t.Errorf("answer %+v, want a 400 naming %q", resp.Result, tc.want)
			}
		})
	}
}
