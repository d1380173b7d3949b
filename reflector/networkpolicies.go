package reflector

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// Reasons of the reflector's events on virtual NetworkPolicies.
const (
	ReasonHostNetworkPolicyRefused = "HostNetworkPolicyRefused"
	ReasonHostNetworkPolicyGone    = "HostNetworkPolicyGone"
	// ReasonHostNetworkPolicyMissing: a NetworkPolicy stored without
	// podbridge's admission (its registration was away) has no host
	// NetworkPolicy: nothing enforces it.
	ReasonHostNetworkPolicyMissing = "HostNetworkPolicyMissing"
)

// policyStep is one write the NetworkPolicy reconciler decides.
type policyStep int

const (
	// npDeleteOrphan deletes a host NetworkPolicy no stored virtual one
	// claims, once the virtual apiserver confirms it.
	npDeleteOrphan policyStep = iota
	// npDeleteVirtual deletes a virtual NetworkPolicy whose host one is
	// gone, once a live host read confirms it.
	npDeleteVirtual
	// npUpdateHost writes the stored NetworkPolicy's translation, with the
	// namespaces' labels of now, over its host NetworkPolicy.
	npUpdateHost
	// npRefused records that the stored NetworkPolicy fails the gate:
	// nothing is written to the host.
	npRefused
	// npNotAdmitted records that a NetworkPolicy podbridge never admitted
	// has no host NetworkPolicy.
	npNotAdmitted
)

func (k policyStep) String() string {
	return [...]string{"DeleteOrphan", "DeleteVirtual", "UpdateHost", "Refused", "NotAdmitted"}[k]
}

// policyDecision is what the NetworkPolicy reconciler writes for one key.
type policyDecision struct {
	steps   []policyStep
	desired *networkingv1.NetworkPolicy // npUpdateHost
	refused field.ErrorList             // npRefused
	requeue time.Duration
}

// decideNetworkPolicy is the NetworkPolicy reconciler's whole decision
// for one virtual key, a pure function of what was gathered: the stored
// virtual NetworkPolicy (nil: none), the host NetworkPolicy of its name
// (nil: none) and the virtual namespaces' labels now. As decideService:
// an unclaimed host policy is an orphan past the grace period; a claimed
// one follows the stored policy through the gate, so a change the webhook
// did not see (the tenant's own webhooks after podbridge's, a
// registration the tenant removed) is carried or refused here, never
// written unchecked, and a namespaceSelector follows the namespaces'
// labels (level-based: a namespace labelled later is selected then); a
// stored policy whose host policy is gone is deleted; one podbridge never
// admitted gets an event.
func decideNetworkPolicy(virtual, host *networkingv1.NetworkPolicy, namespaces translate.NamespaceLabels, gate policy.Gate, now time.Time, grace time.Duration) policyDecision {
	var d policyDecision
	claimed := translate.ClaimsNetworkPolicy(virtual, host)
	if host != nil && !claimed {
		if host.DeletionTimestamp != nil {
			return d
		}
		if wait := translate.OrphanWait(host, now, grace); wait > 0 {
			d.requeue = wait
		} else {
			d.steps = append(d.steps, npDeleteOrphan)
		}
	}
	switch {
	case virtual == nil || virtual.DeletionTimestamp != nil:
		return d
	case virtual.Annotations[translate.AnnotationSyncID] == "":
		d.steps = append(d.steps, npNotAdmitted)
		return d
	case !claimed:
		d.steps = append(d.steps, npDeleteVirtual)
		return d
	case host.DeletionTimestamp != nil:
		return d
	}
	desired, errs := translate.HostNetworkPolicy(virtual, gate.Config, virtual.Annotations[translate.AnnotationSyncID], namespaces)
	if len(errs) == 0 {
		errs = gate.CheckNetworkPolicy(virtual, desired)
	}
	switch {
	case len(errs) > 0:
		d.steps, d.refused = append(d.steps, npRefused), errs
	case translate.SameHostNetworkPolicy(desired, host):
	case webhookWrote(host, now, grace):
		// The update the webhook carried may not be stored, or cached, yet.
		d.requeue = grace
	default:
		d.steps, d.desired = append(d.steps, npUpdateHost), translate.OverHostNetworkPolicy(desired, host)
	}
	return d
}

