package reflector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
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
	"github.com/podbridge/podbridge/webhook"
)

// podbridgeManagers are the field managers whose label, annotation and
// scheduling-gate keys on a host pod are the tenant's, so the reflector may
// remove them when the virtual pod drops them.
var podbridgeManagers = []string{webhook.FieldManager, FieldManager}

// Event actions (events.k8s.io/v1 "action") the reflector reports.
const (
	eventActionBinding  = "Binding"
	eventActionDeleting = "Deleting"
	eventActionReflect  = "Reflecting"
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
	Recorder      events.EventRecorder
	Config        translate.Config
	// OrphanGracePeriod: see Options.
	OrphanGracePeriod time.Duration
	Clock             clock.PassiveClock
	// Nodes is shared with the NodeReconciler, which must not remove a
	// node while a pod is being bound to it.
	Nodes *NodeGuard
	// Gone holds the virtual pods seen deleted, shared with the
	// TokenReconciler.
	Gone *gonePods

	written writtenOver
	// lastSeen holds deleted host pods' final state until their virtual
	// pods are handled: an eviction's DisruptionTarget condition often
	// lives only in the delete event.
	lastSeen lastSeen
}

// SetupWithManager watches host pods in mgr and virtual pods in virtual,
// plus a full pass at start-up and every resync period.
func (r *PodReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("pods").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Pod{}, recordDeletes{
			TypedEventHandler: &handler.TypedEnqueueRequestForObject[*corev1.Pod]{},
			record:            r.Gone.put,
		})).
		// A deleted host pod's last state is kept for reconcileHostGone.
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Pod{}, recordDeletes{
			TypedEventHandler: handler.TypedEnqueueRequestsFromMapFunc(virtualKeyOfHostPod),
			record:            r.lastSeen.put,
		})).
		// A bound token Secret may release its host pod.
		WatchesRawSource(source.Kind(mgr.GetCache(), client.Object(secretMetadata()), handler.EnqueueRequestsFromMapFunc(podOfTokenSecret))).
		WatchesRawSource(fullPass("pods", resync, synced(mgr.GetCache(), virtual.GetCache()), r.allPairs)).
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

// allPairs lists the key of every pod pair either cache knows, for the full pass.
func (r *PodReconciler) allPairs(ctx context.Context) ([]reconcile.Request, error) {
	hostPods := &corev1.PodList{}
	if err := r.Host.List(ctx, hostPods, client.InNamespace(r.Config.HostNamespace)); err != nil {
		return nil, fmt.Errorf("listing host pods: %w", err)
	}
	virtualPods := &corev1.PodList{}
	if err := r.Virtual.List(ctx, virtualPods); err != nil {
		return nil, fmt.Errorf("listing virtual pods: %w", err)
	}
	keys := map[reconcile.Request]bool{}
	for i := range hostPods.Items {
		for _, req := range virtualKeyOfHostPod(ctx, &hostPods.Items[i]) {
			keys[req] = true
		}
	}
	for i := range virtualPods.Items {
		if pod := &virtualPods.Items[i]; pod.Annotations[translate.AnnotationSyncID] != "" {
			keys[reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)}] = true
		}
	}
	out := make([]reconcile.Request, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	return out, nil
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
	if r.written.lagging(req.NamespacedName, virtual, host) {
		return reconcile.Result{}, nil // our own write's event is on its way.
	}

	switch {
	case virtual == nil && host == nil:
		r.lastSeen.forget(req.NamespacedName)
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
	// A host pod that cannot take an update still has its status reflected.
	host, hostErr := r.syncHost(ctx, virtual, host)
	// Binding first: it sets the virtual pod's PodScheduled condition, so
	// the status write that follows its event often has nothing to add
	// until the pod runs. A failed binding does not hold the status back.
	bound, bindErr := r.bind(ctx, virtual, host)
	if bound {
		return reconcile.Result{}, hostErr
	}
	return reconcile.Result{}, errors.Join(hostErr, bindErr, r.syncStatus(ctx, virtual, host))
}

// reconcileOrphan deletes a host pod whose virtual pod does not exist: at
// once when this process saw the virtual pod deleted (an unbound pod is
// removed without a graceful phase, and a forced deletion skips it), else
// once it is older than the grace period and a live read confirms the
// absence (its admission may still be under way, or have failed).
func (r *PodReconciler) reconcileOrphan(ctx context.Context, key types.NamespacedName, host *corev1.Pod) (reconcile.Result, error) {
	if host.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	if r.Gone.syncID(host.Annotations[translate.AnnotationSyncID]) {
		if err := r.Host.Delete(ctx, host, client.Preconditions{UID: &host.UID}); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, fmt.Errorf("deleting host pod %s of deleted virtual pod: %w", host.Name, err)
		}
		countAction(actionDeleteHost)
		logf.FromContext(ctx).V(1).Info("Deleted host pod of deleted virtual pod", "hostPod", host.Name)
		return reconcile.Result{}, nil
	}
	// creationTimestamp has second resolution: count from the latest
	// instant it may stand for, so no pod is taken for an orphan before it
	// is really OrphanGracePeriod old.
	if age := r.Clock.Since(host.CreationTimestamp.Time) - time.Second; age < r.OrphanGracePeriod {
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
	countAction(actionOrphanDelete)
	logf.FromContext(ctx).Info("Deleted orphan host pod", "hostPod", host.Name, "syncID", host.Annotations[translate.AnnotationSyncID],
		"age", r.Clock.Since(host.CreationTimestamp.Time).Round(time.Second))
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
			before := host.ResourceVersion
			if err := r.Host.Delete(ctx, host, opts...); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, fmt.Errorf("deleting host pod %s: %w", host.Name, err)
			}
			r.written.host(client.ObjectKeyFromObject(virtual), before, "")
			countAction(actionDeleteHost)
			logf.FromContext(ctx).V(1).Info("Deleted host pod of deleted virtual pod", "hostPod", host.Name)
		}
		return reconcile.Result{}, nil // the host pod's removal brings us back.
	}
	if err := r.removeVirtual(ctx, virtual); err != nil {
		return reconcile.Result{}, err
	}
	r.lastSeen.forget(client.ObjectKeyFromObject(virtual))
	return reconcile.Result{}, nil
}

