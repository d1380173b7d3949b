package reflector

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/translate"
)

// NodeReconciler keeps each virtual node a fresh mirror of its host node and
// removes it when the host node is gone. Virtual nodes are created by the
// pod reconciler when it binds the first pod to them.
type NodeReconciler struct {
	Host    client.Reader
	Virtual client.Client
}

// SetupWithManager watches host nodes and podbridge's virtual nodes, keyed by name.
func (r *NodeReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster) error {
	ours := predicate.NewTypedPredicateFuncs(func(n *corev1.Node) bool {
		return n.Labels[translate.LabelManagedBy] == translate.ManagedByValue
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodes").
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Node{}, &handler.TypedEnqueueRequestForObject[*corev1.Node]{})).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Node{}, &handler.TypedEnqueueRequestForObject[*corev1.Node]{}, ours)).
		Complete(r)
}

// Reconcile mirrors one host node onto its virtual node, if there is one.
func (r *NodeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	virtual := &corev1.Node{}
	if err := r.Virtual.Get(ctx, req.NamespacedName, virtual); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if virtual.Labels[translate.LabelManagedBy] != translate.ManagedByValue {
		return reconcile.Result{}, nil
	}
	host := &corev1.Node{}
	if err := r.Host.Get(ctx, req.NamespacedName, host); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("reading host node: %w", err)
		}
		if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, fmt.Errorf("deleting virtual node: %w", err)
		}
		logf.FromContext(ctx).Info("Deleted virtual node: host node is gone")
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, syncVirtualNode(ctx, r.Virtual, virtual, translate.VirtualNode(host))
}

// ensureVirtualNode creates the virtual mirror of host node name if missing.
func ensureVirtualNode(ctx context.Context, hostReader client.Reader, virtual client.Client, name string) error {
	existing := &corev1.Node{}
	err := virtual.Get(ctx, types.NamespacedName{Name: name}, existing)
	if err == nil || !apierrors.IsNotFound(err) {
		return client.IgnoreNotFound(err)
	}
	host := &corev1.Node{}
	if err := hostReader.Get(ctx, types.NamespacedName{Name: name}, host); err != nil {
		return fmt.Errorf("reading host node %s: %w", name, err)
	}
	// The node reconciler sees the new node and keeps its status fresh.
	if err := virtual.Create(ctx, translate.VirtualNode(host), client.FieldOwner(FieldManager)); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating virtual node %s: %w", name, err)
	}
	return nil
}

// syncVirtualNode updates labels and status of current to desired when they differ.
func syncVirtualNode(ctx context.Context, virtual client.Client, current, desired *corev1.Node) error {
	if !maps.Equal(current.Labels, desired.Labels) {
		updated := current.DeepCopy()
		updated.Labels = desired.Labels
		if err := virtual.Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("updating virtual node labels: %w", err)
		}
		current = updated
	}
	if apiequality.Semantic.DeepEqual(current.Status, desired.Status) {
		return nil
	}
	updated := current.DeepCopy()
	updated.Status = desired.Status
	if err := virtual.Status().Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("updating virtual node status: %w", err)
	}
	return nil
}