// policyReconciler keeps each virtual NetworkPolicy and its host one one
// (decideNetworkPolicy), and the virtual cluster's isolation policy
// (translate.IsolationPolicy) in place: the key with no namespace and its
// name.
type policyReconciler struct {
	objectPairs[networkingv1.NetworkPolicy, *networkingv1.NetworkPolicy]
}

func newPolicyReconciler(deps pairDeps) *policyReconciler {
	return &policyReconciler{newObjectPairs(deps, "NetworkPolicies", func() client.ObjectList { return &networkingv1.NetworkPolicyList{} }, translate.HostNetworkPolicyName, getPolicy)}
}

// SetupWithManager registers the controller: events of either
// NetworkPolicy enqueue the virtual key, a namespace's event every policy
// whose namespaceSelector reads namespace labels, and a full pass covers
// both caches and the isolation policy.
func (r *policyReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	return r.controller(mgr, virtual, concurrency, resync, r.allKeys, watched{virtual.GetCache(), &corev1.Namespace{}}).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Namespace{}, handler.TypedEnqueueRequestsFromMapFunc(r.policiesReadingLabels))).
		Complete(r)
}

// isolationKey is the reconcile key of the isolation policy.
func (r *policyReconciler) isolationKey() reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Name: translate.IsolationPolicyName(r.Config.VCluster)}}
}

