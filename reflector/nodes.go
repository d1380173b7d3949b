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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
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

// indexNodeName indexes this virtual cluster's host pods by the node they
// run on. It is named like the apiserver's pod field selector, so the same
// List option reads the cache and, live, the apiserver.
const indexNodeName = "spec.nodeName"

// nodeGuard orders bindings against node removal. The pod reconciler holds
// it shared from making sure a virtual node exists until the binding is
// stored; the node reconciler holds it exclusively while it confirms, with
// a live read, that no host pod of the virtual cluster is on a node and
// removes it. A pod is thus never bound to a node that is being removed.
type nodeGuard struct {
	mu sync.RWMutex
	// removed holds the nodes this process removed and has not re-created
	// since: the cache may still show them, so binds confirm them live.
	removed sync.Map
}

// nodeReconciler keeps the virtual nodes, each a fresh mirror of its host
// node (translate.VirtualNode): every host node the platform lets tenants
// onto (translate.TenantNode), from the start, so a tenant sees nodes to
// schedule against before its first pod; and any other host node while
// this virtual cluster has host pods on it (a policy changed under running
// pods). What decides is the host: a virtual binding, or a Node the tenant
// makes under podbridge's name, never makes the reflector show a host node.
type nodeReconciler struct {
	// Host reads host nodes and this virtual cluster's host pods, cached.
	Host client.Reader
	// HostReader reads the host apiserver directly, to confirm that no
	// host pod is on a node before its virtual node is removed.
	HostReader client.Reader
	Virtual    client.Client
	Nodes      *nodeGuard
	Config     translate.Config
	// EmptyGracePeriod is how long a virtual node that is no tenant node
	// must carry no host pod before it is removed, so it is not removed and
	// re-created each time its last pod is replaced.
	EmptyGracePeriod time.Duration
	Clock            clock.PassiveClock
	// Kubelet is the endpoint virtual nodes advertise: podbridge's kubelet
	// API, never the host node's.
	Kubelet translate.KubeletEndpoint

	mu         sync.Mutex
	emptySince map[string]time.Time // nodes seen without host pods, since when
}

// indexHostPodsByNode registers the index of host pods by node that the
// node reconciler lists with; it must run before the host cache starts.
func indexHostPodsByNode(ctx context.Context, host cache.Informers) error {
	err := indexField(ctx, host, &corev1.Pod{}, indexNodeName, inNamespace, func(obj client.Object) []string {
		if name := obj.(*corev1.Pod).Spec.NodeName; name != "" {
			return []string{name}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing host pods by node: %w", err)
	}
	return nil
}

// SetupWithManager watches host nodes, podbridge's virtual nodes and this
// virtual cluster's host pods, keyed by node name, plus a full pass at
// start-up and every resync period.
func (r *nodeReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, resync time.Duration) error {
	ours := predicate.NewTypedPredicateFuncs(podbridgesNode)
	// A host pod matters to its node when it appears placed, is placed or
	// goes; status updates do not.
	placedChanged := predicate.TypedFuncs[*corev1.Pod]{
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
			return e.ObjectOld.Spec.NodeName != e.ObjectNew.Spec.NodeName
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodes").
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Node{}, &handler.TypedEnqueueRequestForObject[*corev1.Node]{})).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Node{}, &handler.TypedEnqueueRequestForObject[*corev1.Node]{}, ours)).
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(nodeOfPod), placedChanged)).
		WatchesRawSource(fullPass("nodes", resync, synced(watched{mgr.GetCache(), &corev1.Node{}}, watched{virtual.GetCache(), &corev1.Node{}}, watched{mgr.GetCache(), &corev1.Pod{}}), r.allNodes)).
		Complete(r)
}

// podbridgesNode reports whether a virtual node carries podbridge's mark.
func podbridgesNode(n *corev1.Node) bool {
	return n.Labels[translate.LabelManagedBy] == translate.ManagedByValue
}

func nodeOfPod(_ context.Context, pod *corev1.Pod) []reconcile.Request {
	if pod.Spec.NodeName == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: pod.Spec.NodeName}}}
}

