package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/translate"
)

// Each Service path serves its own kind of request only: a webhook the
// tenant rewires cannot send an update to the create handler or a pod to
// either, and no host call is made for them (the handler has no clients).
func TestServicePathsServeTheirOwnKind(t *testing.T) {
	raw, err := json.Marshal(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	req := func(op admissionv1.Operation, resource, subresource, kind string) admission.Request {
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Operation: op, Resource: metav1.GroupVersionResource{Version: "v1", Resource: resource}, SubResource: subresource,
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind}, Namespace: "shop", Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: raw},
		}}
	}
	cases := []struct {
		name   string
		update bool
		req    admission.Request
		want   string
	}{
		{"an update sent to the create path", false, req(admissionv1.Update, "services", "", "Service"), translate.WebhookPathService},
		{"a create sent to the update path", true, req(admissionv1.Create, "services", "", "Service"), translate.WebhookPathServiceUpdate},
		{"a pod sent to the create path", false, req(admissionv1.Create, "pods", "", "Pod"), "not a Service admission request"},
		{"a status update sent to the update path", true, req(admissionv1.Update, "services", "status", "Service"), "not a Service admission request"},
		{"a delete", true, req(admissionv1.Delete, "services", "", "Service"), translate.WebhookPathServiceUpdate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := (&serviceMutator{Update: tc.update}).Handle(context.Background(), tc.req)
			if resp.Allowed || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, tc.want) {
				t.Errorf("answer %+v, want a 400 naming %q", resp.Result, tc.want)
			}
		})
	}
}

// The virtual apiserver's own default/kubernetes Service gets no host
// Service (the handler has no clients): it is admitted as it is, or, with
// the platform's address for it, pinned there whatever it asked.
func TestKubernetesServiceHasNoHostService(t *testing.T) {
	raw, err := json.Marshal(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Operation: admissionv1.Create, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "services"},
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Service"}, Namespace: "default", Object: runtime.RawExtension{Raw: raw},
	}}
	resp := (&serviceMutator{}).Handle(context.Background(), req)
	if !resp.Allowed || len(resp.Patches) > 0 {
		t.Errorf("answer %+v, patches %v", resp.Result, resp.Patches)
	}
	pinned := &serviceMutator{Config: translate.Config{KubernetesServiceIP: "10.0.0.2"}}
	resp = pinned.Handle(context.Background(), req)
	got, _ := json.Marshal(resp.Patches)
	if !resp.Allowed || !strings.Contains(string(got), `"path":"/spec/clusterIP","value":"10.0.0.2"`) || !strings.Contains(string(got), `"path":"/spec/clusterIPs","value":["10.0.0.2"]`) {
		t.Errorf("answer %+v, patches %s: want the ClusterIP pinned to 10.0.0.2", resp.Result, got)
	}
}
