package reflector

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/translate"
)

// PodReconciler reconciles one pod pair, keyed by the virtual pod's
// namespace and name.
type PodReconciler struct {
	// Host reads host pods and nodes from the cache and writes host pods.
	Host client.Client
	// HostReader reads the host apiserver directly, to confirm that a host
	// pod is really gone before acting on its absence.
	HostReader client.Reader
	// Virtual reads virtual pods from the cache and writes them.
	Virtual client.Client
	// VirtualReader reads the virtual apiserver directly.
	VirtualReader client.Reader
	Recorder      record.EventRecorder
	Config        translate.Config
	// OrphanGracePeriod: see Options.
	OrphanGracePeriod time.Duration
	Clock             clock.PassiveClock
}

// SetupWithManager watches host pods in mgr and virtual pods in virtual.
func (r *PodReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("pods").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Pod{}, &handler.TypedEnqueueRequestForObject[*corev1.Pod]{})).
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(virtualKeyOfHostPod))).
		Complete(r)
}

// virtualKeyOfHostPod maps a host pod to the virtual pod it runs.
func virtualKeyOfHostPod(_ context.Context, host *corev1.Pod) []reconcile.Request {
	name, namespace := host.Annotations[translate.AnnotationName], host.Annotations[translate.AnnotationNamespace]
	if name == "" || namespace == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: namespace, Name: name}}}
}

// Reconcile brings one pod pair in line.
func (r *PodReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	virtual, err := getPod(ctx, r.Virtual, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	hostKey := types.NamespacedName{Namespace: r.Config.HostNamespace, Name: translate.HostName(req.Name, req.Namespace, r.Config.VCluster)}
	host, err := getPod(ctx, r.Host, hostKey)
	if err != nil {
		return reconcile.Result{}, err
	}
	if host != nil && host.Annotations[translate.AnnotationVCluster] != r.Config.VCluster {
		host = nil // another virtual cluster's pod that hashes alike: never ours to touch.
	}

	switch {
	case virtual == nil && host == nil:
		return reconcile.Result{}, nil
	case virtual == nil:
		return r.reconcileOrphan(ctx, req.NamespacedName, host)
	case virtual.Annotations[translate.AnnotationSyncID] == "":
		return reconcile.Result{}, nil // not admitted by podbridge: not ours.
	case host != nil && host.Annotations[translate.AnnotationSyncID] != virtual.Annotations[translate.AnnotationSyncID]:
		host = nil // the host pod of an earlier pod of the same name.
	}

	if virtual.DeletionTimestamp != nil {
		return r.reconcileVirtualDeletion(ctx, virtual, host)
	}
	if host == nil {
		return r.reconcileHostGone(ctx, virtual, hostKey)
	}
	if err := r.bind(ctx, virtual, host); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, r.syncStatus(ctx, virtual, host)
}

// reconcileOrphan deletes a host pod whose virtual pod does not exist, once
// it is older than the grace period and a live read confirms the absence.
func (r *PodReconciler) reconcileOrphan(ctx context.Context, key types.NamespacedName, host *corev1.Pod) (reconcile.Result, error) {
	if host.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	if age := r.Clock.Since(host.CreationTimestamp.Time); age < r.OrphanGracePeriod {
		return reconcile.Result{RequeueAfter: r.OrphanGracePeriod - age}, nil
	}
	live, err := getPod(ctx, r.VirtualReader, key)
	if err != nil {
		return reconcile.Result{}, err
	}
	if live != nil && live.Annotations[translate.AnnotationSyncID] == host.Annotations[translate.AnnotationSyncID] {
		return reconcile.Result{}, nil // the cache lags; the virtual pod's event is on its way.
	}
	if err := r.Host.Delete(ctx, host, client.Preconditions{UID: &host.UID}); client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, fmt.Errorf("deleting orphan host pod %s: %w", host.Name, err)
	}
	logf.FromContext(ctx).Info("Deleted orphan host pod", "hostPod", host.Name, "age", r.Clock.Since(host.CreationTimestamp.Time).Round(time.Second))
	return reconcile.Result{}, nil
}

