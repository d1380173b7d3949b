package reflector

import (
	"context"
	"fmt"
	"slices"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// classStep is the one write the StorageClass reconciler decides.
type classStep int

const (
	classNone classStep = iota
	// classCreate creates the virtual mirror of an allowed host class.
	classCreate
	// classUpdate writes the mirror's mark, default and expansion back.
	classUpdate
	// classDelete deletes a mirror whose class is gone or no longer
	// allowed, or a virtual class of an allowed name that differs in a
	// field an update cannot set (it is made again next).
	classDelete
)

func (s classStep) String() string {
	return [...]string{"None", "Create", "Update", "Delete"}[s]
}

// decideStorageClass is the StorageClass reconciler's decision for one
// class name, a pure function of what was gathered: whether the platform
// allows the name, the host class (nil: none, or not read because not
// allowed) and the virtual class (nil: none). It returns the step and the
// class to write. Only mirrors (translate.IsStorageClassMirror) are
// deleted for want of a host class: a class of another name the tenant
// made is the tenant's (the gate refuses claims that name it).
func decideStorageClass(allowed bool, host, virtual *storagev1.StorageClass) (classStep, *storagev1.StorageClass) {
	if !allowed || host == nil {
		if virtual != nil && translate.IsStorageClassMirror(virtual) {
			return classDelete, nil
		}
		return classNone, nil
	}
	desired := translate.VirtualStorageClass(host)
	if virtual == nil {
		return classCreate, desired
	}
	switch differs, immutable := translate.StorageClassMirrorDiffers(desired, virtual); {
	case immutable:
		return classDelete, nil
	case differs:
		updated := virtual.DeepCopy()
		updated.Labels, updated.Annotations, updated.AllowVolumeExpansion = desired.Labels, desired.Annotations, desired.AllowVolumeExpansion
		return classUpdate, updated
	}
	return classNone, nil
}

// storageClassReconciler keeps a read-only mirror of each allowed host
// StorageClass (translate.Config.StorageClasses) in the virtual cluster,
// so `kubectl get storageclass` tells a tenant the truth: the classes it
// may name, the host's default marked. The tenant (cluster-admin) may edit
// or delete a mirror; the next reconcile puts it back.
type storageClassReconciler struct {
	// Host reads host classes (a cache of them all: they are few).
	Host    client.Reader
	Virtual client.Client
	Config  translate.Config
}

// SetupWithManager registers the controller: events of host and virtual
// classes enqueue their name, and a full pass enqueues every allowed name
// and every mirror.
func (r *storageClassReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, resync time.Duration) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("storageclasses").
		WatchesRawSource(source.Kind(virtual.GetCache(), &storagev1.StorageClass{}, &handler.TypedEnqueueRequestForObject[*storagev1.StorageClass]{})).
		WatchesRawSource(source.Kind(mgr.GetCache(), &storagev1.StorageClass{}, &handler.TypedEnqueueRequestForObject[*storagev1.StorageClass]{})).
		WatchesRawSource(fullPass("storageclasses", resync, synced(watched{mgr.GetCache(), &storagev1.StorageClass{}}, watched{virtual.GetCache(), &storagev1.StorageClass{}}), r.allKeys)).
		Complete(r)
}

func (r *storageClassReconciler) allKeys(ctx context.Context) ([]reconcile.Request, error) {
	var keys []reconcile.Request
	for _, name := range r.Config.StorageClasses {
		keys = append(keys, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
	mirrors := &storagev1.StorageClassList{}
	if err := r.Virtual.List(ctx, mirrors, client.MatchingLabels{translate.LabelManagedBy: translate.ManagedByValue}); err != nil {
		return nil, fmt.Errorf("listing virtual StorageClasses: %w", err)
	}
	for i := range mirrors.Items {
		keys = append(keys, reconcile.Request{NamespacedName: types.NamespacedName{Name: mirrors.Items[i].Name}})
	}
	return keys, nil
}

// Reconcile gathers one class name's host and virtual classes, decides and
// writes.
func (r *storageClassReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	allowed := slices.Contains(r.Config.StorageClasses, req.Name)
	var host *storagev1.StorageClass
	if allowed {
		var err error
		if host, err = kube.GetOrNil[storagev1.StorageClass](ctx, r.Host, client.ObjectKey{Name: req.Name}); err != nil {
			return reconcile.Result{}, fmt.Errorf("reading host StorageClass %s: %w", req.Name, err)
		}
	}
	virtual, err := kube.GetOrNil[storagev1.StorageClass](ctx, r.Virtual, client.ObjectKey{Name: req.Name})
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("reading virtual StorageClass %s: %w", req.Name, err)
	}
	step, obj := decideStorageClass(allowed, host, virtual)
	log := logf.FromContext(ctx).WithValues("storageClass", req.Name)
	switch step {
	case classCreate:
		err = client.IgnoreAlreadyExists(r.Virtual.Create(ctx, obj, client.FieldOwner(FieldManager)))
	case classUpdate:
		err = r.Virtual.Update(ctx, obj, client.FieldOwner(FieldManager))
	case classDelete:
		err = client.IgnoreNotFound(r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}))
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("%s virtual StorageClass %s: %w", step, req.Name, err)
	}
	if step != classNone {
		log.Info("Mirrored a host StorageClass in the virtual cluster", "step", step.String())
	}
	return reconcile.Result{}, nil
}
