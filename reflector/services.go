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
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// Reasons of the reflector's events on virtual Services.
const (
	ReasonHostServiceRefused = "HostServiceRefused"
	ReasonHostServiceGone    = "HostServiceGone"
	// ReasonHostServiceMissing: a Service stored without podbridge's
	// admission (its registration was away) has no host Service.
	ReasonHostServiceMissing = "HostServiceMissing"
	// ReasonHostServiceAddressDiffers: the stored virtual Service's
	// ClusterIP is not its host Service's (a tenant webhook after
	// podbridge's changed it); the address means another Service, or
	// none, on the host.
	ReasonHostServiceAddressDiffers = "HostServiceAddressDiffers"
	// ReasonKubernetesServiceAddress: default/kubernetes does not hold the
	// platform's address for it (translate.Config.KubernetesServiceIP)
	// and is deleted, for the virtual apiserver to make it again through
	// podbridge's webhook.
	ReasonKubernetesServiceAddress = "KubernetesServiceAddress"
)

// serviceStepKind is one write the Service reconciler decides.
type serviceStepKind int

const (
	// svcDeleteOrphan deletes a host Service no stored virtual Service
	// claims, once the virtual apiserver confirms it.
	svcDeleteOrphan serviceStepKind = iota
	// svcDeleteHost deletes the claimed host Service of a virtual Service
	// that needs none (it became ExternalName while podbridge was away).
	svcDeleteHost
	// svcDeleteVirtual deletes a virtual Service whose host Service is
	// gone, once a live host read confirms it: deletion carried upward.
	svcDeleteVirtual
	// svcUpdateHost writes the stored virtual Service's translation over
	// its host Service (a change the webhook did not see).
	svcUpdateHost
	// svcRefused records that the stored virtual Service fails the gate:
	// nothing is written to the host.
	svcRefused
	// svcStatus copies the host's load-balancer status to the virtual Service.
	svcStatus
	// svcNotAdmitted records that a virtual Service podbridge never
	// admitted has no host Service: nothing is written to the host.
	svcNotAdmitted
	// svcAddressDiffers records that the virtual Service's ClusterIP is
	// not its host Service's: nothing can change either (immutable).
	svcAddressDiffers
	// svcRecreateKubernetes deletes default/kubernetes, whose ClusterIP is
	// not the platform's address for it (made before podbridge's webhook
	// was registered, or while it was away): the virtual apiserver makes
	// it again within seconds, through the webhook, which pins the address.
	svcRecreateKubernetes
)

func (k serviceStepKind) String() string {
	return [...]string{"DeleteOrphan", "DeleteHost", "DeleteVirtual", "UpdateHost", "Refused", "Status", "NotAdmitted", "AddressDiffers", "RecreateKubernetes"}[k]
}

// serviceDecision is what the Service reconciler writes for one key.
type serviceDecision struct {
	steps []serviceStepKind
	// desired is the host Service to write (svcUpdateHost).
	desired *corev1.Service
	// refused are the gate's errors (svcRefused).
	refused field.ErrorList
	// requeue is when to look again (an unclaimed host Service too young
	// to be an orphan).
	requeue time.Duration
}

