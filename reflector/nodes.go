package reflector

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/translate"
)

// indexNodeName indexes virtual pods by the node they are bound to. It is
// named like the apiserver's pod field selector, so the same List option
// reads the cache and, live, the apiserver.
const indexNodeName = "spec.nodeName"

// nodeGuard orders bindings against node removal. The pod reconciler holds
// it shared from making sure a virtual node exists until the binding is
// stored; the node reconciler holds it exclusively while it confirms, with
// a live read, that a node carries no pod and removes it. A pod is thus
// never bound to a node that is being removed.
type nodeGuard struct {
	mu sync.RWMutex
	// removed holds the nodes this process removed and has not re-created
	// since: the cache may still show them, so binds confirm them live.
	removed sync.Map
}

// nodeReconciler keeps the virtual nodes: each a fresh mirror of its host
// node while virtual pods are bound to it, removed once none is or when the
// host node is gone. The pod reconciler creates a node just before binding
// the first pod to it; this reconciler re-creates one that went missing
// under bound pods, before the virtual pod garbage collector deletes them.
type nodeReconciler struct {
	Host    client.Reader
	Virtual client.Client
	// VirtualReader reads the virtual apiserver directly, to confirm that
	// no pod is bound to a node before removing it.
	VirtualReader client.Reader
	Nodes         *nodeGuard
	// EmptyGracePeriod is how long a virtual node must carry no pod before
	// it is removed, so a node is not removed and re-created each time its
	// last pod is replaced.
	EmptyGracePeriod time.Duration
	Clock            clock.PassiveClock
	// Kubelet is the endpoint virtual nodes advertise: podbridge's kubelet
	// API, never the host node's.
	Kubelet translate.KubeletEndpoint

	mu         sync.Mutex
	emptySince map[string]time.Time // nodes seen without pods, since when
}

// indexVirtualPods registers the index of virtual pods by node name that
// the node reconciler lists with; it must run before virtual's cache starts.
func indexVirtualPods(ctx context.Context, virtual cluster.Cluster) error {
	err := virtual.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, indexNodeName, func(obj client.Object) []string {
		if name := obj.(*corev1.Pod).Spec.NodeName; name != "" {
			return []string{name}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing virtual pods by node: %w", err)
	}
	return nil
}

// SetupWithManager watches host nodes, podbridge's virtual nodes and the
// virtual pods bound to them, keyed by node name, plus a full pass at
// start-up and every resync period.
func (r *nodeReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, resync time.Duration) error {
	ours := predicate.NewTypedPredicateFuncs(func(n *corev1.Node) bool {
		return n.Labels[translate.LabelManagedBy] == translate.ManagedByValue
	})
	// A pod matters to its node when it appears bound, is bound or goes;
	// status updates do not.
	boundChanged := predicate.TypedFuncs[*corev1.Pod]{
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
			return e.ObjectOld.Spec.NodeName != e.ObjectNew.Spec.NodeName
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodes").
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Node{}, &handler.TypedEnqueueRequestForObject[*corev1.Node]{})).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Node{}, &handler.TypedEnqueueRequestForObject[*corev1.Node]{}, ours)).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(nodeOfVirtualPod), boundChanged)).
		WatchesRawSource(fullPass("nodes", resync, synced(watched{mgr.GetCache(), &corev1.Node{}}, watched{virtual.GetCache(), &corev1.Node{}}, watched{virtual.GetCache(), &corev1.Pod{}}), r.allNodes)).
		Complete(r)
}

func nodeOfVirtualPod(_ context.Context, pod *corev1.Pod) []reconcile.Request {
	if pod.Spec.NodeName == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: pod.Spec.NodeName}}}
}

// allNodes lists podbridge's virtual nodes for the full pass.
func (r *nodeReconciler) allNodes(ctx context.Context) ([]reconcile.Request, error) {
	nodes := &corev1.NodeList{}
	if err := r.Virtual.List(ctx, nodes, client.MatchingLabels{translate.LabelManagedBy: translate.ManagedByValue}); err != nil {
		return nil, fmt.Errorf("listing virtual nodes: %w", err)
	}
	out := make([]reconcile.Request, 0, len(nodes.Items))
	for i := range nodes.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: nodes.Items[i].Name}})
	}
	return out, nil
}