// allNodes lists the host nodes and podbridge's virtual nodes for the
// full pass.
func (r *nodeReconciler) allNodes(ctx context.Context) ([]reconcile.Request, error) {
	hosts := &corev1.NodeList{}
	if err := r.Host.List(ctx, hosts, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing host nodes: %w", err)
	}
	virtuals := &corev1.NodeList{}
	if err := r.Virtual.List(ctx, virtuals, client.MatchingLabels{translate.LabelManagedBy: translate.ManagedByValue}); err != nil {
		return nil, fmt.Errorf("listing virtual nodes: %w", err)
	}
	names := sets.New[string]()
	for i := range hosts.Items {
		names.Insert(hosts.Items[i].Name)
	}
	for i := range virtuals.Items {
		names.Insert(virtuals.Items[i].Name)
	}
	out := make([]reconcile.Request, 0, names.Len())
	for _, name := range sets.List(names) {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
	return out, nil
}

// nodeFacts is what the node reconciler gathers for one node name.
type nodeFacts struct {
	// virtual is podbridge's virtual node of that name, host the host
	// node; nil when missing.
	virtual, host *corev1.Node
	// tenantNode: the platform lets this virtual cluster's pods onto host.
	tenantNode bool
	// hostPods: this virtual cluster has host pods on host.
	hostPods bool
	// emptyFor is how long the virtual node has been seen neither a tenant
	// node nor carrying host pods.
	emptyFor time.Duration
}

type nodeAction int

const (
	nodeLeave nodeAction = iota
	nodeCreate
	nodeSync
	// nodeDelete removes a virtual node whose host node is gone.
	nodeDelete
	// nodeDeleteUnused removes a virtual node that is no tenant node once a
	// live read confirms no host pod is on it.
	nodeDeleteUnused
)

type nodeDecision struct {
	action nodeAction
	// after, when set, brings the node back then.
	after time.Duration
}

// decideNode is the node reconciler's whole decision for one node name, a
// pure function of what was gathered.
func decideNode(f nodeFacts, emptyGrace time.Duration) nodeDecision {
	switch {
	case f.host == nil && f.virtual == nil:
		return nodeDecision{}
	case f.host == nil:
		return nodeDecision{action: nodeDelete}
	case f.tenantNode || f.hostPods:
		if f.virtual == nil {
			return nodeDecision{action: nodeCreate}
		}
		return nodeDecision{action: nodeSync}
	case f.virtual == nil:
		return nodeDecision{}
	case f.emptyFor < emptyGrace:
		// Not refreshed meanwhile: a Node the tenant made under
		// podbridge's name must not be filled in with the host's.
		return nodeDecision{after: emptyGrace - f.emptyFor}
	default:
		return nodeDecision{action: nodeDeleteUnused}
	}
}

// Reconcile gathers one node's facts, decides and writes.
func (r *nodeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	f, err := r.gather(ctx, req.Name)
	if err != nil || (f.virtual == nil && f.host == nil) {
		return reconcile.Result{}, err
	}
	d := decideNode(f, r.EmptyGracePeriod)
	switch d.action {
	case nodeCreate:
		if err := createVirtualNode(ctx, r.Virtual, f.host, r.Kubelet, r.Config.Tolerations); err != nil {
			return reconcile.Result{}, err
		}
		r.Nodes.removed.Delete(req.Name)
	case nodeSync:
		err = syncVirtualNode(ctx, r.Virtual, f.virtual, translate.VirtualNode(f.host, r.Kubelet, r.Config.Tolerations))
	case nodeDelete:
		err = r.delete(ctx, f.virtual, "host node is gone")
	case nodeDeleteUnused:
		err = r.deleteIfUnused(ctx, f.virtual)
	}
	return reconcile.Result{RequeueAfter: d.after}, err
}

// gather reads one node's facts from the caches. A virtual node without
// podbridge's mark is the tenant's own: nothing is gathered for it.
func (r *nodeReconciler) gather(ctx context.Context, name string) (nodeFacts, error) {
	var f nodeFacts
	key := types.NamespacedName{Name: name}
	virtual := &corev1.Node{}
	switch err := r.Virtual.Get(ctx, key, virtual); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return f, fmt.Errorf("reading virtual node: %w", err)
	case !podbridgesNode(virtual):
		return f, nil
	default:
		f.virtual = virtual
	}
	host := &corev1.Node{}
	switch err := r.Host.Get(ctx, key, host); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return f, fmt.Errorf("reading host node: %w", err)
	default:
		f.host = host
		f.tenantNode = translate.TenantNode(host, r.Config)
		if f.hostPods, err = hostPodsOn(ctx, r.Host, r.Config, name, true); err != nil {
			return f, err
		}
	}
	if f.virtual == nil || f.host == nil || f.tenantNode || f.hostPods {
		r.markUsed(name)
	} else {
		f.emptyFor = r.Clock.Since(r.markEmpty(name))
	}
	return f, nil
}

