package reflector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/hostcopy"
	"github.com/podbridge/podbridge/translate"
)

// copyKind is a kind of virtual object that has host copies while pods use it.
type copyKind struct {
	kind      string
	newObject func() client.Object
	// refs names the objects of this kind in deps.
	refs func(deps *translate.Dependencies) []translate.Reference
}

var (
	configMapCopies = copyKind{
		kind:      "ConfigMap",
		newObject: func() client.Object { return &corev1.ConfigMap{} },
		refs:      func(d *translate.Dependencies) []translate.Reference { return d.ConfigMaps },
	}
	secretCopies = copyKind{
		kind:      "Secret",
		newObject: func() client.Object { return &corev1.Secret{} },
		refs:      func(d *translate.Dependencies) []translate.Reference { return d.Secrets },
	}
)

// metadata is an object of the kind as the caches hold it: both clusters'
// caches keep only the metadata of ConfigMaps and Secrets. Their content is
// read live, and only when a resourceVersion says it changed, so no cache
// holds a Secret's data.
func (k copyKind) metadata() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: k.kind}}
}

func (k copyKind) metadataList() *metav1.PartialObjectMetadataList {
	return &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: k.kind + "List"}}
}

// copyReconciler keeps the host copies of one kind of virtual object
// (ConfigMaps or Secrets) in line with their originals, keyed by the
// virtual object's namespace and name: a copy follows its original's
// updates and deletion, is created when a pod uses an original the webhook
// could not copy (it appeared later, or the copy was removed), and is
// removed once no pod uses it.
type copyReconciler struct {
	Kind copyKind
	// Host reads host copies' metadata from the cache and writes them.
	Host client.Client
	// Virtual reads virtual pods and the originals' metadata from the cache.
	Virtual client.Client
	// VirtualReader reads originals' content, and confirms absences, live.
	VirtualReader client.Reader
	Config        translate.Config
	// GracePeriod is how old an unused copy must be before it is removed:
	// the webhook copies before the pod that uses it is stored.
	GracePeriod time.Duration
	Clock       clock.PassiveClock
	// Copies writes host copies within the caps on their number and bytes;
	// a copy refused is not written and the original gets a warning event.
	Copies *hostcopy.Writer
	// Recorder writes events in the virtual cluster.
	Recorder events.EventRecorder
}

// indexPodDependencies indexes virtual pods by the ConfigMaps and Secrets
// they use, each as usedKey names it. One index for both kinds walks a pod
// once per event where an index per kind walked it twice (and client-go
// indexes the old object of an update again): the walk translates the
// whole spec, and a virtual pod changes with every status write.
const indexPodDependencies = "podbridge.dependencies"

// usedKey is the value of indexPodDependencies for an object of this kind.
func (k copyKind) usedKey(namespace, name string) string {
	return k.kind + "/" + namespace + "/" + name
}

// indexVirtualPodDependencies registers indexPodDependencies; it must run
// before virtual's cache starts.
func indexVirtualPodDependencies(ctx context.Context, virtual cache.Informers, cfg translate.Config) error {
	err := indexField(ctx, virtual, &corev1.Pod{}, indexPodDependencies, acrossNamespaces, func(obj client.Object) []string {
		pod := obj.(*corev1.Pod)
		if pod.Annotations[translate.AnnotationSyncID] == "" {
			return nil
		}
		deps := translate.PodDependencies(pod, cfg)
		var keys []string
		for _, k := range []copyKind{configMapCopies, secretCopies} {
			for _, ref := range k.refs(deps) {
				keys = append(keys, k.usedKey(pod.Namespace, ref.Name))
			}
		}
		return keys
	})
	if err != nil {
		return fmt.Errorf("indexing virtual pods by the ConfigMaps and Secrets they use: %w", err)
	}
	return nil
}

// SetupWithManager watches the host copies, the originals' metadata and
// the virtual pods that come and go, plus a full pass at start-up and every
// resync period.
func (r *copyReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	// A pod's references change only when it gets ephemeral containers:
	// otherwise only its coming and going matter. The pods of the cache's
	// first list are left to the start-up pass, which maps every pod
	// anyway: a restart walks each pod's references once less per kind.
	podComesOrGoes := predicate.TypedFuncs[*corev1.Pod]{
		CreateFunc: func(e event.TypedCreateEvent[*corev1.Pod]) bool {
			return !e.IsInInitialList
		},
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
			return len(e.ObjectOld.Spec.EphemeralContainers) != len(e.ObjectNew.Spec.EphemeralContainers)
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(r.Kind.kind + "-copies").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(mgr.GetCache(), client.Object(r.Kind.metadata()), handler.EnqueueRequestsFromMapFunc(r.originalOfCopy))).
		WatchesRawSource(source.Kind(virtual.GetCache(), client.Object(r.Kind.metadata()), &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(r.usedBy), podComesOrGoes)).
		WatchesRawSource(fullPass(r.Kind.kind+"-copies", resync, synced(watched{mgr.GetCache(), r.Kind.metadata()}, watched{virtual.GetCache(), r.Kind.metadata()}, watched{virtual.GetCache(), &corev1.Pod{}}), r.allOriginals)).
		Complete(r)
}

