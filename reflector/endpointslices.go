package reflector

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
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

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// ReasonEndpointsRefused says addresses (or whole slices) of a tenant's
// EndpointSlices of a Service without a selector were not carried to the
// host, so the host never routes there.
const ReasonEndpointsRefused = "EndpointsRefused"

// maxReported bounds the refusals one event names.
const maxReported = 10

// Indexes of the EndpointSlice controller.
const (
	// indexSliceAddress: virtual tenant slices by each address they name,
	// so a host pod's change finds the Services that name its address.
	indexSliceAddress = "podbridge.sliceAddress"
	// indexHostSliceService: host slices by translate.HostEndpointSliceKey.
	indexHostSliceService = "podbridge.sliceService"
	// indexHostPodIP: this virtual cluster's host pods by pod IP.
	indexHostPodIP = "podbridge.podIP"
)

// sliceDecision is what the EndpointSlice reconciler writes for one
// virtual Service key.
type sliceDecision struct {
	create, update, delete []*discoveryv1.EndpointSlice
	// refused is what the gate left out, for the virtual Service's event.
	refused []string
}

// decideEndpointSlices is the EndpointSlice reconciler's whole decision for
// one virtual Service key, a pure function of what was gathered: the
// virtual Service and its host Service (nil: none), the virtual slices
// labelled with the Service's name, the host slices written for that key,
// and this virtual cluster's host pods by address. The gate
// (policy.Gate.EndpointSlices) says which host slices should exist; every
// other host slice of the key goes, so a deleted virtual slice or Service,
// a Service that gained a selector, or an address that stopped being a
// tenant pod's is gone from the host at the next reconcile.
func decideEndpointSlices(virtual, host *corev1.Service, virtualSlices, hostSlices []*discoveryv1.EndpointSlice, pods map[netip.Addr]policy.EndpointPod, gate policy.Gate) sliceDecision {
	desired, refused := gate.EndpointSlices(virtual, host, virtualSlices, pods)
	d := sliceDecision{refused: refused}
	current := map[string]*discoveryv1.EndpointSlice{}
	for _, h := range hostSlices {
		current[h.Name] = h
	}
	for _, want := range desired {
		have := current[want.Name]
		delete(current, want.Name)
		switch {
		case have == nil:
			d.create = append(d.create, want)
		case have.DeletionTimestamp != nil:
			// Its removal brings the key back.
		case have.AddressType != want.AddressType:
			// Immutable: made again once this one is gone.
			d.delete = append(d.delete, have)
		case !translate.SameHostEndpointSlice(want, have):
			d.update = append(d.update, translate.OverHostEndpointSlice(want, have))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(current)) {
		if h := current[name]; h.DeletionTimestamp == nil {
			d.delete = append(d.delete, h)
		}
	}
	return d
}

// endpointSliceReconciler carries the tenant's EndpointSlices of Services
// without a selector to the host (decideEndpointSlices), keyed by virtual
// Service. Everything is read from caches: virtual slices and Services,
// this virtual cluster's host slices, Services and pods.
type endpointSliceReconciler struct {
	Host     client.Client
	Virtual  client.Client
	Recorder events.EventRecorder
	Config   translate.Config
	Gate     policy.Gate
}

// indexEndpointSlices registers the controller's indexes; it must run
// before the caches start.
func indexEndpointSlices(ctx context.Context, host, virtual cache.Informers) error {
	err := indexField(ctx, virtual, &discoveryv1.EndpointSlice{}, indexSliceAddress, acrossNamespaces, func(obj client.Object) []string {
		s := obj.(*discoveryv1.EndpointSlice)
		if _, ok := translate.TenantEndpointSlice(s); !ok {
			return nil
		}
		var out []string
		for _, e := range s.Endpoints {
			out = append(out, e.Addresses...)
		}
		return out
	})
	if err != nil {
		return fmt.Errorf("indexing virtual EndpointSlices by address: %w", err)
	}
	err = indexField(ctx, host, &discoveryv1.EndpointSlice{}, indexHostSliceService, inNamespace, func(obj client.Object) []string {
		return []string{translate.HostEndpointSliceKey(obj.(*discoveryv1.EndpointSlice)).String()}
	})
	if err != nil {
		return fmt.Errorf("indexing host EndpointSlices by virtual Service: %w", err)
	}
	err = indexField(ctx, host, &corev1.Pod{}, indexHostPodIP, inNamespace, func(obj client.Object) []string {
		return policy.PodIPs(obj.(*corev1.Pod))
	})
	if err != nil {
		return fmt.Errorf("indexing host pods by IP: %w", err)
	}
	return nil
}

// SetupWithManager registers the controller: a virtual slice enqueues the
// Service its label names (before and after a change), a host slice the
// Service it was written for, either Service its key, and a host pod whose
// usable addresses or node change every Service whose slices name them;
// a full pass covers every slice of both caches.
func (r *endpointSliceReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	podChanged := predicate.TypedFuncs[*corev1.Pod]{
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
			return r.podView(e.ObjectOld) != r.podView(e.ObjectNew)
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("endpointslices").
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(virtual.GetCache(), &discoveryv1.EndpointSlice{}, handler.TypedEnqueueRequestsFromMapFunc(serviceOfVirtualSlice))).
		WatchesRawSource(source.Kind(mgr.GetCache(), &discoveryv1.EndpointSlice{}, handler.TypedEnqueueRequestsFromMapFunc(serviceOfHostSlice))).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Service{}, &handler.TypedEnqueueRequestForObject[*corev1.Service]{})).
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Service{}, handler.TypedEnqueueRequestsFromMapFunc(virtualKeyOfHost[*corev1.Service]))).
		WatchesRawSource(source.Kind(mgr.GetCache(), &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(r.servicesNamingPod), podChanged)).
		WatchesRawSource(fullPass("endpointslices", resync, synced(watched{mgr.GetCache(), &discoveryv1.EndpointSlice{}}, watched{virtual.GetCache(), &discoveryv1.EndpointSlice{}},
			watched{mgr.GetCache(), &corev1.Pod{}}, watched{mgr.GetCache(), &corev1.Service{}}, watched{virtual.GetCache(), &corev1.Service{}}), r.allKeys)).
		Complete(r)
}