// hostPodCacheLag is how long a new virtual pod's host pod may take to
// show in the cache before the reflector asks the host apiserver.
const hostPodCacheLag = 5 * time.Second

// reconcileHostGone handles a virtual pod whose host pod is not in the cache:
// once its deletion was seen, or the host apiserver confirms it is gone
// (deleted, evicted or preempted on the host), the virtual pod gets a final
// status saying so and is removed,
// so its controller replaces it; a bare pod is not re-created behind the
// tenant's back.
func (r *PodReconciler) reconcileHostGone(ctx context.Context, virtual *corev1.Pod, hostKey types.NamespacedName) (reconcile.Result, error) {
	key := client.ObjectKeyFromObject(virtual)
	syncID := virtual.Annotations[translate.AnnotationSyncID]
	last := r.lastSeen.get(key, syncID)
	if last == nil {
		// No deletion seen. The webhook creates the host pod just before
		// the virtual pod is stored, so a new pod's host pod may not be in
		// the cache yet: its event brings us back. Otherwise (an older
		// pod, a restarted reflector) the host apiserver is asked.
		if age := r.Clock.Since(virtual.CreationTimestamp.Time); age < hostPodCacheLag {
			return reconcile.Result{RequeueAfter: hostPodCacheLag - age}, nil
		}
		live, err := getPod(ctx, r.HostReader, hostKey)
		if err != nil {
			return reconcile.Result{}, err
		}
		if live != nil && live.Annotations[translate.AnnotationSyncID] == syncID {
			return reconcile.Result{}, nil // the cache lags; the host pod's event is on its way.
		}
	}
	if virtual.Status.Phase != corev1.PodFailed && virtual.Status.Phase != corev1.PodSucceeded {
		updated := virtual.DeepCopy()
		updated.Status = translate.HostGoneStatus(virtual, last, metav1.NewTime(r.Clock.Now()))
		if err := r.Virtual.Status().Update(ctx, forWrite(updated), client.FieldOwner(FieldManager)); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return reconcile.Result{}, nil // a newer virtual pod's event brings us back.
			}
			return reconcile.Result{}, fmt.Errorf("recording host deletion on virtual pod: %w", err)
		}
		countAction(actionStatusUpdate)
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, updated.Status.Reason, eventActionDeleting, "%s", updated.Status.Message)
		logf.FromContext(ctx).Info("Recorded the host pod's deletion on the virtual pod", "reason", updated.Status.Reason)
	}
	if err := r.removeVirtual(ctx, virtual); err != nil {
		return reconcile.Result{}, err
	}
	r.lastSeen.forget(key)
	return reconcile.Result{}, nil
}