// decideService is the Service reconciler's whole decision for one virtual
// Service key, a pure function of what was gathered: the virtual Service
// (nil: not stored) and the host Service of its name (nil: none).
//   - A host Service no stored virtual Service claims is an orphan once
//     older than the grace period (a create may still be in admission
//     before); a deleted virtual Service's host Service is one at once.
//   - A claimed host Service follows the stored virtual Service, through
//     the gate: what the webhook did not see (the tenant's own webhooks
//     after podbridge's, a registration the tenant removed) is carried or
//     refused here, never written unchecked.
//   - A virtual Service podbridge admitted whose host Service is gone is
//     deleted: deletion carried upward.
//   - default/kubernetes, the virtual apiserver's own, has no host Service;
//     one whose ClusterIP is not the platform's address for it is
//     deleted, for the apiserver to make it again through the webhook.
//   - A virtual Service podbridge never admitted (no sync ID: stored while
//     its registration was away) gets no host Service, only an event:
//     its ClusterIP is the virtual apiserver's own, which the host may
//     have given another Service, and the tenant recreates it.
func decideService(virtual, host *corev1.Service, gate policy.Gate, now time.Time, grace time.Duration) serviceDecision {
	var d serviceDecision
	claimed := translate.ClaimsService(virtual, host)
	if host != nil && !claimed {
		if host.DeletionTimestamp != nil {
			return d
		}
		if wait := translate.OrphanWait(host, now, grace); wait > 0 {
			d.requeue = wait
		} else {
			d.steps = append(d.steps, svcDeleteOrphan)
		}
	}
	if virtual == nil || virtual.DeletionTimestamp != nil {
		return d
	}
	if translate.IsKubernetesService(virtual) {
		if ip := gate.Config.KubernetesServiceIP; ip != "" && virtual.Spec.ClusterIP != ip {
			d.steps = append(d.steps, svcRecreateKubernetes)
		}
		return d
	}
	if virtual.Annotations[translate.AnnotationSyncID] == "" {
		if translate.NeedsHostService(virtual) {
			d.steps = append(d.steps, svcNotAdmitted)
		}
		return d
	}
	if !translate.NeedsHostService(virtual) {
		switch {
		case !claimed || host.DeletionTimestamp != nil:
		case webhookWrote(host, now, grace):
			// Made by an update from ExternalName this cache may not show yet.
			d.requeue = grace
		default:
			d.steps = append(d.steps, svcDeleteHost)
		}
		return d
	}
	if !claimed {
		d.steps = append(d.steps, svcDeleteVirtual)
		return d
	}
	if host.DeletionTimestamp != nil {
		return d
	}
	desired, errs := translate.HostService(virtual, gate.Config, virtual.Annotations[translate.AnnotationSyncID])
	if len(errs) == 0 {
		errs = gate.CheckService(virtual, host, desired)
	}
	switch {
	case len(errs) > 0:
		d.steps, d.refused = append(d.steps, svcRefused), errs
	case translate.SameHostService(desired, host):
	case webhookWrote(host, now, grace):
		// The webhook wrote it within the grace period: the update it
		// carried may not be stored yet (the tenant's own admission runs
		// after podbridge's), or this cache not show it yet. Writing the
		// stored Service now could undo that update; look again later.
		d.requeue = grace
	default:
		d.steps, d.desired = append(d.steps, svcUpdateHost), translate.OverHostService(desired, host)
	}
	if virtual.Spec.ClusterIP != host.Spec.ClusterIP {
		d.steps = append(d.steps, svcAddressDiffers)
	}
	if !apiequality.Semantic.DeepEqual(virtual.Status.LoadBalancer, host.Status.LoadBalancer) {
		d.steps = append(d.steps, svcStatus)
	}
	return d
}

// webhookWrote reports whether podbridge's webhook wrote host (a Service,
// a claim, a NetworkPolicy) within the grace period, by the host
// apiserver's clock (its managed fields; second resolution, so the age
// counts from the latest instant it may stand for).
func webhookWrote(host metav1.Object, now time.Time, grace time.Duration) bool {
	for _, m := range host.GetManagedFields() {
		if m.Manager == translate.FieldManagerWebhook && m.Time != nil && now.Sub(m.Time.Time)-time.Second < grace {
			return true
		}
	}
	return false
}

// serviceReconciler keeps each virtual Service and its host Service one
// (decideService).
type serviceReconciler struct {
	objectPairs[corev1.Service, *corev1.Service]
}

func newServiceReconciler(deps pairDeps) *serviceReconciler {
	return &serviceReconciler{newObjectPairs(deps, "Services", func() client.ObjectList { return &corev1.ServiceList{} }, translate.HostServiceName, getService)}
}

// SetupWithManager registers the controller: events of either Service
// enqueue the virtual key, and a full pass covers both caches.
func (r *serviceReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	return r.controller(mgr, virtual, concurrency, resync, r.pairKeys).Complete(r)
}