func serviceOfVirtualSlice(_ context.Context, s *discoveryv1.EndpointSlice) []reconcile.Request {
	if service := s.Labels[discoveryv1.LabelServiceName]; service != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: service}}}
	}
	return nil
}

func serviceOfHostSlice(_ context.Context, s *discoveryv1.EndpointSlice) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: translate.HostEndpointSliceKey(s)}}
}

// podView is what of a host pod the decision reads.
func (r *endpointSliceReconciler) podView(pod *corev1.Pod) string {
	return fmt.Sprint(policy.TenantPodAddresses(pod, r.Config), pod.Spec.NodeName, pod.UID)
}

// servicesNamingPod maps a host pod to the Services whose virtual slices
// name one of its IPs (called for the old and the new pod of an update,
// so an address the pod gave up is covered too).
func (r *endpointSliceReconciler) servicesNamingPod(ctx context.Context, pod *corev1.Pod) []reconcile.Request {
	var out []reconcile.Request
	for _, ip := range policy.PodIPs(pod) {
		list := &discoveryv1.EndpointSliceList{}
		if err := r.Virtual.List(ctx, list, client.MatchingFields{indexSliceAddress: ip}); err != nil {
			logf.FromContext(ctx).Error(err, "Failed to find the EndpointSlices naming a host pod's address", "pod", pod.Name)
			continue
		}
		for i := range list.Items {
			out = append(out, serviceOfVirtualSlice(ctx, &list.Items[i])...)
		}
	}
	return out
}

func (r *endpointSliceReconciler) allKeys(ctx context.Context) ([]reconcile.Request, error) {
	keys := map[reconcile.Request]bool{}
	virtuals := &discoveryv1.EndpointSliceList{}
	if err := r.Virtual.List(ctx, virtuals); err != nil {
		return nil, fmt.Errorf("listing virtual EndpointSlices: %w", err)
	}
	for i := range virtuals.Items {
		if service, ok := translate.TenantEndpointSlice(&virtuals.Items[i]); ok {
			keys[reconcile.Request{NamespacedName: types.NamespacedName{Namespace: virtuals.Items[i].Namespace, Name: service}}] = true
		}
	}
	hosts := &discoveryv1.EndpointSliceList{}
	if err := r.Host.List(ctx, hosts, client.InNamespace(r.Config.HostNamespace)); err != nil {
		return nil, fmt.Errorf("listing host EndpointSlices: %w", err)
	}
	for i := range hosts.Items {
		keys[reconcile.Request{NamespacedName: translate.HostEndpointSliceKey(&hosts.Items[i])}] = true
	}
	return slices.Collect(maps.Keys(keys)), nil
}