func (r *PodReconciler) removeVirtual(ctx context.Context, virtual *corev1.Pod) error {
	if g := virtual.DeletionGracePeriodSeconds; virtual.DeletionTimestamp != nil && g != nil && *g == 0 {
		// Being removed already: the apiserver records a grace period of 0
		// (an event of its own) before it removes the pod, and removes it
		// once its finalizers are gone; another delete adds nothing.
		return nil
	}
	before := virtual.ResourceVersion
	err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}, client.GracePeriodSeconds(0))
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("removing virtual pod: %w", err)
	}
	r.written.virtual(client.ObjectKeyFromObject(virtual), before, "")
	countAction(actionDeleteVirtual)
	logf.FromContext(ctx).V(1).Info("Removed virtual pod whose host pod is gone")
	return nil
}

// bind binds the virtual pod to the virtual node mirroring its host node
// once the host scheduler has placed the host pod. It reports whether it
// wrote the virtual pod (bound it, or found it bound meanwhile): the cached
// copy is then stale, and the binding's event brings the pair back.
func (r *PodReconciler) bind(ctx context.Context, virtual, host *corev1.Pod) (bool, error) {
	if host.Spec.NodeName == "" || virtual.Spec.NodeName != "" {
		return false, nil
	}
	// Held from making sure the node exists until the binding is stored.
	r.Nodes.mu.RLock()
	defer r.Nodes.mu.RUnlock()
	if err := ensureVirtualNode(ctx, r.Nodes, r.Host, r.VirtualReader, r.Virtual, host.Spec.NodeName); err != nil {
		return false, err
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: virtual.Name, Namespace: virtual.Namespace, UID: virtual.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: host.Spec.NodeName},
	}
	if err := r.Virtual.SubResource("binding").Create(ctx, virtual, binding); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return true, nil // bound meanwhile, or gone: its event brings us back.
		}
		return false, fmt.Errorf("binding virtual pod to node %s: %w", host.Spec.NodeName, err)
	}
	countAction(actionBind)
	r.written.virtual(client.ObjectKeyFromObject(virtual), virtual.ResourceVersion, "")
	r.Recorder.Eventf(virtual, nil, corev1.EventTypeNormal, "Scheduled", eventActionBinding, "The host scheduler placed the pod on node %s", host.Spec.NodeName)
	return true, nil
}

// syncHost carries the updates Kubernetes allows on a pod from the virtual
// pod to its host pod, in-place resizes through pods/resize. It returns the
// host pod as last written.
func (r *PodReconciler) syncHost(ctx context.Context, virtual, host *corev1.Pod) (*corev1.Pod, error) {
	if host.DeletionTimestamp != nil {
		return host, nil
	}
	updated, changed := translate.HostPodUpdate(virtual, host, r.Config, podbridgeManagers)
	if translate.HeldForVirtualPod(updated) {
		bound, err := r.tokensBound(ctx, virtual)
		if err != nil {
			return host, err
		}
		if released, ok := translate.ReleaseHostPod(virtual, updated); bound && ok {
			updated, changed = released, true
		}
	}
	if changed {
		if written, err := r.writeHost(ctx, virtual, host, updated, hostUpdate); !written {
			return host, err
		}
		host = updated
	}
	if len(virtual.Spec.EphemeralContainers) > len(host.Spec.EphemeralContainers) {
		ephemeral, errs := translate.HostEphemeralContainers(virtual, r.Config)
		if len(errs) > 0 {
			// The webhook refused these; only a pod admitted without it gets here.
			r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, hostEphemeral.refused, eventActionReflect, "Ephemeral containers cannot run on the host: %v", errs.ToAggregate())
			return host, nil
		}
		updated := host.DeepCopy()
		updated.Spec.EphemeralContainers = ephemeral
		if written, err := r.writeHost(ctx, virtual, host, updated, hostEphemeral); !written {
			return host, err
		}
		host = updated
	}
	if resized, changed := translate.HostPodResize(virtual, host); changed {
		if written, err := r.writeHost(ctx, virtual, host, resized, hostResize); !written {
			return host, err
		}
		host = resized
	}
	return host, nil
}

// hostWrite is one kind of write to a host pod.
type hostWrite struct {
	subresource string // "" for the pod itself
	what        string // what the write does, for messages
	refused     string // the event's reason when the host refuses it
	done        string // the log message once written
}

var (
	hostUpdate    = hostWrite{"", "updating", "HostUpdateRefused", "Updated host pod from virtual pod"}
	hostEphemeral = hostWrite{"ephemeralcontainers", "adding ephemeral containers to", "HostUpdateRefused", "Added ephemeral containers to host pod"}
	hostResize    = hostWrite{"resize", "resizing", "HostResizeRefused", "Resized host pod like virtual pod"}
)

