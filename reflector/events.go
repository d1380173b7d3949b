package reflector

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
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

// hostPodEvents selects the host events the reflector caches: those about
// pods (of any owner; which are this virtual cluster's is decided per
// event from the host pod cache, which holds only its pods).
var hostPodEvents = fields.OneTermEqualSelector("involvedObject.kind", "Pod")

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
// about its host pod (scheduler, kubelet and others), translated to the
// virtual pod. Each host event becomes one virtual event whose count and
// last time follow the host's aggregation; a write happens only when that
// changed, and all writes share a rate limit. Events about pods that are
// not this virtual cluster's (other tenants', the host's own, orphans, a
// former incarnation of a host pod) are never copied.
type eventReconciler struct {
	Host    client.Reader // host events and this virtual cluster's host pods (caches)
	Virtual client.Client // virtual pods (cache); writes virtual events
	Config  translate.Config
	Limiter flowcontrol.RateLimiter
	Clock   clock.PassiveClock

	mu      sync.Mutex
	written map[types.NamespacedName]string // host event → what was last written
}

// SetupWithManager watches host pod events (cached with hostPodEvents).
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
	if !translate.CopiesHostEvent(host) || ref.Kind != "Pod" || ref.Namespace != r.Config.HostNamespace || host.Namespace != r.Config.HostNamespace {
		return reconcile.Result{}, nil
	}
	hostPod := &corev1.Pod{}
	err := r.Host.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, hostPod)
	if apierrors.IsNotFound(err) {
		return r.retryWhileRecent(host), nil // not (yet, in the cache) a pod of this virtual cluster.
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("reading host pod: %w", err)
	}
	if hostPod.Labels[translate.LabelManagedBy] != translate.ManagedByValue || hostPod.Labels[translate.LabelVCluster] != r.Config.VCluster ||
		(ref.UID != "" && ref.UID != hostPod.UID) {
		return reconcile.Result{}, nil // another owner's pod, or an earlier pod of this name.
	}
	virtual := &corev1.Pod{}
	key := types.NamespacedName{Namespace: hostPod.Annotations[translate.AnnotationNamespace], Name: hostPod.Annotations[translate.AnnotationName]}
	if err := r.Virtual.Get(ctx, key, virtual); err != nil {
		if apierrors.IsNotFound(err) {
			return r.retryWhileRecent(host), nil // an orphan, or a pod not stored yet.
		}
		return reconcile.Result{}, fmt.Errorf("reading virtual pod: %w", err)
	}
	if !translate.Claims(virtual, hostPod) || virtual.UID == "" {
		return r.retryWhileRecent(host), nil
	}
	if !translate.EventConcernsVirtualPod(host, virtual, hostPod) {
		return r.retryWhileRecent(host), nil // about a container only the host pod has, or not carried yet as far as the caches know.
	}
	ev := translate.VirtualEvent(host, virtual, hostPod)
	fingerprint := fmt.Sprintf("%s|%s|%d|%s|%s", host.UID, virtual.UID, ev.Count, ev.LastTimestamp.UTC().Format(time.RFC3339), ev.Message)
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
	logf.FromContext(ctx).V(1).Info("Copied host event to virtual pod", "pod", key, "reason", ev.Reason, "count", ev.Count)
	return reconcile.Result{}, nil
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
