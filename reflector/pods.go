package reflector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/internal/hostaccount"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/runtimeclass"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// podbridgeManagers are the field managers whose label, annotation and
// scheduling-gate keys on a host pod are the tenant's, so the reflector may
// remove them when the virtual pod drops them.
var podbridgeManagers = []string{translate.FieldManagerWebhook, translate.FieldManagerReflector}

// Event actions (events.k8s.io/v1 "action") the reflector reports.
const (
	eventActionBinding  = "Binding"
	eventActionDeleting = "Deleting"
	eventActionReflect  = "Reflecting"
)

// podReconciler reconciles one pod pair, keyed by the virtual pod's
// namespace and name.
type podReconciler struct {
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
	// Gate is the host-side gate every host pod write passes.
	Gate policy.Gate
	// OrphanGracePeriod: see Options.
	OrphanGracePeriod time.Duration
	Clock             clock.PassiveClock
	// Nodes is shared with the nodeReconciler, which must not remove a
	// node while a pod is being bound to it.
	Nodes *nodeGuard
	// Kubelet is the endpoint the virtual nodes it creates advertise.
	Kubelet translate.KubeletEndpoint
	// Gone holds the virtual pods seen deleted, shared with the
	// tokenReconciler.
	Gone *gonePods

	written writtenOver
	// lastSeen holds deleted host pods' final state until their virtual
	// pods are handled: an eviction's DisruptionTarget condition often
	// lives only in the delete event.
	lastSeen lastSeen
}

// SetupWithManager watches host pods in mgr and virtual pods in virtual,
// plus a full pass at start-up and every resync period.
func (r *podReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("pods").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Pod{}, recordDeletes{
			TypedEventHandler: &handler.TypedEnqueueRequestForObject[*corev1.Pod]{},
			record:            r.Gone.put,
		})).
		// A deleted host pod's last state is kept for reconcileHostGone.
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Pod{}, recordDeletes{
			TypedEventHandler: handler.TypedEnqueueRequestsFromMapFunc(virtualKeyOfHost[*corev1.Pod]),
			record:            r.lastSeen.put,
		})).
		// A bound token Secret may release its host pod.
		WatchesRawSource(source.Kind(mgr.GetCache(), client.Object(secretMetadata()), handler.EnqueueRequestsFromMapFunc(podOfTokenSecret))).
		WatchesRawSource(fullPass("pods", resync, synced(watched{mgr.GetCache(), &corev1.Pod{}}, watched{mgr.GetCache(), secretMetadata()}, watched{virtual.GetCache(), &corev1.Pod{}}), r.allPairs)).
		Complete(r)
}

// indexHostPodVirtualKey indexes host pods by virtualKeyOf.
const indexHostPodVirtualKey = "podbridge.virtualPod"

// indexHostPods registers the index of host pods by the virtual pod they
// name; it must run before the host cache starts.
func indexHostPods(ctx context.Context, host cache.Informers) error {
	err := indexField(ctx, host, &corev1.Pod{}, indexHostPodVirtualKey, inNamespace, func(obj client.Object) []string {
		return []string{virtualKeyOf(obj.(*corev1.Pod)).String()}
	})
	if err != nil {
		return fmt.Errorf("indexing host pods by virtual pod: %w", err)
	}
	return nil
}

// virtualKeyOf is the key of the pair a host object (a pod, a Service)
// belongs to: the virtual object its annotations name or, when they name
// none, a key with no namespace and the host object's own name, which no
// virtual one can have, so it is still collected as an orphan.
func virtualKeyOf(host metav1.Object) types.NamespacedName {
	name, namespace := host.GetAnnotations()[translate.AnnotationName], host.GetAnnotations()[translate.AnnotationNamespace]
	if name == "" || namespace == "" {
		return types.NamespacedName{Name: host.GetName()}
	}
	return types.NamespacedName{Namespace: namespace, Name: name}
}

// virtualKeyOfHost maps a host object's event to its pair.
func virtualKeyOfHost[T client.Object](_ context.Context, host T) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: virtualKeyOf(host)}}
}

// allPairs lists the key of every pod pair either cache knows, for the full pass.
func (r *podReconciler) allPairs(ctx context.Context) ([]reconcile.Request, error) {
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
		keys[reconcile.Request{NamespacedName: virtualKeyOf(&hostPods.Items[i])}] = true
	}
	for i := range virtualPods.Items {
		if pod := &virtualPods.Items[i]; pod.Annotations[translate.AnnotationSyncID] != "" {
			keys[reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)}] = true
		}
	}
	return slices.Collect(maps.Keys(keys)), nil
}