// Reconcile gathers one virtual Service's slices on both sides, decides and writes.
func (r *endpointSliceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var virtual, host *corev1.Service
	var virtualSlices []*discoveryv1.EndpointSlice
	pods := map[netip.Addr]policy.EndpointPod{}
	if req.Namespace != "" {
		var err error
		if virtual, err = getService(ctx, r.Virtual, req.NamespacedName); err != nil {
			return reconcile.Result{}, err
		}
		hostKey := client.ObjectKey{Namespace: r.Config.HostNamespace, Name: translate.HostServiceName(req.Name, req.Namespace, r.Config.VCluster)}
		if host, err = getService(ctx, r.Host, hostKey); err != nil {
			return reconcile.Result{}, err
		}
		list := &discoveryv1.EndpointSliceList{}
		if err := r.Virtual.List(ctx, list, client.InNamespace(req.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: req.Name}); err != nil {
			return reconcile.Result{}, fmt.Errorf("listing virtual EndpointSlices: %w", err)
		}
		for i := range list.Items {
			virtualSlices = append(virtualSlices, &list.Items[i])
		}
		if virtual != nil && len(virtual.Spec.Selector) == 0 {
			if err := r.podsNamed(ctx, virtualSlices, pods); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	hostList := &discoveryv1.EndpointSliceList{}
	if err := r.Host.List(ctx, hostList, client.InNamespace(r.Config.HostNamespace), client.MatchingFields{indexHostSliceService: req.String()}); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing host EndpointSlices: %w", err)
	}
	var hostSlices []*discoveryv1.EndpointSlice
	for i := range hostList.Items {
		if h := &hostList.Items[i]; translate.IsOwnEndpointSlice(h, r.Config.VCluster) {
			hostSlices = append(hostSlices, h)
		}
	}
	d := decideEndpointSlices(virtual, host, virtualSlices, hostSlices, pods, r.Gate)
	return reconcile.Result{}, r.write(ctx, virtual, d)
}

// podsNamed adds to pods this virtual cluster's host pods that hold an
// address the slices name, from the host pod cache's index.
func (r *endpointSliceReconciler) podsNamed(ctx context.Context, virtualSlices []*discoveryv1.EndpointSlice, pods map[netip.Addr]policy.EndpointPod) error {
	seen := map[string]bool{}
	for _, s := range virtualSlices {
		for _, e := range s.Endpoints {
			for _, raw := range e.Addresses {
				if seen[raw] {
					continue
				}
				seen[raw] = true
				list := &corev1.PodList{}
				if err := r.Host.List(ctx, list, client.InNamespace(r.Config.HostNamespace), client.MatchingFields{indexHostPodIP: raw}); err != nil {
					return fmt.Errorf("finding host pods by IP: %w", err)
				}
				for i := range list.Items {
					policy.AddTenantPod(pods, &list.Items[i], r.Config)
				}
			}
		}
	}
	return nil
}

func (r *endpointSliceReconciler) write(ctx context.Context, virtual *corev1.Service, d sliceDecision) error {
	log := logf.FromContext(ctx)
	for _, s := range d.delete {
		if err := r.Host.Delete(ctx, s, client.Preconditions{UID: &s.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting host EndpointSlice %s: %w", s.Name, err)
		}
		countAction(actionSliceDelete)
		log.Info("Deleted host EndpointSlice", "hostEndpointSlice", s.Name)
	}
	for _, s := range d.create {
		if err := r.Host.Create(ctx, s, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("creating host EndpointSlice %s: %w", s.Name, err)
		}
		countAction(actionSliceWrite)
		log.Info("Created host EndpointSlice", "hostEndpointSlice", s.Name, "endpoints", len(s.Endpoints))
	}
	for _, s := range d.update {
		if err := r.Host.Update(ctx, s, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("updating host EndpointSlice %s: %w", s.Name, err)
		}
		countAction(actionSliceWrite)
		log.Info("Updated host EndpointSlice", "hostEndpointSlice", s.Name, "endpoints", len(s.Endpoints))
	}
	return r.reportRefused(ctx, virtual, d.refused)
}

// reportRefused keeps the virtual Service's ConditionEndpointsCarried on
// what the decision left out now, and sends a Warning event when that
// changes: the condition is both the tenant's signal and the memory that
// keeps the event from repeating on every reconcile. A conflict or a
// Service gone meanwhile is not an error: the newer Service's event
// brings the key back.
func (r *endpointSliceReconciler) reportRefused(ctx context.Context, virtual *corev1.Service, refused []string) error {
	if virtual == nil {
		return nil
	}
	msg := ""
	if len(refused) > 0 {
		shown := refused[:min(len(refused), maxReported)]
		msg = "not carried to the host, never routed there: " + strings.Join(shown, ", ")
		if more := len(refused) - len(shown); more > 0 {
			msg += fmt.Sprintf(" and %d more", more)
		}
		msg += fmt.Sprintf("; endpoints may be this virtual cluster's pod IPs and the platform's --%s %v", policy.FlagAllowedEndpointCIDRs, r.Config.EndpointCIDRs)
	}
	existing := meta.FindStatusCondition(virtual.Status.Conditions, translate.ConditionEndpointsCarried)
	if (msg == "" && existing == nil) || (existing != nil && msg != "" && existing.Status == metav1.ConditionFalse && existing.Message == msg && existing.Reason == ReasonEndpointsRefused) {
		return nil
	}
	updated := virtual.DeepCopy()
	if msg == "" {
		meta.RemoveStatusCondition(&updated.Status.Conditions, translate.ConditionEndpointsCarried)
	} else {
		meta.SetStatusCondition(&updated.Status.Conditions, metav1.Condition{
			Type: translate.ConditionEndpointsCarried, Status: metav1.ConditionFalse, Reason: ReasonEndpointsRefused, Message: msg, ObservedGeneration: virtual.Generation,
		})
	}
	if err := r.Virtual.Status().Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing the virtual Service's %s condition: %w", translate.ConditionEndpointsCarried, err)
	}
	countAction(actionStatusUpdate)
	if msg != "" {
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonEndpointsRefused, eventActionReflect, "%s", msg)
		logf.FromContext(ctx).Info("Refused EndpointSlice addresses", "service", virtual.Namespace+"/"+virtual.Name, "refused", refused)
	}
	return nil
}