// originalOfCopy maps a host copy to its virtual original.
func (r *copyReconciler) originalOfCopy(_ context.Context, obj client.Object) []reconcile.Request {
	if translate.IsTokenSecret(obj) {
		return nil
	}
	a := obj.GetAnnotations()
	if a[translate.AnnotationName] == "" || a[translate.AnnotationNamespace] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: a[translate.AnnotationNamespace], Name: a[translate.AnnotationName]}}}
}

// usedBy maps a virtual pod to the objects of the kind it uses.
func (r *copyReconciler) usedBy(_ context.Context, pod *corev1.Pod) []reconcile.Request {
	if pod.Annotations[translate.AnnotationSyncID] == "" {
		return nil
	}
	var reqs []reconcile.Request
	for _, ref := range r.Kind.refs(translate.PodDependencies(pod, r.Config)) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}})
	}
	return reqs
}

// allOriginals lists every copy on the host and every object a pod uses.
func (r *copyReconciler) allOriginals(ctx context.Context) ([]reconcile.Request, error) {
	keys := map[reconcile.Request]bool{}
	copies := r.Kind.metadataList()
	if err := r.Host.List(ctx, copies, client.InNamespace(r.Config.HostNamespace)); err != nil {
		return nil, fmt.Errorf("listing host %s copies: %w", r.Kind.kind, err)
	}
	for i := range copies.Items {
		for _, req := range r.originalOfCopy(ctx, &copies.Items[i]) {
			keys[req] = true
		}
	}
	pods := &corev1.PodList{}
	if err := r.Virtual.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("listing virtual pods: %w", err)
	}
	for i := range pods.Items {
		for _, req := range r.usedBy(ctx, &pods.Items[i]) {
			keys[req] = true
		}
	}
	return slices.Collect(maps.Keys(keys)), nil
}

// Reconcile brings the host copy of one virtual object in line: gather,
// decide, write. The original's content is read live, and only when its
// cached metadata says the copy is not current.
func (r *copyReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	hostKey := types.NamespacedName{Namespace: r.Config.HostNamespace, Name: translate.HostName(req.Name, req.Namespace, r.Config.VCluster)}
	// hostCopy stays a nil interface when there is no copy.
	var hostCopy client.Object
	found := r.Kind.metadata()
	switch err := r.Host.Get(ctx, hostKey, found); {
	case err == nil:
		hostCopy = found
	case !apierrors.IsNotFound(err):
		return reconcile.Result{}, fmt.Errorf("reading host %s %s: %w", r.Kind.kind, hostKey.Name, err)
	}
	if hostCopy != nil && len(r.originalOfCopy(ctx, hostCopy)) == 0 {
		return reconcile.Result{}, nil // a token Secret, or not a copy: not ours to touch.
	}
	users := &corev1.PodList{}
	if err := r.Virtual.List(ctx, users, client.MatchingFields{indexPodDependencies: r.Kind.usedKey(req.Namespace, req.Name)}, client.Limit(1), client.UnsafeDisableDeepCopy); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing virtual pods using %s %s: %w", r.Kind.kind, req, err)
	}
	original := r.Kind.metadata()
	if err := r.Virtual.Get(ctx, req.NamespacedName, original); client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, fmt.Errorf("reading virtual %s %s: %w", r.Kind.kind, req, err)
	}

	step, after := decideCopy(hostCopy, len(users.Items) > 0, original.ResourceVersion, r.Clock.Now(), r.GracePeriod)
	var live client.Object
	if step == copyReadOriginal {
		live = r.Kind.newObject()
		if err := r.VirtualReader.Get(ctx, req.NamespacedName, live); err != nil {
			if !apierrors.IsNotFound(err) {
				return reconcile.Result{}, fmt.Errorf("reading virtual %s %s: %w", r.Kind.kind, req, err)
			}
			live = nil
		}
		step = decideCopyFromOriginal(hostCopy, live)
	}
	capped, err := r.writeCopy(ctx, step, hostCopy, live)
	return reconcile.Result{RequeueAfter: earliest(after, capped)}, err
}

// copyStep is one write to a host copy.
type copyStep int

const (
	copyNone copyStep = iota
	// copyReadOriginal: the copy may be stale; decide on the live original.
	copyReadOriginal
	copyCreate
	copyUpdate
	copyDeleteUnused
	copyDeleteOriginalGone
)