// Reconcile brings one pod pair in line: gather, decide, write.
func (r *podReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	p, err := r.gather(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	d := decidePair(p, r.OrphanGracePeriod)
	if r.written.lagging(req.NamespacedName, p.virtual, d.current) {
		return reconcile.Result{}, nil // our own write's event is on its way.
	}
	var errs []error
	for _, s := range d.steps {
		if err := r.write(ctx, p, s); err != nil {
			errs = append(errs, err)
		}
	}
	if p.virtual == nil && len(p.hosts) == 0 {
		r.lastSeen.forget(req.NamespacedName)
	}
	return reconcile.Result{RequeueAfter: d.requeueAfter}, errors.Join(errs...)
}

// gather reads one pair from the caches. A key with no namespace stands
// for a host pod that names no virtual pod (see virtualKeyOf).
func (r *podReconciler) gather(ctx context.Context, key types.NamespacedName) (pair, error) {
	p := pair{key: key, now: r.Clock.Now(), seenGone: r.Gone.syncID}
	if key.Namespace != "" {
		virtual, err := getPod(ctx, r.Virtual, key)
		if err != nil {
			return p, err
		}
		p.virtual = virtual
		p.hostName = translate.HostName(key.Name, key.Namespace, r.Config.VCluster)
	}
	hosts := &corev1.PodList{}
	if err := r.Host.List(ctx, hosts, client.InNamespace(r.Config.HostNamespace), client.MatchingFields{indexHostPodVirtualKey: key.String()}); err != nil {
		return p, fmt.Errorf("listing host pods of %s: %w", key, err)
	}
	for i := range hosts.Items {
		p.hosts = append(p.hosts, &hosts.Items[i])
	}
	if p.virtual != nil {
		p.lastSeen = r.lastSeen.get(key, p.virtual.Annotations[translate.AnnotationSyncID])
	}
	return p, nil
}

// write carries out one step of a decision.
func (r *podReconciler) write(ctx context.Context, p pair, s step) error {
	switch s.kind {
	case stepDeleteOrphan:
		return r.deleteOrphan(ctx, p, s)
	case stepDeleteHost:
		return r.deleteHost(ctx, p.key, s)
	case stepRemoveVirtual:
		if err := r.removeVirtual(ctx, p.virtual); err != nil {
			return err
		}
		r.lastSeen.forget(p.key)
		return nil
	case stepHostGone:
		return r.endVirtual(ctx, p, s)
	case stepSync:
		return r.sync(ctx, p.virtual, s.host, s.differs)
	case stepRecreateHost:
		return r.recreateHost(ctx, p.virtual, s)
	}
	return fmt.Errorf("unknown step %v", s.kind)
}

// deleteOrphan deletes a host pod no stored virtual pod claims; with
// confirm, only when the virtual apiserver agrees (the cache may lag).
func (r *podReconciler) deleteOrphan(ctx context.Context, p pair, s step) error {
	if s.confirm {
		live, err := getPod(ctx, r.VirtualReader, p.key)
		if err != nil {
			return err
		}
		if translate.Claims(live, s.host) {
			return nil // the cache lags; the virtual pod's event is on its way.
		}
	}
	if err := r.Host.Delete(ctx, s.host, client.Preconditions{UID: &s.host.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting orphan host pod %s: %w", s.host.Name, err)
	}
	countAction(actionOrphanDelete)
	logf.FromContext(ctx).Info("Deleted orphan host pod", "hostPod", s.host.Name, "syncID", s.host.Annotations[translate.AnnotationSyncID],
		"age", p.now.Sub(s.host.CreationTimestamp.Time).Round(time.Second))
	return nil
}

// deleteHost carries a virtual pod's deletion to its host pod (see
// stepDeleteHost); the host pod's removal brings the pair back.
func (r *podReconciler) deleteHost(ctx context.Context, key types.NamespacedName, s step) error {
	host := s.host
	opts := []client.DeleteOption{client.Preconditions{UID: &host.UID}}
	if s.grace != nil {
		opts = append(opts, client.GracePeriodSeconds(*s.grace))
	}
	if err := r.Host.Delete(ctx, host, opts...); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting host pod %s: %w", host.Name, err)
	}
	r.written.host(key, host.ResourceVersion, "")
	countAction(actionDeleteHost)
	logf.FromContext(ctx).V(1).Info("Deleted host pod of deleted virtual pod", "hostPod", host.Name)
	return nil
}

// endVirtual handles a virtual pod whose host pod is gone (deleted,
// evicted or preempted on the host): it gets a final status saying so and
// is removed, so its controller replaces it; a bare pod is not re-created
// behind the tenant's back. With confirm, the host apiserver must agree
// that the host pod is gone.
func (r *podReconciler) endVirtual(ctx context.Context, p pair, s step) error {
	virtual := p.virtual
	if s.confirm {
		live, err := getPod(ctx, r.HostReader, types.NamespacedName{Namespace: r.Config.HostNamespace, Name: p.hostName})
		if err != nil {
			return err
		}
		if translate.Claims(virtual, live) {
			return nil // the cache lags; the host pod's event is on its way.
		}
	}
	if virtual.Status.Phase != corev1.PodFailed && virtual.Status.Phase != corev1.PodSucceeded {
		updated := virtual.DeepCopy()
		var last *corev1.Pod
		if !s.confirm {
			last = s.host
		}
		// A copy: translated statuses share slices with the host cache, and
		// the response is decoded into what is written.
		status := translate.HostGoneStatus(virtual, last, metav1.NewTime(p.now))
		updated.Status = *status.DeepCopy()
		if err := r.Virtual.Status().Update(ctx, forWrite(updated), client.FieldOwner(FieldManager)); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return nil // a newer virtual pod's event brings us back.
			}
			return fmt.Errorf("recording host deletion on virtual pod: %w", err)
		}
		countAction(actionStatusUpdate)
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, updated.Status.Reason, eventActionDeleting, "%s", updated.Status.Message)
		logf.FromContext(ctx).Info("Recorded the host pod's deletion on the virtual pod", "reason", updated.Status.Reason)
	}
	if err := r.removeVirtual(ctx, virtual); err != nil {
		return err
	}
	r.lastSeen.forget(p.key)
	return nil
}