// reconcileVirtualDeletion carries a virtual pod's deletion to its host pod
// with the same grace period, then removes the virtual pod once the host
// pod is gone.
func (r *PodReconciler) reconcileVirtualDeletion(ctx context.Context, virtual, host *corev1.Pod) (reconcile.Result, error) {
	if host != nil {
		if host.DeletionTimestamp == nil {
			opts := []client.DeleteOption{client.Preconditions{UID: &host.UID}}
			if virtual.DeletionGracePeriodSeconds != nil {
				opts = append(opts, client.GracePeriodSeconds(*virtual.DeletionGracePeriodSeconds))
			}
			if err := r.Host.Delete(ctx, host, opts...); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, fmt.Errorf("deleting host pod %s: %w", host.Name, err)
			}
			logf.FromContext(ctx).V(1).Info("Deleted host pod of deleted virtual pod", "hostPod", host.Name)
		}
		return reconcile.Result{}, nil // the host pod's removal brings us back.
	}
	return reconcile.Result{}, r.removeVirtual(ctx, virtual)
}

// reconcileHostGone handles a virtual pod whose host pod is not in the cache:
// if the host apiserver confirms it is gone (deleted or evicted on the
// host), the virtual pod gets a final status and is removed, so its
// controller replaces it; a bare pod is not re-created behind the tenant.
func (r *PodReconciler) reconcileHostGone(ctx context.Context, virtual *corev1.Pod, hostKey types.NamespacedName) (reconcile.Result, error) {
	live, err := getPod(ctx, r.HostReader, hostKey)
	if err != nil {
		return reconcile.Result{}, err
	}
	if live != nil && live.Annotations[translate.AnnotationSyncID] == virtual.Annotations[translate.AnnotationSyncID] {
		return reconcile.Result{}, nil // the cache lags; the host pod's event is on its way.
	}
	if virtual.Status.Phase != corev1.PodFailed && virtual.Status.Phase != corev1.PodSucceeded {
		updated := virtual.DeepCopy()
		updated.Status.Phase = corev1.PodFailed
		updated.Status.Reason = "HostPodDeleted"
		updated.Status.Message = "The pod's host pod was deleted in the host cluster."
		if err := r.Virtual.Status().Update(ctx, updated, client.FieldOwner(FieldManager)); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, fmt.Errorf("recording host deletion on virtual pod: %w", err)
		}
		r.Recorder.Event(virtual, corev1.EventTypeWarning, "HostPodDeleted", "The host pod was deleted in the host cluster")
	}
	return reconcile.Result{}, r.removeVirtual(ctx, virtual)
}

func (r *PodReconciler) removeVirtual(ctx context.Context, virtual *corev1.Pod) error {
	err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}, client.GracePeriodSeconds(0))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing virtual pod: %w", err)
	}
	logf.FromContext(ctx).V(1).Info("Removed virtual pod whose host pod is gone")
	return nil
}

// bind binds the virtual pod to the virtual node mirroring its host node
// once the host scheduler has placed the host pod.
func (r *PodReconciler) bind(ctx context.Context, virtual, host *corev1.Pod) error {
	if host.Spec.NodeName == "" || virtual.Spec.NodeName != "" {
		return nil
	}
	if err := ensureVirtualNode(ctx, r.Host, r.Virtual, host.Spec.NodeName); err != nil {
		return err
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: virtual.Name, Namespace: virtual.Namespace, UID: virtual.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: host.Spec.NodeName},
	}
	if err := r.Virtual.SubResource("binding").Create(ctx, virtual, binding); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // bound meanwhile, or gone: its event brings us back.
		}
		return fmt.Errorf("binding virtual pod to node %s: %w", host.Spec.NodeName, err)
	}
	virtual.Spec.NodeName = host.Spec.NodeName
	r.Recorder.Eventf(virtual, corev1.EventTypeNormal, "Scheduled", "Host scheduler placed the pod on node %s", host.Spec.NodeName)
	return nil
}

// syncStatus writes the host status onto the virtual pod when it differs.
func (r *PodReconciler) syncStatus(ctx context.Context, virtual, host *corev1.Pod) error {
	status := translate.VirtualStatus(virtual, host)
	if apiequality.Semantic.DeepEqual(status, virtual.Status) {
		return nil
	}
	updated := virtual.DeepCopy()
	updated.Status = status
	if err := r.Virtual.Status().Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // a newer virtual pod's event brings us back.
		}
		return fmt.Errorf("updating virtual pod status: %w", err)
	}
	return nil
}

// getPod returns the pod at key, or nil when there is none.
func getPod(ctx context.Context, c client.Reader, key types.NamespacedName) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := c.Get(ctx, key, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading pod %s: %w", key, err)
	}
	return pod, nil
}