// Reconcile gathers the Service pair of one key, decides, and writes.
func (r *serviceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	virtual, host, err := r.gather(ctx, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	d := decideService(virtual, host, r.Gate, r.Clock.Now(), r.GracePeriod)
	log := logf.FromContext(ctx)
	for _, s := range d.steps {
		if err := r.write(ctx, s, d, virtual, host); err != nil {
			return reconcile.Result{}, err
		}
		log.V(1).Info("Reconciled Service", "step", s.String())
	}
	return reconcile.Result{RequeueAfter: d.requeue}, nil
}

func (r *serviceReconciler) write(ctx context.Context, s serviceStepKind, d serviceDecision, virtual, host *corev1.Service) error {
	log := logf.FromContext(ctx)
	switch s {
	case svcDeleteOrphan:
		if host.Annotations[translate.AnnotationNamespace] != "" {
			live, err := getService(ctx, r.VirtualReader, virtualKeyOf(host))
			if err != nil {
				return err
			}
			if translate.ClaimsService(live, host) {
				return nil // the cache lags; the virtual Service's event is on its way.
			}
		}
		if err := r.Host.Delete(ctx, host, client.Preconditions{UID: &host.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting orphan host Service %s: %w", host.Name, err)
		}
		countAction(actionOrphanDelete)
		log.Info("Deleted orphan host Service", "hostService", host.Name, "syncID", host.Annotations[translate.AnnotationSyncID])
	case svcDeleteHost:
		if err := r.Host.Delete(ctx, host, client.Preconditions{UID: &host.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting host Service %s: %w", host.Name, err)
		}
		countAction(actionDeleteHost)
		log.Info("Deleted host Service of an ExternalName Service", "hostService", host.Name)
	case svcDeleteVirtual:
		name := translate.HostServiceName(virtual.Name, virtual.Namespace, r.Config.VCluster)
		live, err := getService(ctx, r.HostReader, client.ObjectKey{Namespace: r.Config.HostNamespace, Name: name})
		if err != nil {
			return err
		}
		if translate.ClaimsService(virtual, live) {
			return nil // the host cache lags.
		}
		if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting virtual Service %s/%s: %w", virtual.Namespace, virtual.Name, err)
		}
		countAction(actionDeleteVirtual)
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostServiceGone, eventActionDeleting, "host Service %s is gone", name)
		log.Info("Deleted virtual Service: its host Service is gone", "service", virtual.Namespace+"/"+virtual.Name, "hostService", name)
	case svcUpdateHost:
		if err := r.Host.Update(ctx, d.desired, client.FieldOwner(FieldManager)); err != nil {
			if apierrors.IsConflict(err) {
				return fmt.Errorf("updating host Service %s (retried): %w", host.Name, err)
			}
			return fmt.Errorf("updating host Service %s: %w", host.Name, err)
		}
		countAction(actionUpdateHost)
		log.Info("Updated host Service from its stored virtual Service", "hostService", host.Name)
	case svcRefused:
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostServiceRefused, eventActionReflect, "not carried to the host: %s", d.refused.ToAggregate().Error())
		log.Info("Refused to carry a Service to the host", "service", virtual.Namespace+"/"+virtual.Name, "errors", d.refused.ToAggregate().Error())
	case svcNotAdmitted:
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostServiceMissing, eventActionReflect,
			"stored without podbridge's admission (its webhook registration was away): no host Service; delete and create it again")
	case svcAddressDiffers:
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonHostServiceAddressDiffers, eventActionReflect,
			"ClusterIP %s is not the host Service's %s (changed after podbridge's admission): on the host it means another Service or none; delete and create the Service again",
			virtual.Spec.ClusterIP, host.Spec.ClusterIP)
	case svcRecreateKubernetes:
		if err := r.Virtual.Delete(ctx, virtual, client.Preconditions{UID: &virtual.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting default/kubernetes to have its address pinned: %w", err)
		}
		countAction(actionDeleteVirtual)
		r.Recorder.Eventf(virtual, nil, corev1.EventTypeWarning, ReasonKubernetesServiceAddress, eventActionDeleting,
			"ClusterIP %s is not the virtual apiserver's host Service %s: deleted for the apiserver to make it again through podbridge's webhook", virtual.Spec.ClusterIP, r.Config.KubernetesServiceIP)
		log.Info("Deleted default/kubernetes: its ClusterIP is not the platform's", "clusterIP", virtual.Spec.ClusterIP, "want", r.Config.KubernetesServiceIP)
	case svcStatus:
		updated := virtual.DeepCopy()
		updated.Status.LoadBalancer = *host.Status.LoadBalancer.DeepCopy()
		if err := r.Virtual.Status().Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("copying load-balancer status to virtual Service %s/%s: %w", virtual.Namespace, virtual.Name, err)
		}
		countAction(actionStatusUpdate)
	}
	return nil
}

func getService(ctx context.Context, c client.Reader, key types.NamespacedName) (*corev1.Service, error) {
	s, err := kube.GetOrNil[corev1.Service](ctx, c, key)
	if err != nil {
		return nil, fmt.Errorf("reading Service %s: %w", key, err)
	}
	return s, nil
}
