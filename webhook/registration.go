package webhook

import (
	"context"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// Registration describes podbridge's MutatingWebhookConfiguration in the
// virtual cluster.
type Registration struct {
	// Name of the configuration and prefix of its webhook's name.
	Name string
	// URL reaches the webhook server from the virtual apiserver: scheme,
	// host, port and any path prefix. Each webhook gets its own path after
	// it; a URL that ends in translate.WebhookPath (the one path there was
	// before each kind of request had its own) is read without it.
	URL string
	// CABundle verifies the webhook server's certificate.
	CABundle []byte
	// TimeoutSeconds is how long the virtual apiserver waits for an answer.
	TimeoutSeconds int32
}

// Configuration returns the MutatingWebhookConfiguration for r: one
// webhook per kind of pod request, each at its own path (its handler
// refuses every other kind), all with no side effects on dry-run requests
// (the host create is a dry run too):
//   - pod creates fail closed: a pod with no host pod must not exist;
//   - ephemeral containers fail closed: an unchecked container must not
//     reach the host pod;
//   - pod updates, checked only so that podbridge's own keys stay as it set
//     them, fail open: a forged key harms only the pod's own pairing, and
//     the tenant's controllers (label changes, adoption) keep working while
//     the webhook is away.
//
// Service, NetworkPolicy and PersistentVolumeClaim creates and updates
// fail closed too: each writes the host object before the virtual one is
// stored (see serviceMutator, networkPolicyMutator, claimMutator), and one
// stored without podbridge has no host object, or a host object that no
// longer matches it (a resize the host never saw).
//
// The update and ephemeral-container checks change nothing and could be a
// ValidatingWebhookConfiguration; they stay in this one object so that one
// keeper watches, restores and injects the CA into one object, with the
// RBAC it has, and a GitOps user applies one object. A validating webhook
// would see the pod after the tenant's own mutating webhooks; that matters
// little here: the reflector applies the host-side gate to ephemeral
// containers again before it adds them to the host pod, and the update
// guard fails open anyway.
func (r Registration) Configuration() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			r.webhook("pods", translate.WebhookPath, admissionregistrationv1.Fail, rule(admissionregistrationv1.Create, "", "pods")),
			when(podUpdateMatchConditions(), r.webhook("pod-updates", translate.WebhookPathPodUpdate, admissionregistrationv1.Ignore, rule(admissionregistrationv1.Update, "", "pods"))),
			r.webhook("pod-ephemeralcontainers", translate.WebhookPathEphemeralContainers, admissionregistrationv1.Fail, rule(admissionregistrationv1.Update, "", "pods/ephemeralcontainers")),
			r.webhook("services", translate.WebhookPathService, admissionregistrationv1.Fail, rule(admissionregistrationv1.Create, "", "services")),
			r.webhook("service-updates", translate.WebhookPathServiceUpdate, admissionregistrationv1.Fail, rule(admissionregistrationv1.Update, "", "services")),
			r.webhook("networkpolicies", translate.WebhookPathNetworkPolicy, admissionregistrationv1.Fail, rule(admissionregistrationv1.Create, "networking.k8s.io", "networkpolicies")),
			r.webhook("networkpolicy-updates", translate.WebhookPathNetworkPolicyUpdate, admissionregistrationv1.Fail, rule(admissionregistrationv1.Update, "networking.k8s.io", "networkpolicies")),
			r.webhook("persistentvolumeclaims", translate.WebhookPathClaim, admissionregistrationv1.Fail, rule(admissionregistrationv1.Create, "", "persistentvolumeclaims")),
			r.webhook("persistentvolumeclaim-updates", translate.WebhookPathClaimUpdate, admissionregistrationv1.Fail, rule(admissionregistrationv1.Update, "", "persistentvolumeclaims")),
		},
	}
}

// serverURL is r.URL without a trailing translate.WebhookPath or slash:
// the URL the webhooks' paths follow.
func (r Registration) serverURL() string {
	return strings.TrimRight(strings.TrimSuffix(r.URL, translate.WebhookPath), "/")
}