// sync carries updates down to a live pair's host pod, binds the virtual
// pod and reflects the host status. differs, when set, is reported: see
// stepSync.
func (r *podReconciler) sync(ctx context.Context, virtual, host *corev1.Pod, differs string) error {
	// A host pod that cannot take an update still has its status reflected.
	host, hostErr := r.syncHost(ctx, virtual, host, differs)
	// Binding first: it sets the virtual pod's PodScheduled condition, so
	// the status write that follows its event often has nothing to add
	// until the pod runs. A failed binding does not hold the status back.
	bound, bindErr := r.bind(ctx, virtual, host)
	if bound {
		return hostErr
	}
	return errors.Join(hostErr, bindErr, r.syncStatus(ctx, virtual, host))
}

func (r *podReconciler) removeVirtual(ctx context.Context, virtual *corev1.Pod) error {
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
func (r *podReconciler) bind(ctx context.Context, virtual, host *corev1.Pod) (bool, error) {
	if host.Spec.NodeName == "" || virtual.Spec.NodeName != "" {
		return false, nil
	}
	// Held from making sure the node exists until the binding is stored.
	r.Nodes.mu.RLock()
	defer r.Nodes.mu.RUnlock()
	if err := ensureVirtualNode(ctx, r.Nodes, r.Host, r.VirtualReader, r.Virtual, host.Spec.NodeName, r.Kubelet, r.Config.Tolerations); err != nil {
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
	r.Recorder.Eventf(virtual, nil, corev1.EventTypeNormal, translate.ReasonScheduled, eventActionBinding, "%s", translate.ScheduledMessage(virtual, host.Spec.NodeName))
	return true, nil
}

// syncHost carries the updates Kubernetes allows on a pod from the virtual
// pod to its host pod, in-place resizes through pods/resize. It returns the
// host pod as last written.
func (r *podReconciler) syncHost(ctx context.Context, virtual, host *corev1.Pod, differs string) (*corev1.Pod, error) {
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
			return host, r.refuseHostSync(ctx, virtual, hostEphemeral, errs)
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
	if differs != "" {
		return host, r.reportSpecDiffers(ctx, virtual, differs)
	}
	// Every change so far is on the host: a refusal recorded earlier is over.
	return host, r.clearHostSyncRefused(ctx, virtual)
}

// hostRecreate is the write of a re-created host pod, for refusals.
var hostRecreate = hostWrite{"", "re-creating", "HostRecreateRefused", "Re-created host pod from the stored virtual pod"}

// recreateHost replaces a host pod that never started (it is held by
// translate.GateVirtualPod) with the translation of the stored virtual
// pod, keeping its name and sync ID, because a mutating webhook after
// podbridge's changed the pod after the webhook made the host pod. The
// translation passes the host-side gate first; refused, nothing is written
// and the host pod stays held. An unscheduled pod is removed at once, so
// the new one can take its name; the token and copy controllers and the
// gate's release then proceed as for any pod. Should the create fail, the
// pair has no host pod and the virtual pod ends as one whose host pod is
// gone (its controller replaces it).
func (r *podReconciler) recreateHost(ctx context.Context, virtual *corev1.Pod, s step) error {
	old := s.host
	unbound := virtual.DeepCopy()
	// Carried later by the reflector, not at create (the apiserver allows
	// no ephemeral containers then); the binding waits for the host pod.
	unbound.Spec.NodeName, unbound.Spec.EphemeralContainers = "", nil
	host, _, errs := translate.HostPod(unbound, r.Config, virtual.Annotations[translate.AnnotationSyncID])
	if len(errs) > 0 {
		return r.refuseHostSync(ctx, virtual, hostRecreate, errs)
	}
	runtimeClass, refusal, err := runtimeclass.HostClass(ctx, r.HostReader, r.VirtualReader, r.Config.RuntimeClasses, virtual)
	switch {
	case err != nil:
		return fmt.Errorf("re-creating host pod %s: %w", old.Name, err)
	case refusal != nil:
		return r.refuseHostSync(ctx, virtual, hostRecreate, field.ErrorList{refusal})
	}
	host.Spec.RuntimeClassName = runtimeClass
	if errs := r.Gate.Check(virtual, host); len(errs) > 0 {
		return r.refuseHostSync(ctx, virtual, hostRecreate, errs)
	}
	log := logf.FromContext(ctx).WithValues("hostPod", old.Name, "differs", s.differs)
	err = r.Host.Delete(ctx, old, client.Preconditions{UID: &old.UID}, client.GracePeriodSeconds(0))
	switch {
	case apierrors.IsConflict(err):
		return nil // another host pod took the name: its event brings us back.
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("deleting host pod %s to re-create it: %w", old.Name, err)
	}
	written := forWrite(host)
	if err := r.Host.Create(ctx, written, client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil // its event brings us back.
		}
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, hostRecreate.refused, eventActionReflect,
			"The pod changed after podbridge admitted it (%s); the host cluster refused its new host pod: %v", s.differs, err)
		return fmt.Errorf("re-creating host pod %s: %w", host.Name, err)
	}
	if added := hostaccount.AddedPullSecrets(host, written); len(added) > 0 {
		// The host service account gained pull secrets since podbridge
		// started: the pod must not pull with them.
		if err := r.Host.Delete(ctx, written, client.Preconditions{UID: &written.UID}, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting re-created host pod %s given pull secrets %v: %w", host.Name, added, err)
		}
		return r.refuseHostSync(ctx, virtual, hostRecreate, field.ErrorList{field.Forbidden(field.NewPath("spec", "imagePullSecrets"),
			fmt.Sprintf("the host gave the host pod the pull secrets %v of host service account %s; the platform must remove them", added, r.Config.HostServiceAccount))})
	}
	countAction(actionRecreateHost)
	r.written.host(client.ObjectKeyFromObject(virtual), old.ResourceVersion, written.ResourceVersion)
	r.Recorder.Eventf(virtual, nil, corev1.EventTypeNormal, "HostPodRecreated", eventActionReflect,
		"The pod changed after podbridge admitted it (%s); its host pod, not started yet, was made again from the stored pod", s.differs)
	log.Info(hostRecreate.done)
	return nil
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
func (r *podReconciler) writeHost(ctx context.Context, virtual, host, updated *corev1.Pod, w hostWrite) (bool, error) {
	if errs := r.Gate.Check(virtual, updated); len(errs) > 0 {
		return false, r.refuseHostSync(ctx, virtual, w, errs)
	}
	before := host.ResourceVersion
	// The client decodes the response into the object it writes, reusing
	// its maps and slices; updated shares some with the cache (translate
	// copies only what it changes), so a copy of its own is written.
	written := forWrite(updated.DeepCopy())
	var err error
	if w.subresource == "" {
		err = r.Host.Update(ctx, written, client.FieldOwner(FieldManager))
	} else {
		err = r.Host.SubResource(w.subresource).Update(ctx, written, client.FieldOwner(FieldManager))
	}
	log := logf.FromContext(ctx).WithValues("hostPod", host.Name)
	switch {
	case err == nil:
		*updated = *written // updated is the caller's own struct, never the cache's.
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
// a token bound to it (the tokenReconciler writes them).
func (r *podReconciler) tokensBound(ctx context.Context, virtual *corev1.Pod) (bool, error) {
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
func (r *podReconciler) syncStatus(ctx context.Context, virtual, host *corev1.Pod) error {
	status := translate.VirtualStatus(virtual, host)
	if apiequality.Semantic.DeepEqual(status, virtual.Status) {
		return nil
	}
	updated := virtual.DeepCopy()
	updated.Status = *status.DeepCopy() // see endVirtual.
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
	pod, err := kube.GetOrNil[corev1.Pod](ctx, c, key)
	if err != nil {
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
	key := virtualKeyOf(host)
	if key.Namespace == "" {
		return // names no virtual pod.
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pods == nil {
		l.pods = map[types.NamespacedName]*corev1.Pod{}
	}
	l.pods[key] = host
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
