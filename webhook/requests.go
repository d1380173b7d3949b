package webhook

import (
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/translate"
)

// podRequests is the one kind of pod admission request a handler serves:
// an operation on pods or on one of their subresources, at one path.
//
// Each handler serves only its own kind and refuses every other request
// with a 400 that names its path and what it serves. The tenant is
// cluster-admin of the virtual cluster: it can point podbridge's webhooks
// (until the registration keeper restores them) or webhooks of its own at
// any of podbridge's paths, with any rules. A create sent to the update
// guard must not be allowed (the pod would be stored without a host pod),
// and an update sent to the create handler must not make a host pod.
type podRequests struct {
	path        string
	operation   admissionv1.Operation
	subResource string
}

var (
	podCreates          = podRequests{path: translate.WebhookPath, operation: admissionv1.Create}
	podUpdates          = podRequests{path: translate.WebhookPathPodUpdate, operation: admissionv1.Update}
	ephemeralContainers = podRequests{path: translate.WebhookPathEphemeralContainers, operation: admissionv1.Update, subResource: "ephemeralcontainers"}
)

// serves returns ok when req is of kind k, and otherwise the refusal.
func (k podRequests) serves(req admission.Request) (_ admission.Response, ok bool) {
	if req.UID == "" || req.Resource.Resource != "pods" || req.Kind.Kind != "Pod" {
		// The registration sends only pods: anything else is not from the apiserver.
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("not a pod admission request (uid %q, resource %q, subresource %q, kind %q)", req.UID, req.Resource.Resource, req.SubResource, req.Kind.Kind)), false
	}
	if req.Operation != k.operation || req.SubResource != k.subResource {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("podbridge's %s serves %s only, not %s: the webhook configuration that sent it here is not as podbridge registers it", k.path, k, podRequests{operation: req.Operation, subResource: req.SubResource})), false
	}
	return admission.Response{}, true
}

// String names the kind for messages: "pod CREATE", "pods/ephemeralcontainers UPDATE".
func (k podRequests) String() string {
	if k.subResource != "" {
		return fmt.Sprintf("pods/%s %s", k.subResource, k.operation)
	}
	return fmt.Sprintf("pod %s", k.operation)
}

// counted counts resp in admissionsTotal and returns it.
func counted(resp admission.Response) admission.Response {
	outcome, reason := "admitted", ""
	if !resp.Allowed {
		outcome, reason = "refused", string(resp.Result.Reason)
		if resp.Result.Code >= 500 {
			outcome = "error"
		}
	}
	admissionsTotal.WithLabelValues(outcome, reason).Inc()
	return resp
}
