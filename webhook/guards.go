package webhook

import (
	"context"
	"fmt"
	"net/http"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// updateGuard is the admission handler for pod updates
// (translate.WebhookPathPodUpdate): it refuses updates that set
// podbridge's own labels and annotations, and puts back those an update
// drops (translate.DroppedReserved); the reflector carries the others to
// the host pod. It writes nothing and serves nothing else.
type updateGuard struct{}

var _ admission.Handler = updateGuard{}

// Handle admits a pod update unless it sets podbridge's keys.
func (updateGuard) Handle(_ context.Context, req admission.Request) admission.Response {
	return counted(admitUpdate(req))
}

func admitUpdate(req admission.Request) admission.Response {
	if resp, ok := podUpdates.serves(req); !ok {
		return resp
	}
	old, pod := &corev1.Pod{}, &corev1.Pod{}
	if err := decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod before the update: %w", err))
	}
	if err := decoder.DecodeRaw(req.Object, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err))
	}
	if errs := translate.ValidateMetadataUpdate(old, pod); len(errs) > 0 {
		return invalid(pod, errs...)
	}
	labels, annotations := translate.DroppedReserved(old, pod)
	if labels == nil && annotations == nil {
		return admission.Allowed("the reflector carries the update to the host pod")
	}
	var restore []jsonpatch.JsonPatchOperation
	if labels != nil {
		restore = addKeys("labels", pod.Labels != nil, labels)
	}
	if annotations != nil {
		restore = append(restore, addKeys("annotations", pod.Annotations != nil, annotations)...)
	}
	return admission.Patched("podbridge's labels and annotations the update dropped are kept; the reflector carries the rest to the host pod", restore...)
}

// ephemeralContainersCheck is the admission handler for the
// pods/ephemeralcontainers subresource
// (translate.WebhookPathEphemeralContainers): it checks the ephemeral
// containers a pod is given against the security policy and the
// translation, as its creation was; the reflector adds them to the host
// pod, through the same gate. It writes nothing and serves nothing else.
type ephemeralContainersCheck struct {
	Config translate.Config
	Gate   policy.Gate
}

var _ admission.Handler = &ephemeralContainersCheck{}

// Handle admits the new ephemeral containers if the host pod may have them.
func (c *ephemeralContainersCheck) Handle(_ context.Context, req admission.Request) admission.Response {
	return counted(c.admit(req))
}

func (c *ephemeralContainersCheck) admit(req admission.Request) admission.Response {
	if resp, ok := ephemeralContainers.serves(req); !ok {
		return resp
	}
	pod := &corev1.Pod{}
	if err := decoder.DecodeRaw(req.Object, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err))
	}
	// The host pod the reflector would write: the pod translated again as
	// at its creation, with its new ephemeral containers. The binding set
	// nodeName, which translation refuses from tenants.
	unbound := pod.DeepCopy()
	unbound.Spec.NodeName = ""
	host, _, errs := translate.HostPod(unbound, c.Config, pod.Annotations[translate.AnnotationSyncID])
	if len(errs) > 0 {
		return invalid(pod, errs...)
	}
	// A pod's RuntimeClass never changes: the host class was chosen, and
	// gated, at its creation (runtimeclass.HostClass), and the
	// reflector's write of these containers gates the host pod as it is.
	host.Spec.RuntimeClassName = nil
	if errs := c.Gate.Check(pod, host); len(errs) > 0 {
		return refuse(fmt.Sprintf("ephemeral containers of pod %q", pod.Name), pod, errs)
	}
	return admission.Allowed("the reflector adds the ephemeral containers to the host pod")
}
