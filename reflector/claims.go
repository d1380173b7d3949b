package reflector

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// Reasons of the reflector's events on virtual claims.
const (
	ReasonHostClaimRefused = "HostClaimRefused"
	ReasonHostClaimGone    = "HostClaimGone"
	// ReasonHostClaimMissing: a claim stored without podbridge's admission
	// (its registration was away) has no host claim.
	ReasonHostClaimMissing = "HostClaimMissing"
)

// claimStepKind is one write the claim reconciler decides.
type claimStepKind int

const (
	// clmDeleteOrphan deletes a host claim no stored virtual claim claims,
	// once the virtual apiserver confirms it.
	clmDeleteOrphan claimStepKind = iota
	// clmDeleteVirtual deletes a virtual claim whose host claim is gone,
	// once a live host read confirms it: deletion carried upward.
	clmDeleteVirtual
	// clmUpdateHost writes the stored virtual claim's requests and labels
	// over its host claim (a change the webhook did not see).
	clmUpdateHost
	// clmRefused records that the stored virtual claim fails the gate:
	// nothing is written to the host.
	clmRefused
	// clmStatus copies the host claim's status to the virtual claim.
	clmStatus
	// clmBind mirrors the host claim's binding (its volume's name, the
	// binder's annotations) on the virtual claim.
	clmBind
	// clmNotAdmitted records that a virtual claim podbridge never admitted
	// has no host claim: nothing is written to the host.
	clmNotAdmitted
)

func (k claimStepKind) String() string {
	return [...]string{"DeleteOrphan", "DeleteVirtual", "UpdateHost", "Refused", "Status", "Bind", "NotAdmitted"}[k]
}

// claimDecision is what the claim reconciler writes for one key.
type claimDecision struct {
	steps []claimStepKind
	// desired is the host claim to write (clmUpdateHost).
	desired *corev1.PersistentVolumeClaim
	// refused are the gate's errors (clmRefused).
	refused field.ErrorList
	// requeue is when to look again.
	requeue time.Duration
}

// decideClaim is the claim reconciler's whole decision for one virtual
// claim key, a pure function of what was gathered: the virtual claim (nil:
// not stored) and the host claim of its name (nil: none).
//   - A host claim no stored virtual claim claims is an orphan once older
//     than the grace period (a create may still be in admission); a
//     deleted virtual claim's host claim is one at once. A virtual claim
//     in use stays Terminating (the virtual cluster's protection
//     controller) and keeps its host claim until it is gone.
//   - The host binds and provisions: the virtual claim's status mirrors
//     the host claim's, whatever it is, and its binding (volume name, the
//     binder's annotations) the host claim's.
//   - A claimed host claim follows the stored virtual claim's requests and
//     labels through the gate: what the webhook did not see is carried or
//     refused here, never written unchecked.
//   - A virtual claim podbridge admitted whose host claim is gone is
//     deleted: deletion carried upward.
//   - A virtual claim podbridge never admitted gets no host claim, only an
//     event.
func decideClaim(virtual, host *corev1.PersistentVolumeClaim, gate policy.Gate, now time.Time, grace time.Duration) claimDecision {
	var d claimDecision
	claimed := translate.ClaimsClaim(virtual, host)
	if host != nil && !claimed {
		if host.DeletionTimestamp != nil {
			return d
		}
		if wait := translate.OrphanWait(host, now, grace); wait > 0 {
			d.requeue = wait
		} else {
			d.steps = append(d.steps, clmDeleteOrphan)
		}
	}
	if virtual == nil {
		return d
	}
	if virtual.Annotations[translate.AnnotationSyncID] == "" {
		if virtual.DeletionTimestamp == nil {
			d.steps = append(d.steps, clmNotAdmitted)
		}
		return d
	}
	if !claimed {
		if virtual.DeletionTimestamp == nil {
			d.steps = append(d.steps, clmDeleteVirtual)
		}
		return d
	}
	if host.DeletionTimestamp == nil && virtual.DeletionTimestamp == nil {
		desired, errs := translate.HostClaim(virtual, gate.Config, virtual.Annotations[translate.AnnotationSyncID])
		if len(errs) == 0 {
			errs = gate.CheckClaim(virtual, host, desired)
			keepLarger(desired, host)
		}
		switch {
		case len(errs) > 0:
			d.steps, d.refused = append(d.steps, clmRefused), errs
		case translate.SameHostClaim(desired, host):
		case webhookWrote(host, now, grace):
			// The update the webhook carried may not be stored yet, or
			// this cache not show it yet: look again later.
			d.requeue = grace
		default:
			d.steps, d.desired = append(d.steps, clmUpdateHost), translate.OverHostClaim(desired, host)
		}
	}
	if status := translate.ClaimStatus(&host.Status); !apiequality.Semantic.DeepEqual(virtual.Status, status) {
		d.steps = append(d.steps, clmStatus)
	}
	if virtual.DeletionTimestamp == nil && host.DeletionTimestamp == nil && translate.NeedsBinding(virtual, host) {
		d.steps = append(d.steps, clmBind)
	}
	return d
}

// keepLarger keeps on desired the host claim's storage request when it is
// larger: the host never shrinks a claim, and a resize the webhook wrote
// to the host that the virtual apiserver then refused (its own resize
// admission, which runs after podbridge's) leaves the host claim larger
// than the stored virtual one. The storage is the tenant's either way.
func keepLarger(desired, host *corev1.PersistentVolumeClaim) {
	if translate.RequestedStorage(host) > translate.RequestedStorage(desired) {
		if desired.Spec.Resources.Requests == nil {
			desired.Spec.Resources.Requests = corev1.ResourceList{}
		}
		desired.Spec.Resources.Requests[corev1.ResourceStorage] = host.Spec.Resources.Requests[corev1.ResourceStorage]
	}
}

