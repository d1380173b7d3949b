package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// hostErrorResponse answers the tenant with the meaning of a host error: the
// status code the host gave where it means the same in the virtual cluster
// (quota 403, invalid 422, conflict 409), 503 when the host could not be
// reached or did not answer in time, so clients retry. Host pod names in the
// message are mapped back to the virtual name.
func hostErrorResponse(err error, virtual *corev1.Pod, hostName string) admission.Response {
	var apiStatus apierrors.APIStatus
	if !errors.As(err, &apiStatus) || isUnavailable(err) {
		return deny(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			fmt.Sprintf("pod %q not created: the host cluster is unavailable, retry later: %v", virtual.Name, err))
	}
	status := apiStatus.Status()
	message := strings.ReplaceAll(status.Message, hostName, virtual.Name)
	code, reason := status.Code, status.Reason
	if code == 0 {
		code, reason = http.StatusInternalServerError, metav1.StatusReasonInternalError
	}
	return deny(code, reason, fmt.Sprintf("host cluster refused pod %q: %s", virtual.Name, message))
}

// isUnavailable reports host errors that say nothing about the pod: the
// host was slow, overloaded or failing, and the same create may succeed later.
func isUnavailable(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}