func (r Registration) webhook(name, path string, failure admissionregistrationv1.FailurePolicyType, rules ...admissionregistrationv1.RuleWithOperations) admissionregistrationv1.MutatingWebhook {
	url := r.serverURL() + path
	return admissionregistrationv1.MutatingWebhook{
		Name:                    name + "." + r.Name + ".podbridge.io",
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: r.CABundle},
		AdmissionReviewVersions: []string{"v1"},
		FailurePolicy:           ptr.To(failure),
		SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
		TimeoutSeconds:          ptr.To(r.TimeoutSeconds),
		MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
		ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
		NamespaceSelector:       &metav1.LabelSelector{},
		ObjectSelector:          &metav1.LabelSelector{},
		Rules:                   rules,
	}
}

// podUpdateMatchConditions spare the update guard the pod updates it has
// nothing to check in (issue 25): it looks only at labels and annotations
// with podbridge's prefix, and at the managed-by label. The condition is
// true, and the virtual apiserver calls the guard, when an update sets,
// changes or drops such a key, or gives the managed-by label podbridge's
// value: exactly the updates translate.ValidateMetadataUpdate and
// translate.DroppedReserved act on. Every term is guarded by has(), so no
// content of the tenant's makes it fail (a failing condition would apply
// the guard's failure policy, Ignore). The keeper restores a condition the
// tenant edits, as any other field of podbridge's webhooks.
func podUpdateMatchConditions() []admissionregistrationv1.MatchCondition {
	reserved := func(field string) string {
		m, o := "object.metadata."+field, "oldObject.metadata."+field
		return fmt.Sprintf("(has(%[1]s) && %[1]s.exists(k, k.startsWith(%[3]q) && !(has(%[2]s) && k in %[2]s && %[2]s[k] == %[1]s[k])))"+
			" || (has(%[2]s) && %[2]s.exists(k, k.startsWith(%[3]q) && !(has(%[1]s) && k in %[1]s)))", m, o, translate.Prefix)
	}
	claims := func(obj string) string {
		labels := obj + ".metadata.labels"
		return fmt.Sprintf("(has(%[1]s) && %[2]q in %[1]s && %[1]s[%[2]q] == %[3]q)", labels, translate.LabelManagedBy, translate.ManagedByValue)
	}
	return []admissionregistrationv1.MatchCondition{{
		Name: "podbridge-keys",
		Expression: strings.Join([]string{
			reserved("labels"), reserved("annotations"),
			claims("object") + " && !" + claims("oldObject"),
		}, " || "),
	}}
}

// when returns w called only when conditions hold.
func when(conditions []admissionregistrationv1.MatchCondition, w admissionregistrationv1.MutatingWebhook) admissionregistrationv1.MutatingWebhook {
	w.MatchConditions = conditions
	return w
}

func rule(operation admissionregistrationv1.OperationType, group, resource string) admissionregistrationv1.RuleWithOperations {
	return admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{operation},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{group},
			APIVersions: []string{"v1"},
			Resources:   []string{resource},
			Scope:       ptr.To(admissionregistrationv1.NamespacedScope),
		},
	}
}

// Register creates or updates the configuration in the virtual cluster with
// server-side apply, so fields other managers own are left alone.
func Register(ctx context.Context, virtual client.Client, r Registration) error {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(r.Configuration())
	if err != nil {
		return fmt.Errorf("converting MutatingWebhookConfiguration %s: %w", r.Name, err)
	}
	apply := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: obj})
	if err := virtual.Apply(ctx, apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying MutatingWebhookConfiguration %s: %w", r.Name, err)
	}
	return nil
}

// injectCABundle sets the CA bundle of every webhook of an existing
// configuration, for users who apply the configuration themselves.
func injectCABundle(ctx context.Context, virtual client.Client, name string, caBundle []byte) error {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtual.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", name, err)
	}
	patch := client.MergeFromWithOptions(cfg.DeepCopy(), client.MergeFromWithOptimisticLock{})
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig.CABundle = caBundle
	}
	if err := virtual.Patch(ctx, cfg, patch); err != nil {
		return fmt.Errorf("injecting CA bundle into MutatingWebhookConfiguration %s: %w", name, err)
	}
	return nil
}