// policiesReadingLabels maps a namespace's event to the policies whose
// translation reads namespace labels: a label change may select it or not.
func (r *policyReconciler) policiesReadingLabels(ctx context.Context, _ *corev1.Namespace) []reconcile.Request {
	list := &networkingv1.NetworkPolicyList{}
	if err := r.Virtual.List(ctx, list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing virtual NetworkPolicies for a namespace's change")
		return nil
	}
	var keys []reconcile.Request
	for i := range list.Items {
		if translate.UsesNamespaceLabels(&list.Items[i]) {
			keys = append(keys, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return keys
}

// allKeys is the isolation policy's key and every pair's.
func (r *policyReconciler) allKeys(ctx context.Context) ([]reconcile.Request, error) {
	keys, err := r.pairKeys(ctx)
	if err != nil {
		return nil, err
	}
	return append([]reconcile.Request{r.isolationKey()}, keys...), nil
}

// Reconcile gathers the NetworkPolicy pair of one key, decides, and writes.
func (r *policyReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req == r.isolationKey() {
		return reconcile.Result{}, r.keepIsolation(ctx)
	}
	virtual, host, err := r.gather(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	var namespaces translate.NamespaceLabels
	if virtual != nil && translate.UsesNamespaceLabels(virtual) {
		if namespaces, err = kube.NamespaceLabels(ctx, r.Virtual); err != nil {
			return reconcile.Result{}, err
		}
	}
	d := decideNetworkPolicy(virtual, host, namespaces, r.Gate, r.Clock.Now(), r.GracePeriod)
	for _, s := range d.steps {
		if err := r.write(ctx, s, d, virtual, host); err != nil {
			return reconcile.Result{}, err
		}
		logf.FromContext(ctx).V(1).Info("Reconciled NetworkPolicy", "step", s.String())
	}
	return reconcile.Result{RequeueAfter: d.requeue}, nil
}

// keepIsolation makes the isolation policy, or writes it back as
// translate.IsolationPolicy has it (someone edited it).
func (r *policyReconciler) keepIsolation(ctx context.Context) error {
	want := translate.IsolationPolicy(r.Config)
	current, err := getPolicy(ctx, r.Host, client.ObjectKeyFromObject(want))
	switch {
	case err != nil:
		return err
	case current == nil:
		if err := r.Host.Create(ctx, want, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("creating the isolation NetworkPolicy %s: %w", want.Name, err)
		}
		logf.FromContext(ctx).Info("Created the virtual cluster's isolation NetworkPolicy", "hostNetworkPolicy", want.Name)
	case !translate.SameHostNetworkPolicy(want, current):
		if err := r.Host.Update(ctx, translate.OverHostNetworkPolicy(want, current), client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("restoring the isolation NetworkPolicy %s: %w", want.Name, err)
		}
		countAction(actionUpdateHost)
		logf.FromContext(ctx).Info("Restored the virtual cluster's isolation NetworkPolicy", "hostNetworkPolicy", want.Name)
	}
	return nil
}

func (r *policyReconciler) write(ctx context.Context, s policyStep, d policyDecision, virtual, host *networkingv1.NetworkPolicy) error {
	log := logf.FromContext(ctx)
	switch s {
	case npDeleteOrphan:
		if host.Annotations[translate.AnnotationNamespace] != "" {
			live, err := getPolicy(ctx, r.VirtualReader, virtualKeyOf(host))
			if err != nil {
				return err
			}
			if translate.ClaimsNetworkPolicy(live, host) {
				return nil // the cache lags.
			}
		}
		if err := r.Host.Delete(ctx, host, client.Preconditions{UID: &host.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting orphan host NetworkPolicy %s: %w", host.Name, err)
		}
		countAction(actionOrphanDelete)
		log.Info("Deleted orphan host NetworkPolicy", "hostNetworkPolicy", host.Name, "syncID", host.Annotations[translate.AnnotationSyncID])
	case npDeleteVirtual:
		name := translate.HostNetworkPolicyName(virtual.Name, virtual.Namespace, r.Config.VCluster)
		live, err := getPolicy(ctx, r.HostReader, client.ObjectKey{Namespace: r.Config.HostNamespace, Name: name})
		if err != nil {
			return err
		}
		if translate.ClaimsNetworkPolicy(virtual, live) {
			return nil // the host cache lags.
		}
		if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting virtual NetworkPolicy %s/%s: %w", virtual.Namespace, virtual.Name, err)
		}
		countAction(actionDeleteVirtual)
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostNetworkPolicyGone, eventActionDeleting, "host NetworkPolicy %s is gone", name)
		log.Info("Deleted virtual NetworkPolicy: its host NetworkPolicy is gone", "networkPolicy", virtual.Namespace+"/"+virtual.Name, "hostNetworkPolicy", name)
	case npUpdateHost:
		if err := r.Host.Update(ctx, d.desired, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("updating host NetworkPolicy %s: %w", host.Name, err)
		}
		countAction(actionUpdateHost)
		log.Info("Updated host NetworkPolicy from its stored virtual NetworkPolicy", "hostNetworkPolicy", host.Name)
	case npRefused:
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostNetworkPolicyRefused, eventActionReflect, "not carried to the host: %s", d.refused.ToAggregate().Error())
		log.Info("Refused to carry a NetworkPolicy to the host", "networkPolicy", virtual.Namespace+"/"+virtual.Name, "errors", d.refused.ToAggregate().Error())
	case npNotAdmitted:
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostNetworkPolicyMissing, eventActionReflect,
			"stored without podbridge's admission (its webhook registration was away): no host NetworkPolicy enforces it; delete and create it again")
	}
	return nil
}

func getPolicy(ctx context.Context, c client.Reader, key types.NamespacedName) (*networkingv1.NetworkPolicy, error) {
	np, err := kube.GetOrNil[networkingv1.NetworkPolicy](ctx, c, key)
	if err != nil {
		return nil, fmt.Errorf("reading NetworkPolicy %s: %w", key, err)
	}
	return np, nil
}
