package reflector

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// indexHostClaimVolume indexes the host claims by the volume they are
// bound to.
const indexHostClaimVolume = "spec.volumeName"

// volumeStep is the one write the volume reconciler decides.
type volumeStep int

const (
	volNone volumeStep = iota
	// volCreate creates the virtual volume of a bound claim pair.
	volCreate
	// volUpdate writes it back as it must be (a tenant's edit, a resize).
	volUpdate
	// volRelease marks a virtual volume whose claim is gone Released, so
	// the virtual cluster's volume protection lets it go; volDelete
	// deletes it.
	volRelease
	volDelete
)

func (s volumeStep) String() string {
	return [...]string{"None", "Create", "Update", "Release", "Delete"}[s]
}

// decideVolume is the volume reconciler's decision for one volume name, a
// pure function of the virtual volume of that name (nil: none) and the one
// its claim pair needs (desired; nil when no bound pair of this virtual
// cluster names it: see volumeReconciler.desired). A virtual volume exists
// exactly while its claim pair is bound to it: it goes when its claim
// goes, released first for the virtual cluster's volume protection.
func decideVolume(virtual, desired *corev1.PersistentVolume) volumeStep {
	switch {
	case desired == nil && virtual == nil:
		return volNone
	case desired == nil && !translate.IsVolumeMirror(virtual):
		return volNone // the tenant's own volume: nothing binds it.
	case desired == nil && virtual.DeletionTimestamp != nil:
		if virtual.Status.Phase == corev1.VolumeBound {
			return volRelease
		}
		return volNone
	case desired == nil:
		return volDelete
	case virtual == nil:
		return volCreate
	case virtual.DeletionTimestamp != nil:
		return volNone // the tenant deleted it: made again once it is gone.
	case translate.VolumeNeedsRecreate(desired, virtual):
		return volDelete
	case !translate.SameVirtualVolume(desired, virtual) || virtual.Status.Phase != corev1.VolumeBound:
		return volUpdate
	}
	return volNone
}

// volumeReconciler keeps a read-only virtual PersistentVolume for each
// bound claim pair (translate.VirtualVolume), named like the host volume.
type volumeReconciler struct {
	Host    client.Client
	Virtual client.Client
	Config  translate.Config
}

// SetupWithManager registers the controller: events of virtual volumes,
// of host claims and of virtual claims enqueue the volume name they name,
// and a full pass covers every mirror and every bound host claim.
func (r *volumeReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	byVolume := func(_ context.Context, c *corev1.PersistentVolumeClaim) []reconcile.Request {
		if c.Spec.VolumeName == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: c.Spec.VolumeName}}}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("persistentvolumes").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.PersistentVolume{}, &handler.TypedEnqueueRequestForObject[*corev1.PersistentVolume]{})).
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.PersistentVolumeClaim{}, handler.TypedEnqueueRequestsFromMapFunc(byVolume))).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.PersistentVolumeClaim{}, handler.TypedEnqueueRequestsFromMapFunc(byVolume))).
		WatchesRawSource(fullPass("persistentvolumes", resync, synced(watched{mgr.GetCache(), &corev1.PersistentVolumeClaim{}}, watched{virtual.GetCache(), &corev1.PersistentVolume{}}), r.allKeys)).
		Complete(r)
}

