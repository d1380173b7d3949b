package reflector

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/translate"
)

// Defaults of the event copy's write budget: a burst of a pod's start-up
// events goes at once, a storm of them is paced.
const (
	DefaultEventQPS   = 10
	DefaultEventBurst = 50
	// eventWaitForPair is how long after a host event the reflector keeps
	// looking for the pod pair it is about: the host pod cache may lag the
	// event by a moment. Events of other owners' pods are dropped after it.
	eventWaitForPair = 30 * time.Second
)

// eventReconciler shows on each virtual pod the events the host records
// about its host pod (scheduler, kubelet and others), and on each virtual
// claim those about its host claim (the host's binder and provisioner:
// WaitForFirstConsumer, ProvisioningFailed...), translated to the virtual
// object. Each host event becomes one virtual event whose count and last
// time follow the host's aggregation; a write happens only when that
// changed, and all writes share a rate limit. Events about objects that
// are not this virtual cluster's (other tenants', the host's own, orphans,
// a former incarnation of a host pod or claim) are never copied. It
// caches every event of the host namespace (the host's own objects there
// are podbridge's) and drops those about other kinds at once: which pods
// and claims are this virtual cluster's is decided per event from the host
// caches, which hold only its own.
type eventReconciler struct {
	Host    client.Reader // host events and this virtual cluster's host pods (caches)
	Virtual client.Client // virtual pods (cache); writes virtual events
	Config  translate.Config
	Limiter flowcontrol.RateLimiter
	Clock   clock.PassiveClock

	mu      sync.Mutex
	written map[types.NamespacedName]string // host event → what was last written
}

// SetupWithManager watches host events.
func (r *eventReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	r.written = map[types.NamespacedName]string{}
	return ctrl.NewControllerManagedBy(mgr).
		Named("events").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Event{}, &handler.TypedEnqueueRequestForObject[*corev1.Event]{})).
		Complete(r)
}

func (r *eventReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	host := &corev1.Event{}
	if err := r.Host.Get(ctx, req.NamespacedName, host); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName) // expired on the host; the virtual one expires too.
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	ref := host.InvolvedObject
	if !translate.CopiesHostEvent(host) || ref.Namespace != r.Config.HostNamespace || host.Namespace != r.Config.HostNamespace {
		return reconcile.Result{}, nil
	}
	var ev *corev1.Event
	var wait bool
	var err error
	switch ref.Kind {
	case "Pod":
		ev, wait, err = r.podEvent(ctx, host)
	case "PersistentVolumeClaim":
		ev, wait, err = r.claimEvent(ctx, host)
	default:
		return reconcile.Result{}, nil
	}
	switch {
	case err != nil:
		return reconcile.Result{}, err
	case wait:
		return r.retryWhileRecent(host), nil
	case ev == nil:
		return reconcile.Result{}, nil
	}
	fingerprint := fmt.Sprintf("%s|%s|%d|%s|%s", host.UID, ev.InvolvedObject.UID, ev.Count, ev.LastTimestamp.UTC().Format(time.RFC3339), ev.Message)
	if r.lastWritten(req.NamespacedName) == fingerprint {
		return reconcile.Result{}, nil
	}
	if err := r.Limiter.Wait(ctx); err != nil {
		return reconcile.Result{}, err
	}
	if err := r.Virtual.Apply(ctx, applyConfiguration(ev), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return reconcile.Result{}, fmt.Errorf("writing virtual event: %w", err)
	}
	r.remember(req.NamespacedName, fingerprint)
	countAction(actionEvent)
	logf.FromContext(ctx).V(1).Info("Copied host event", "kind", ev.InvolvedObject.Kind, "object", ev.Namespace+"/"+ev.InvolvedObject.Name, "reason", ev.Reason, "count", ev.Count)
	return reconcile.Result{}, nil
}