// writeHost writes updated, a changed copy of host, as w says, and reports
// whether it was written. A conflict or a pod gone meanwhile is not an
// error: the newer host pod's event brings the pair back. Nor is a write
// the host refuses as invalid: retrying cannot help, so the tenant gets a
// warning event, and the virtual pod's next change brings the pair back.
func (r *PodReconciler) writeHost(ctx context.Context, virtual, host, updated *corev1.Pod, w hostWrite) (bool, error) {
	before := host.ResourceVersion
	var err error
	if w.subresource == "" {
		err = r.Host.Update(ctx, forWrite(updated), client.FieldOwner(FieldManager))
	} else {
		err = r.Host.SubResource(w.subresource).Update(ctx, forWrite(updated), client.FieldOwner(FieldManager))
	}
	log := logf.FromContext(ctx).WithValues("hostPod", host.Name)
	switch {
	case err == nil:
		countAction(actionUpdateHost)
		r.written.host(client.ObjectKeyFromObject(virtual), before, updated.ResourceVersion)
		log.V(1).Info(w.done)
		return true, nil
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsInvalid(err):
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, w.refused, eventActionReflect, "The host cluster refused %s the pod's host pod: %v", w.what, err)
		log.Info("Host refused a write of host pod", "write", w.what, "error", err.Error())
		return false, nil
	}
	return false, fmt.Errorf("%s host pod %s: %w", w.what, host.Name, err)
}

// tokensBound reports whether every token Secret of the virtual pod holds
// a token bound to it (the TokenReconciler writes them).
func (r *PodReconciler) tokensBound(ctx context.Context, virtual *corev1.Pod) (bool, error) {
	for _, tok := range translate.PodDependencies(virtual, r.Config).Tokens {
		s := secretMetadata()
		err := r.Host.Get(ctx, types.NamespacedName{Namespace: r.Config.HostNamespace, Name: tok.HostSecret}, s)
		switch {
		case apierrors.IsNotFound(err):
			return false, nil // its event brings us back.
		case err != nil:
			return false, fmt.Errorf("reading token Secret %s: %w", tok.HostSecret, err)
		case s.Annotations[translate.AnnotationTokenBoundUID] != string(virtual.UID):
			return false, nil
		}
	}
	return true, nil
}

// syncStatus writes the host status onto the virtual pod when it differs.
func (r *PodReconciler) syncStatus(ctx context.Context, virtual, host *corev1.Pod) error {
	status := translate.VirtualStatus(virtual, host)
	if apiequality.Semantic.DeepEqual(status, virtual.Status) {
		return nil
	}
	updated := virtual.DeepCopy()
	updated.Status = status
	if err := r.Virtual.Status().Update(ctx, forWrite(updated), client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // a newer virtual pod's event brings us back.
		}
		return fmt.Errorf("updating virtual pod status: %w", err)
	}
	countAction(actionStatusUpdate)
	r.written.virtual(client.ObjectKeyFromObject(virtual), virtual.ResourceVersion, updated.ResourceVersion)
	// Only a host change newer than the last status write is reflected now;
	// a write caused by the virtual side (a new generation) is no lag.
	if changed := translate.StatusChangedAt(host); changed.After(lastStatusWrite(virtual)) {
		reflectionLag.Observe(max(0, r.Clock.Since(changed).Seconds()))
	}
	if status.Reason == translate.ReasonEvicted && virtual.Status.Reason != translate.ReasonEvicted {
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, translate.ReasonEvicted, eventActionReflect, "The host cluster evicted the pod's host pod: %s", status.Message)
	}
	return nil
}

// lastStatusWrite is when the reflector last wrote the virtual pod's status.
func lastStatusWrite(virtual *corev1.Pod) time.Time {
	for _, e := range virtual.ManagedFields {
		if e.Manager == FieldManager && e.Subresource == "status" && e.Time != nil {
			return e.Time.Time
		}
	}
	return time.Time{}
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

// lastSeen holds deleted host pods by the key of their virtual pod. Entries
// are dropped once the virtual pod is handled; a restart loses them, and the
// final status then rests on what was already copied to the virtual pod.
type lastSeen struct {
	mu   sync.Mutex
	pods map[types.NamespacedName]*corev1.Pod
}

func (l *lastSeen) put(host *corev1.Pod) {
	reqs := virtualKeyOfHostPod(context.Background(), host)
	if len(reqs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pods == nil {
		l.pods = map[types.NamespacedName]*corev1.Pod{}
	}
	l.pods[reqs[0].NamespacedName] = host
}

// get returns the last state of the host pod of the pair syncID, or nil.
func (l *lastSeen) get(key types.NamespacedName, syncID string) *corev1.Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	if host := l.pods[key]; host != nil && host.Annotations[translate.AnnotationSyncID] == syncID {
		return host
	}
	return nil
}

func (l *lastSeen) forget(key types.NamespacedName) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pods, key)
}