func (r *volumeReconciler) allKeys(ctx context.Context) ([]reconcile.Request, error) {
	hosts := &corev1.PersistentVolumeClaimList{}
	if err := r.Host.List(ctx, hosts, client.InNamespace(r.Config.HostNamespace)); err != nil {
		return nil, fmt.Errorf("listing host PersistentVolumeClaims: %w", err)
	}
	mirrors := &corev1.PersistentVolumeList{}
	if err := r.Virtual.List(ctx, mirrors, client.MatchingLabels{translate.LabelManagedBy: translate.ManagedByValue}); err != nil {
		return nil, fmt.Errorf("listing virtual PersistentVolumes: %w", err)
	}
	var keys []reconcile.Request
	for i := range hosts.Items {
		if name := hosts.Items[i].Spec.VolumeName; name != "" {
			keys = append(keys, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
		}
	}
	for i := range mirrors.Items {
		keys = append(keys, reconcile.Request{NamespacedName: types.NamespacedName{Name: mirrors.Items[i].Name}})
	}
	return keys, nil
}

// Reconcile gathers one volume name's virtual volume and claim pair,
// decides and writes.
func (r *volumeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	virtualPV, err := kube.GetOrNil[corev1.PersistentVolume](ctx, r.Virtual, client.ObjectKey{Name: req.Name})
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("reading virtual PersistentVolume %s: %w", req.Name, err)
	}
	desired, err := r.desired(ctx, req.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	step := decideVolume(virtualPV, desired)
	switch step {
	case volCreate:
		created := desired.DeepCopy()
		if err = r.Virtual.Create(ctx, created, client.FieldOwner(FieldManager)); err == nil {
			err = r.setBound(ctx, created)
		}
	case volUpdate:
		updated := translate.OverVirtualVolume(desired, virtualPV)
		if err = r.Virtual.Update(ctx, updated, client.FieldOwner(FieldManager)); err == nil {
			err = r.setBound(ctx, updated)
		}
	case volRelease:
		released := virtualPV.DeepCopy()
		released.Status.Phase = corev1.VolumeReleased
		err = r.Virtual.Status().Update(ctx, released, client.FieldOwner(FieldManager))
	case volDelete:
		err = client.IgnoreNotFound(r.Virtual.Delete(ctx, virtualPV, client.Preconditions{UID: &virtualPV.UID}))
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("%s virtual PersistentVolume %s: %w", step, req.Name, err)
	}
	if step != volNone {
		logf.FromContext(ctx).Info("Reconciled a virtual PersistentVolume", "volume", req.Name, "step", step.String())
	}
	return reconcile.Result{}, nil
}

// desired is the virtual volume the claim pair bound to host volume name
// needs: nil unless a host claim of this virtual cluster is bound to it
// (phase Bound, a capacity) and the stored virtual claim is that host
// claim's.
func (r *volumeReconciler) desired(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	hosts := &corev1.PersistentVolumeClaimList{}
	if err := r.Host.List(ctx, hosts, client.InNamespace(r.Config.HostNamespace), client.MatchingFields{indexHostClaimVolume: name}); err != nil {
		return nil, fmt.Errorf("listing host claims of volume %s: %w", name, err)
	}
	for i := range hosts.Items {
		host := &hosts.Items[i]
		if host.Labels[translate.LabelVCluster] != r.Config.VCluster || host.DeletionTimestamp != nil ||
			host.Status.Phase != corev1.ClaimBound || len(host.Status.Capacity) == 0 {
			continue // not (or no longer) bound: no virtual volume.
		}
		virtual, err := getClaim(ctx, r.Virtual, virtualKeyOf(host))
		if err != nil {
			return nil, err
		}
		if !translate.ClaimsClaim(virtual, host) {
			continue
		}
		reclaim := corev1.PersistentVolumeReclaimDelete
		if virtual.Spec.StorageClassName != nil {
			class, err := kube.GetOrNil[storagev1.StorageClass](ctx, r.Host, client.ObjectKey{Name: *virtual.Spec.StorageClassName})
			if err != nil {
				return nil, fmt.Errorf("reading host StorageClass %s: %w", *virtual.Spec.StorageClassName, err)
			}
			if class != nil && class.ReclaimPolicy != nil {
				reclaim = *class.ReclaimPolicy
			}
		}
		return translate.VirtualVolume(virtual, host, reclaim), nil
	}
	return nil, nil
}

// setBound sets a virtual volume's phase Bound, as the binder would.
func (r *volumeReconciler) setBound(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Status.Phase == corev1.VolumeBound {
		return nil
	}
	pv.Status.Phase = corev1.VolumeBound
	return r.Virtual.Status().Update(ctx, pv, client.FieldOwner(FieldManager))
}

// indexHostClaimsByVolume registers indexHostClaimVolume on the host cache.
func indexHostClaimsByVolume(ctx context.Context, host cache.Informers) error {
	return indexField(ctx, host, &corev1.PersistentVolumeClaim{}, indexHostClaimVolume, inNamespace, func(obj client.Object) []string {
		if c, ok := obj.(*corev1.PersistentVolumeClaim); ok && c.Spec.VolumeName != "" {
			return []string{c.Spec.VolumeName}
		}
		return nil
	})
}
