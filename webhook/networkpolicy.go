package webhook

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

var networkPolicyResource = schema.GroupResource{Group: "networking.k8s.io", Resource: "networkpolicies"}

// Requests the NetworkPolicy paths serve.
var (
	networkPolicyCreates = objectRequests{path: translate.WebhookPathNetworkPolicy, resource: "networkpolicies", kind: "NetworkPolicy", operation: admissionv1.Create}
	networkPolicyUpdates = objectRequests{path: translate.WebhookPathNetworkPolicyUpdate, resource: "networkpolicies", kind: "NetworkPolicy", operation: admissionv1.Update}
)

// networkPolicyMutator carries a tenant's NetworkPolicy to the host inside
// the tenant's request, as serviceMutator does Services: a create makes the
// host NetworkPolicy (translate.HostNetworkPolicy, through the gate:
// policy.Gate.CheckNetworkPolicy) and an update writes the change to it
// first. It serves creates at translate.WebhookPathNetworkPolicy and
// updates at translate.WebhookPathNetworkPolicyUpdate, each path only its
// own kind. The reflector checks the stored object again and translates
// it again when the virtual namespaces' labels change.
type networkPolicyMutator struct {
	Host    client.Client
	Virtual client.Client
	Config  translate.Config
	Gate    policy.Gate
	// HostTimeout bounds every host call, well inside the webhook timeout.
	HostTimeout time.Duration
	NewSyncID   func() string
	NameSuffix  func() string
	// HostPolicies admits each new host NetworkPolicy within the cap on them.
	HostPolicies *caps.HostObjects
	// Update says this handler serves updates (else creates).
	Update bool
}

var _ admission.Handler = &networkPolicyMutator{}

// Handle admits a NetworkPolicy create or update by writing the host first.
func (m *networkPolicyMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return counted(m.handle(ctx, req))
}

func (m *networkPolicyMutator) handle(ctx context.Context, req admission.Request) admission.Response {
	kind := networkPolicyCreates
	if m.Update {
		kind = networkPolicyUpdates
	}
	np, old, refused := decodeObjects[networkingv1.NetworkPolicy](kind, req)
	if refused != nil {
		return *refused
	}
	if m.Update {
		return m.update(ctx, req, old, np)
	}
	return m.create(ctx, req, np)
}

// objects writes host NetworkPolicies.
func (m *networkPolicyMutator) objects() hostObjects[networkingv1.NetworkPolicy, *networkingv1.NetworkPolicy] {
	return hostObjects[networkingv1.NetworkPolicy, *networkingv1.NetworkPolicy]{
		Host: m.Host, Virtual: m.Virtual, Config: m.Config, Resource: networkPolicyResource, Kind: "NetworkPolicy", Cap: m.HostPolicies,
	}
}

func (m *networkPolicyMutator) create(ctx context.Context, req admission.Request, np *networkingv1.NetworkPolicy) admission.Response {
	hadAnnotations := len(np.Annotations) > 0
	nameGenerated, nameErr := nameFromGenerateName(np, m.NameSuffix)
	if nameErr != nil {
		return invalidPolicy(np, nameErr)
	}
	mode := writeModeOf(req)
	log := logf.FromContext(ctx).WithValues("networkPolicy", np.Namespace+"/"+np.Name, "dryRun", mode == dryRun)
	syncID, reinvoked := np.Annotations[translate.AnnotationSyncID]
	if !reinvoked {
		syncID = m.NewSyncID()
	}
	hostCtx, cancel := context.WithTimeout(ctx, m.HostTimeout)
	defer cancel()
	host, resp := m.translate(hostCtx, np, syncID)
	if host == nil {
		return resp
	}
	var current *networkingv1.NetworkPolicy
	if reinvoked {
		existing, err := m.objects().reinvoked(hostCtx, np.Name, host.Name, syncID)
		if err != nil {
			return m.objects().hostError(err, np.Name, host.Name)
		}
		current = existing
	}
	if errs := m.Gate.CheckNetworkPolicy(np, host); len(errs) > 0 {
		log.Info("Refused NetworkPolicy: the host-side gate", "errors", errs.ToAggregate().Error())
		return invalidPolicy(np, errs...)
	}
	var patch []jsonpatch.JsonPatchOperation
	if nameGenerated {
		patch = append(patch, jsonpatch.NewOperation("add", "/metadata/name", np.Name))
	}
	if current == nil {
		created, refused := m.objects().createWithinCap(hostCtx, log, req, np.Name, host, mode)
		if refused != nil {
			return *refused
		}
		syncID = created.Annotations[translate.AnnotationSyncID]
		log.V(1).Info("Created host NetworkPolicy", "hostNetworkPolicy", host.Name, "syncID", syncID)
	}
	keys := map[string]string{translate.AnnotationSyncID: syncID, translate.AnnotationHostName: host.Name}
	return admission.Patched("", append(patch, addKeys("annotations", hadAnnotations, keys)...)...)
}