// hostPodsOn reports whether this virtual cluster has a host pod on node,
// read from the cache (cached true) or, by metadata, live.
func hostPodsOn(ctx context.Context, reader client.Reader, cfg translate.Config, node string, cached bool) (bool, error) {
	var pods client.ObjectList = &corev1.PodList{}
	opts := []client.ListOption{client.InNamespace(cfg.HostNamespace), client.MatchingFields{indexNodeName: node}, client.Limit(1),
		client.MatchingLabels{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: cfg.VCluster}}
	if cached {
		opts = append(opts, client.UnsafeDisableDeepCopy)
	} else {
		live := &metav1.PartialObjectMetadataList{}
		live.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		pods = live
	}
	if err := reader.List(ctx, pods, opts...); err != nil {
		return false, fmt.Errorf("listing host pods on node %s: %w", node, err)
	}
	return meta.LenList(pods) > 0, nil
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

// deleteIfUnused removes a virtual node once the host apiserver confirms
// that no host pod of the virtual cluster is on it: the cache may not show
// a pod placed a moment ago, whose binding would follow.
func (r *nodeReconciler) deleteIfUnused(ctx context.Context, virtual *corev1.Node) error {
	r.Nodes.mu.Lock()
	defer r.Nodes.mu.Unlock()
	used, err := hostPodsOn(ctx, r.HostReader, r.Config, virtual.Name, false)
	if err != nil || used {
		return err // a used node: the pod's event brings the cache, and us, up to date.
	}
	return r.delete(ctx, virtual, "no tenant node, and no host pod of the virtual cluster on it")
}

// delete removes virtual, the node it was read as.
func (r *nodeReconciler) delete(ctx context.Context, virtual *corev1.Node, why string) error {
	if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting virtual node: %w", err)
	}
	r.Nodes.removed.Store(virtual.Name, true)
	r.markUsed(virtual.Name)
	countAction(actionNodeDelete)
	logf.FromContext(ctx).Info("Deleted virtual node", "reason", why)
	return nil
}

// ensureVirtualNode creates the virtual mirror of host node name if missing.
// A node in the cache exists, unless this process removed it a moment ago
// (the cache may not show that yet, and a pod bound to a missing node would
// be garbage collected): then, or when the cache lacks it, the apiserver is
// asked.
func ensureVirtualNode(ctx context.Context, guard *nodeGuard, hostReader, virtualReader client.Reader, virtual client.Client, name string, kubelet translate.KubeletEndpoint, enforced []corev1.Toleration) error {
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
	if err := createVirtualNode(ctx, virtual, host, kubelet, enforced); err != nil {
		return err
	}
	guard.removed.Delete(name)
	return nil
}

// createVirtualNode creates the virtual mirror of host; the node reconciler
// sees it and keeps its status fresh.
func createVirtualNode(ctx context.Context, virtual client.Client, host *corev1.Node, kubelet translate.KubeletEndpoint, enforced []corev1.Toleration) error {
	if err := virtual.Create(ctx, translate.VirtualNode(host, kubelet, enforced), client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("creating virtual node %s: %w", host.Name, err)
	}
	countAction(actionNodeCreate)
	return nil
}

// syncVirtualNode updates labels, spec and status of current to desired
// when they differ. The spec write also drops the not-ready taint the
// virtual apiserver's TaintNodesByCondition admission gives every new
// node: no node lifecycle controller runs there to lift it.
func syncVirtualNode(ctx context.Context, virtual client.Client, current, desired *corev1.Node) error {
	if !maps.Equal(current.Labels, desired.Labels) || !apiequality.Semantic.DeepEqual(current.Spec, desired.Spec) {
		updated := current.DeepCopy()
		updated.Labels = desired.Labels
		updated.Spec = desired.Spec
		if err := virtual.Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("updating virtual node: %w", err)
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