// podEvent is the virtual pod's copy of host, an event about a host pod;
// nil when it is not about a pod pair of this virtual cluster's, and then
// wait when it may be once the caches catch up.
func (r *eventReconciler) podEvent(ctx context.Context, host *corev1.Event) (ev *corev1.Event, wait bool, err error) {
	ref := host.InvolvedObject
	hostPod := &corev1.Pod{}
	err = r.Host.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, hostPod)
	if apierrors.IsNotFound(err) {
		return nil, true, nil // not (yet, in the cache) a pod of this virtual cluster.
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading host pod: %w", err)
	}
	if !r.ours(hostPod, ref) {
		return nil, false, nil // another owner's pod, or an earlier pod of this name.
	}
	virtual := &corev1.Pod{}
	key := types.NamespacedName{Namespace: hostPod.Annotations[translate.AnnotationNamespace], Name: hostPod.Annotations[translate.AnnotationName]}
	if err := r.Virtual.Get(ctx, key, virtual); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, true, nil // an orphan, or a pod not stored yet.
		}
		return nil, false, fmt.Errorf("reading virtual pod: %w", err)
	}
	if !translate.Claims(virtual, hostPod) || virtual.UID == "" {
		return nil, true, nil
	}
	if !translate.EventConcernsVirtualPod(host, virtual, hostPod) {
		return nil, true, nil // about a container only the host pod has, or not carried yet as far as the caches know.
	}
	return translate.VirtualEvent(host, virtual, hostPod), false, nil
}

// claimEvent is the virtual claim's copy of host, an event about a host
// claim; nil when it is not about a claim pair of this virtual cluster's,
// and then wait when it may be once the caches catch up.
func (r *eventReconciler) claimEvent(ctx context.Context, host *corev1.Event) (ev *corev1.Event, wait bool, err error) {
	ref := host.InvolvedObject
	hostClaim := &corev1.PersistentVolumeClaim{}
	err = r.Host.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, hostClaim)
	if apierrors.IsNotFound(err) {
		return nil, true, nil // not (yet, in the cache) a claim of this virtual cluster.
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading host PersistentVolumeClaim: %w", err)
	}
	if !r.ours(hostClaim, ref) {
		return nil, false, nil // another owner's claim, or an earlier claim of this name.
	}
	virtual := &corev1.PersistentVolumeClaim{}
	key := types.NamespacedName{Namespace: hostClaim.Annotations[translate.AnnotationNamespace], Name: hostClaim.Annotations[translate.AnnotationName]}
	if err := r.Virtual.Get(ctx, key, virtual); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, true, nil // an orphan, or a claim not stored yet.
		}
		return nil, false, fmt.Errorf("reading virtual PersistentVolumeClaim: %w", err)
	}
	if !translate.ClaimsClaim(virtual, hostClaim) || virtual.UID == "" {
		return nil, true, nil
	}
	return translate.VirtualClaimEvent(host, virtual, hostClaim), false, nil
}

// ours reports whether the host object an event is about is this virtual
// cluster's, and the one the event is about (not an earlier object of its
// name).
func (r *eventReconciler) ours(obj client.Object, ref corev1.ObjectReference) bool {
	labels := obj.GetLabels()
	return labels[translate.LabelManagedBy] == translate.ManagedByValue && labels[translate.LabelVCluster] == r.Config.VCluster &&
		(ref.UID == "" || ref.UID == obj.GetUID())
}

// retryWhileRecent looks again a little later for the pair of a recent
// event, and drops an older one.
func (r *eventReconciler) retryWhileRecent(host *corev1.Event) reconcile.Result {
	if _, last, _ := translate.EventTimes(host); r.Clock.Since(last.Time) < eventWaitForPair {
		return reconcile.Result{RequeueAfter: 2 * time.Second}
	}
	return reconcile.Result{}
}

func (r *eventReconciler) lastWritten(key types.NamespacedName) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written[key]
}

func (r *eventReconciler) remember(key types.NamespacedName, fingerprint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.written[key] = fingerprint
}

func (r *eventReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.written, key)
}

// applyConfiguration is ev as a server-side apply: one request creates or
// updates the virtual event.
func applyConfiguration(ev *corev1.Event) *corev1ac.EventApplyConfiguration {
	return corev1ac.Event(ev.Name, ev.Namespace).
		WithLabels(ev.Labels).
		WithInvolvedObject(corev1ac.ObjectReference().
			WithAPIVersion(ev.InvolvedObject.APIVersion).WithKind(ev.InvolvedObject.Kind).
			WithNamespace(ev.InvolvedObject.Namespace).WithName(ev.InvolvedObject.Name).
			WithUID(ev.InvolvedObject.UID).WithFieldPath(ev.InvolvedObject.FieldPath)).
		WithReason(ev.Reason).
		WithMessage(ev.Message).
		WithType(ev.Type).
		WithSource(corev1ac.EventSource().WithComponent(ev.Source.Component).WithHost(ev.Source.Host)).
		WithFirstTimestamp(ev.FirstTimestamp).
		WithLastTimestamp(ev.LastTimestamp).
		WithCount(ev.Count)
}