// decideCopy decides on a host copy (nil: none) from whether a stored pod
// uses its original and the original's cached resourceVersion ("" when the
// cache has none): an unused copy goes after the grace period (the webhook
// copies before the pod that uses it is stored); a used one is checked
// against its original unless the cache says it is current.
func decideCopy(hostCopy client.Object, used bool, cachedOriginalRV string, now time.Time, grace time.Duration) (copyStep, time.Duration) {
	switch {
	case !used && hostCopy == nil:
		return copyNone, 0
	case !used:
		// creationTimestamp has second resolution: see translate.OrphanWait.
		if age := now.Sub(hostCopy.GetCreationTimestamp().Time) - time.Second; age < grace {
			return copyNone, grace - age
		}
		return copyDeleteUnused, 0
	case hostCopy != nil && cachedOriginalRV != "" && copiedFrom(hostCopy) == cachedOriginalRV:
		return copyNone, 0 // current.
	}
	return copyReadOriginal, 0
}

// decideCopyFromOriginal decides on a used host copy (nil: none) from its
// live original (nil: gone). A missing original leaves the pod waiting, as
// it would in any cluster.
func decideCopyFromOriginal(hostCopy, live client.Object) copyStep {
	switch {
	case live == nil && hostCopy == nil:
		return copyNone
	case live == nil:
		return copyDeleteOriginalGone
	case hostCopy == nil:
		return copyCreate
	case copiedFrom(hostCopy) == live.GetResourceVersion():
		return copyNone // the cache of originals lagged.
	}
	return copyUpdate
}

// writeCopy carries out step on the host copy of live. A create or update
// the caps refuse is not written; it returns when to check the caps again.
func (r *copyReconciler) writeCopy(ctx context.Context, step copyStep, hostCopy, live client.Object) (time.Duration, error) {
	log := logf.FromContext(ctx)
	var current client.Object
	switch step {
	case copyDeleteUnused:
		return 0, r.deleteCopy(ctx, hostCopy, "no pod uses it")
	case copyDeleteOriginalGone:
		return 0, r.deleteCopy(ctx, hostCopy, "its virtual original was deleted")
	case copyUpdate:
		current = hostCopy
	case copyCreate:
	default:
		return 0, nil
	}
	results, err := r.Copies.Write(ctx, hostcopy.Copy{Original: live, Current: current})
	var limit *caps.LimitError
	switch {
	case errors.As(err, &limit):
		// Not copied: the pods that use it keep the copy they have, or
		// wait. The cap is checked again in a minute.
		log.Info("Refused to copy to the host: a cap on host copies", "kind", r.Kind.kind, "original", client.ObjectKeyFromObject(live).String(), "limit", limit.Flag, "use", limit.Use, "cap", limit.Limit)
		if r.Recorder != nil {
			r.Recorder.Eventf(live, nil, corev1.EventTypeWarning, "HostCopyRefused", "Copy", "podbridge did not copy this %s to the host: %s", r.Kind.kind, limit.Error())
		}
		return time.Minute, nil
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// A newer copy, or its deletion, brings us back; a host object of
		// the name that is not this virtual cluster's copy is left alone.
		return 0, nil
	case step == copyUpdate && apierrors.IsInvalid(err):
		// An immutable copy cannot change: replace it; its deletion brings us back.
		return 0, r.deleteCopy(ctx, hostCopy, "its immutable virtual original was replaced")
	case err != nil:
		return 0, err
	}
	hostName := translate.HostName(live.GetName(), live.GetNamespace(), r.Config.VCluster)
	switch results[0] {
	case hostcopy.Created:
		countAction(actionCopyWrite)
		log.V(1).Info("Created host copy used by a pod", "kind", r.Kind.kind, "hostName", hostName)
	case hostcopy.Updated:
		countAction(actionCopyWrite)
		log.V(1).Info("Updated host copy from its virtual original", "kind", r.Kind.kind, "hostName", hostName)
	}
	return 0, nil
}

// copiedFrom is the resourceVersion of the virtual original a host copy
// was made from.
func copiedFrom(hostCopy client.Object) string {
	return hostCopy.GetAnnotations()[translate.AnnotationSourceResourceVersion]
}

func (r *copyReconciler) deleteCopy(ctx context.Context, obj client.Object, why string) error {
	uid := obj.GetUID()
	if err := r.Host.Delete(ctx, obj, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting host %s %s: %w", r.Kind.kind, obj.GetName(), err)
	}
	countAction(actionCopyDelete)
	logf.FromContext(ctx).V(1).Info("Deleted host copy", "kind", r.Kind.kind, "hostName", obj.GetName(), "reason", why)
	return nil
}
