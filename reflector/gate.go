package reflector

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/translate"
)

// maxConditionMessage bounds the HostSync condition's message: a pod with
// many offending containers must not bloat its status.
const maxConditionMessage = 4096

// refuseHostSync records that the host-side gate refused w for virtual:
// a Warning event and a False translate.ConditionHostSync naming the
// fields, unless the virtual pod says so already (every reconcile of a
// refused pod checks again; it reports once). Nothing is written to the host.
func (r *podReconciler) refuseHostSync(ctx context.Context, virtual *corev1.Pod, w hostWrite, errs field.ErrorList) error {
	logf.FromContext(ctx).Info("Refused a host pod write", "write", w.what, "errors", errs.ToAggregate().Error())
	msg := fmt.Sprintf("podbridge refused %s the pod's host pod: %v", w.what, errs.ToAggregate())
	return r.reportHostSync(ctx, virtual, translate.ReasonHostSyncRefused, msg)
}

// reportSpecDiffers records that the stored virtual pod differs from the
// spec its host pod, already started, was made from: a Warning event and
// a False translate.ConditionHostSync saying what differs. It stays while
// the pod lives: the difference cannot be carried.
func (r *podReconciler) reportSpecDiffers(ctx context.Context, virtual *corev1.Pod, differs string) error {
	msg := "the pod changed after podbridge admitted it and its host pod had started (" + differs +
		"); the host pod runs the pod as admitted. A mutating webhook that runs after podbridge's changed it: re-create the pod"
	return r.reportHostSync(ctx, virtual, translate.ReasonHostSpecDiffers, msg)
}

// reportHostSync sets the False condition with reason and msg and sends a
// Warning event, unless the virtual pod says so already.
func (r *podReconciler) reportHostSync(ctx context.Context, virtual *corev1.Pod, reason, msg string) error {
	if len(msg) > maxConditionMessage {
		msg = msg[:maxConditionMessage-3] + "..."
	}
	existing := hostSyncCondition(virtual)
	if existing != nil && existing.Status == corev1.ConditionFalse && existing.Reason == reason && existing.Message == msg {
		return nil
	}
	r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, reason, eventActionReflect, "%s", msg)
	condition := corev1.PodCondition{
		Type: translate.ConditionHostSync, Status: corev1.ConditionFalse,
		Reason: reason, Message: msg,
		LastTransitionTime: metav1.NewTime(r.Clock.Now()),
	}
	if existing != nil && existing.Status == corev1.ConditionFalse {
		condition.LastTransitionTime = existing.LastTransitionTime
	}
	return r.writeHostSyncCondition(ctx, virtual, &condition)
}

// clearHostSyncRefused removes translate.ConditionHostSync once the
// virtual pod's changes are all on the host.
func (r *podReconciler) clearHostSyncRefused(ctx context.Context, virtual *corev1.Pod) error {
	if hostSyncCondition(virtual) == nil {
		return nil
	}
	logf.FromContext(ctx).Info("Carried the virtual pod's changes to the host after a refusal")
	return r.writeHostSyncCondition(ctx, virtual, nil)
}

// writeHostSyncCondition sets (or, when condition is nil, removes) the
// virtual pod's HostSync condition. A conflict or a pod gone meanwhile is
// not an error: the newer pod's event brings the pair back.
func (r *podReconciler) writeHostSyncCondition(ctx context.Context, virtual *corev1.Pod, condition *corev1.PodCondition) error {
	updated := virtual.DeepCopy()
	updated.Status.Conditions = slices.DeleteFunc(updated.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == translate.ConditionHostSync
	})
	if condition != nil {
		updated.Status.Conditions = append(updated.Status.Conditions, *condition)
	}
	if err := r.Virtual.Status().Update(ctx, forWrite(updated), client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing the virtual pod's %s condition: %w", translate.ConditionHostSync, err)
	}
	countAction(actionStatusUpdate)
	r.written.virtual(client.ObjectKeyFromObject(virtual), virtual.ResourceVersion, updated.ResourceVersion)
	return nil
}

func hostSyncCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == translate.ConditionHostSync {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
