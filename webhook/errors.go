package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// hostErrorResponse answers the tenant with the meaning of a host error
// about the host object hostName of the tenant's kind object name: the
// status code the host gave where it means the same in the virtual
// cluster (quota 403, invalid 422, conflict 409), 503 when the host could
// not be reached or did not answer in time, so clients retry (the message
// says the object was not done: "created", "written"). Host names in the
// message are mapped back to the virtual name.
func hostErrorResponse(err error, kind, name, hostName, done string) admission.Response {
	var apiStatus apierrors.APIStatus
	if !errors.As(err, &apiStatus) || isUnavailable(err) {
		return deny(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			fmt.Sprintf("%s %q not %s: the host cluster is unavailable, retry later: %v", kind, name, done, err))
	}
	status := apiStatus.Status()
	message := strings.ReplaceAll(status.Message, hostName, name)
	code, reason := status.Code, status.Reason
	if code == 0 {
		code, reason = http.StatusInternalServerError, metav1.StatusReasonInternalError
	}
	return deny(code, reason, fmt.Sprintf("host cluster refused %s %q: %s", kind, name, message))
}

// invalidObject answers 422 Invalid naming the fields of the tenant's kind
// object name, as the apiserver's own validation would.
func invalidObject(kind, name string, errs field.ErrorList) admission.Response {
	status := apierrors.NewInvalid(schema.GroupKind{Kind: kind}, name, errs).Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status}}
}

// isUnavailable reports host errors that say nothing about the pod: the
// host was slow, overloaded or failing, and the same create may succeed later.
func isUnavailable(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}