// Reconcile brings one virtual node in line with its host node and the
// virtual pods bound to it.
func (r *nodeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := logf.FromContext(ctx)
	virtual := &corev1.Node{}
	if err := r.Virtual.Get(ctx, req.NamespacedName, virtual); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("reading virtual node: %w", err)
		}
		virtual = nil
	}
	if virtual != nil && virtual.Labels[translate.LabelManagedBy] != translate.ManagedByValue {
		return reconcile.Result{}, nil // the tenant's own node.
	}
	host := &corev1.Node{}
	if err := r.Host.Get(ctx, req.NamespacedName, host); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("reading host node: %w", err)
		}
		if virtual == nil {
			return reconcile.Result{}, nil
		}
		if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, fmt.Errorf("deleting virtual node: %w", err)
		}
		countAction(actionNodeDelete)
		r.Nodes.removed.Store(req.Name, true)
		r.markUsed(req.Name)
		log.Info("Deleted virtual node: host node is gone")
		return reconcile.Result{}, nil
	}

	// Whether any pod is bound is all that matters: one, not copied.
	bound := &corev1.PodList{}
	if err := r.Virtual.List(ctx, bound, client.MatchingFields{indexNodeName: req.Name}, client.Limit(1), client.UnsafeDisableDeepCopy); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing virtual pods on node: %w", err)
	}
	switch {
	case virtual == nil && len(bound.Items) == 0:
		r.markUsed(req.Name)
		return reconcile.Result{}, nil
	case virtual == nil:
		if err := createVirtualNode(ctx, r.Virtual, host, r.Kubelet); err != nil {
			return reconcile.Result{}, err
		}
		r.Nodes.removed.Delete(req.Name)
		log.Info("Re-created virtual node that pods are bound to", "pod", client.ObjectKeyFromObject(&bound.Items[0]))
		return reconcile.Result{}, nil
	case len(bound.Items) == 0:
		if wait := r.EmptyGracePeriod - r.Clock.Since(r.markEmpty(req.Name)); wait > 0 {
			// Kept fresh meanwhile: a pod may be bound to it again.
			return reconcile.Result{RequeueAfter: wait}, syncVirtualNode(ctx, r.Virtual, virtual, translate.VirtualNode(host, r.Kubelet))
		}
		return reconcile.Result{}, r.deleteIfUnused(ctx, virtual)
	}
	r.markUsed(req.Name)
	return reconcile.Result{}, syncVirtualNode(ctx, r.Virtual, virtual, translate.VirtualNode(host, r.Kubelet))
}

// markEmpty returns since when node has been seen without pods.
func (r *nodeReconciler) markEmpty(node string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if since, ok := r.emptySince[node]; ok {
		return since
	}
	if r.emptySince == nil {
		r.emptySince = map[string]time.Time{}
	}
	r.emptySince[node] = r.Clock.Now()
	return r.emptySince[node]
}

// markUsed forgets that node was seen without pods.
func (r *nodeReconciler) markUsed(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.emptySince, node)
}

// deleteIfUnused removes a virtual node once the apiserver confirms that no
// pod is bound to it; the cache may not show a binding stored a moment ago.
func (r *nodeReconciler) deleteIfUnused(ctx context.Context, virtual *corev1.Node) error {
	r.Nodes.mu.Lock()
	defer r.Nodes.mu.Unlock()
	bound := &corev1.PodList{}
	if err := r.VirtualReader.List(ctx, bound, client.MatchingFields{indexNodeName: virtual.Name}, client.Limit(1)); err != nil {
		return fmt.Errorf("listing virtual pods on node: %w", err)
	}
	if len(bound.Items) > 0 {
		r.markUsed(virtual.Name)
		return nil // the pod's event brings the cache, and us, up to date.
	}
	if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting unused virtual node: %w", err)
	}
	r.Nodes.removed.Store(virtual.Name, true)
	r.markUsed(virtual.Name)
	countAction(actionNodeDelete)
	logf.FromContext(ctx).Info("Deleted virtual node: no virtual pod is bound to it")
	return nil
}

// ensureVirtualNode creates the virtual mirror of host node name if missing.
// A node in the cache exists, unless this process removed it a moment ago
// (the cache may not show that yet, and a pod bound to a missing node would
// be garbage collected): then, or when the cache lacks it, the apiserver is
// asked.
func ensureVirtualNode(ctx context.Context, guard *nodeGuard, hostReader, virtualReader client.Reader, virtual client.Client, name string, kubelet translate.KubeletEndpoint) error {
	key := types.NamespacedName{Name: name}
	if _, removed := guard.removed.Load(name); !removed && virtual.Get(ctx, key, &corev1.Node{}) == nil {
		return nil
	}
	existing := &metav1.PartialObjectMetadata{}
	existing.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	err := virtualReader.Get(ctx, key, existing)
	if err == nil || !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("reading virtual node %s: %w", name, err)
		}
		guard.removed.Delete(name)
		return nil
	}
	host := &corev1.Node{}
	if err := hostReader.Get(ctx, key, host); err != nil {
		return fmt.Errorf("reading host node %s: %w", name, err)
	}
	if err := createVirtualNode(ctx, virtual, host, kubelet); err != nil {
		return err
	}
	guard.removed.Delete(name)
	return nil
}

// createVirtualNode creates the virtual mirror of host; the node reconciler
// sees it and keeps its status fresh.
func createVirtualNode(ctx context.Context, virtual client.Client, host *corev1.Node, kubelet translate.KubeletEndpoint) error {
	if err := virtual.Create(ctx, translate.VirtualNode(host, kubelet), client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("creating virtual node %s: %w", host.Name, err)
	}
	countAction(actionNodeCreate)
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