// claimReconciler keeps each virtual claim and its host claim one
// (decideClaim).
type claimReconciler struct {
	objectPairs[corev1.PersistentVolumeClaim, *corev1.PersistentVolumeClaim]
}

func newClaimReconciler(deps pairDeps) *claimReconciler {
	return &claimReconciler{newObjectPairs(deps, "PersistentVolumeClaims", func() client.ObjectList { return &corev1.PersistentVolumeClaimList{} }, translate.HostClaimName, getClaim)}
}

// SetupWithManager registers the controller: events of either claim
// enqueue the virtual key, and a full pass covers both caches.
func (r *claimReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	return r.controller(mgr, virtual, concurrency, resync, r.pairKeys).Complete(r)
}

// Reconcile gathers the claim pair of one key, decides, and writes.
func (r *claimReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	virtual, host, err := r.gather(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	d := decideClaim(virtual, host, r.Gate, r.Clock.Now(), r.GracePeriod)
	log := logf.FromContext(ctx)
	for _, s := range d.steps {
		written, err := r.write(ctx, s, d, virtual, host)
		if err != nil {
			return reconcile.Result{}, err
		}
		if written != nil {
			virtual = written // the next write of the virtual claim starts from it.
		}
		log.V(1).Info("Reconciled PersistentVolumeClaim", "step", s.String())
	}
	return reconcile.Result{RequeueAfter: d.requeue}, nil
}

// write makes step s; it returns the virtual claim as a write of it left
// it (nil when it wrote none).
func (r *claimReconciler) write(ctx context.Context, s claimStepKind, d claimDecision, virtual, host *corev1.PersistentVolumeClaim) (*corev1.PersistentVolumeClaim, error) {
	log := logf.FromContext(ctx)
	switch s {
	case clmDeleteOrphan:
		if host.Annotations[translate.AnnotationNamespace] != "" {
			live, err := getClaim(ctx, r.VirtualReader, virtualKeyOf(host))
			if err != nil {
				return nil, err
			}
			if translate.ClaimsClaim(live, host) {
				return nil, nil // the cache lags; the virtual claim's event is on its way.
			}
		}
		if err := r.Host.Delete(ctx, host, client.Preconditions{UID: &host.UID}); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("deleting orphan host PersistentVolumeClaim %s: %w", host.Name, err)
		}
		countAction(actionOrphanDelete)
		log.Info("Deleted orphan host PersistentVolumeClaim", "hostClaim", host.Name, "syncID", host.Annotations[translate.AnnotationSyncID])
	case clmDeleteVirtual:
		name := translate.HostClaimName(virtual.Name, virtual.Namespace, r.Config.VCluster)
		live, err := getClaim(ctx, r.HostReader, client.ObjectKey{Namespace: r.Config.HostNamespace, Name: name})
		if err != nil {
			return nil, err
		}
		if translate.ClaimsClaim(virtual, live) {
			return nil, nil // the host cache lags.
		}
		if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("deleting virtual PersistentVolumeClaim %s/%s: %w", virtual.Namespace, virtual.Name, err)
		}
		countAction(actionDeleteVirtual)
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostClaimGone, eventActionDeleting, "host PersistentVolumeClaim %s is gone", name)
		log.Info("Deleted virtual PersistentVolumeClaim: its host claim is gone", "claim", virtual.Namespace+"/"+virtual.Name, "hostClaim", name)
	case clmUpdateHost:
		if err := r.Host.Update(ctx, d.desired, client.FieldOwner(FieldManager)); err != nil {
			return nil, fmt.Errorf("updating host PersistentVolumeClaim %s: %w", host.Name, err)
		}
		countAction(actionUpdateHost)
		log.Info("Updated host PersistentVolumeClaim from its stored virtual claim", "hostClaim", host.Name)
	case clmRefused:
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostClaimRefused, eventActionReflect, "not carried to the host: %s", d.refused.ToAggregate().Error())
		log.Info("Refused to carry a PersistentVolumeClaim to the host", "claim", virtual.Namespace+"/"+virtual.Name, "errors", d.refused.ToAggregate().Error())
	case clmNotAdmitted:
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostClaimMissing, eventActionReflect,
			"stored without podbridge's admission (its webhook registration was away): no host PersistentVolumeClaim; delete and create it again")
	case clmStatus:
		updated := virtual.DeepCopy()
		updated.Status = translate.ClaimStatus(&host.Status)
		if err := r.Virtual.Status().Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
			return nil, fmt.Errorf("copying host status to virtual PersistentVolumeClaim %s/%s: %w", virtual.Namespace, virtual.Name, err)
		}
		countAction(actionStatusUpdate)
		return updated, nil
	case clmBind:
		bound := translate.BoundVirtualClaim(virtual, host)
		if err := r.Virtual.Update(ctx, bound, client.FieldOwner(FieldManager)); err != nil {
			return nil, fmt.Errorf("binding virtual PersistentVolumeClaim %s/%s to %s: %w", virtual.Namespace, virtual.Name, host.Spec.VolumeName, err)
		}
		log.Info("Mirrored the host's binding on a virtual PersistentVolumeClaim", "claim", virtual.Namespace+"/"+virtual.Name, "volume", host.Spec.VolumeName)
		return bound, nil
	}
	return nil, nil
}

func getClaim(ctx context.Context, c client.Reader, key types.NamespacedName) (*corev1.PersistentVolumeClaim, error) {
	pvc, err := kube.GetOrNil[corev1.PersistentVolumeClaim](ctx, c, key)
	if err != nil {
		return nil, fmt.Errorf("reading PersistentVolumeClaim %s: %w", key, err)
	}
	return pvc, nil
}