// update carries an update of a tenant's NetworkPolicy to its host
// NetworkPolicy before the virtual one is stored.
func (m *networkPolicyMutator) update(ctx context.Context, req admission.Request, old, np *networkingv1.NetworkPolicy) admission.Response {
	mode := writeModeOf(req)
	log := logf.FromContext(ctx).WithValues("networkPolicy", np.Namespace+"/"+np.Name, "dryRun", mode == dryRun)
	patch, forged := keepSyncKeys(old, np)
	if forged != nil {
		return invalidPolicy(np, forged)
	}
	syncID := old.Annotations[translate.AnnotationSyncID]
	if syncID == "" {
		// Stored while podbridge's registration was away: it has no host
		// NetworkPolicy (the reflector warns); recreate it to carry it.
		log.Info("Admitted an update of a NetworkPolicy podbridge never admitted: nothing written to the host")
		return admission.Patched("", patch...)
	}
	hostCtx, cancel := context.WithTimeout(ctx, m.HostTimeout)
	defer cancel()
	desired, resp := m.translate(hostCtx, np, syncID)
	if desired == nil {
		return resp
	}
	current, err := m.objects().current(hostCtx, np.Name, desired.Name, syncID)
	if err != nil {
		return m.objects().hostError(err, np.Name, desired.Name)
	}
	if errs := m.Gate.CheckNetworkPolicy(np, desired); len(errs) > 0 {
		log.Info("Refused NetworkPolicy update: the host-side gate", "errors", errs.ToAggregate().Error())
		return invalidPolicy(np, errs...)
	}
	if current == nil {
		// Its host NetworkPolicy is gone: the reflector carries that
		// deletion to the virtual one; an update cannot bring it back.
		return m.objects().hostError(apierrors.NewNotFound(networkPolicyResource, np.Name), np.Name, desired.Name)
	}
	if _, err := m.objects().update(hostCtx, np.Name, current, desired, mode, translate.SameHostNetworkPolicy, translate.OverHostNetworkPolicy); err != nil {
		log.Info("Refused NetworkPolicy update: host NetworkPolicy not updated", "hostNetworkPolicy", desired.Name, "error", err.Error())
		return m.objects().hostError(err, np.Name, desired.Name)
	}
	log.V(1).Info("Updated host NetworkPolicy", "hostNetworkPolicy", desired.Name)
	return admission.Patched("", patch...)
}

// translate is np's host NetworkPolicy, with the virtual namespaces'
// labels read now when its namespaceSelectors need them; nil and the
// answer to give when it has none.
func (m *networkPolicyMutator) translate(ctx context.Context, np *networkingv1.NetworkPolicy, syncID string) (*networkingv1.NetworkPolicy, admission.Response) {
	var namespaces translate.NamespaceLabels
	if translate.UsesNamespaceLabels(np) {
		var err error
		if namespaces, err = kube.NamespaceLabels(ctx, m.Virtual); err != nil {
			return nil, deny(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
				fmt.Sprintf("NetworkPolicy %q not written: its namespaceSelector needs the namespaces' labels, retry later: %v", np.Name, err))
		}
	}
	host, errs := translate.HostNetworkPolicy(np, m.Config, syncID, namespaces)
	if len(errs) > 0 {
		return nil, invalidPolicy(np, errs...)
	}
	return host, admission.Response{}
}

func invalidPolicy(np *networkingv1.NetworkPolicy, errs ...*field.Error) admission.Response {
	return invalidObject("NetworkPolicy", np.Name, errs)
}
