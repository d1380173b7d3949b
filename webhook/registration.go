package webhook

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Registration describes podbridge's MutatingWebhookConfiguration in the
// virtual cluster.
type Registration struct {
	// Name of the configuration and prefix of its webhook's name.
	Name string
	// URL reaches the webhook server from the virtual apiserver.
	URL string
	// CABundle verifies the webhook server's certificate.
	CABundle []byte
	// TimeoutSeconds is how long the virtual apiserver waits for an answer.
	TimeoutSeconds int32
}

// Configuration returns the MutatingWebhookConfiguration for r, all at
// the same URL, with no side effects on dry-run requests (the host create
// is a dry run too):
//   - pod creates and ephemeral containers fail closed: a pod with no host
//     pod, or an unchecked container on the host, must not exist;
//   - pod updates, checked only so that podbridge's own keys stay as it set
//     them, fail open: a forged key harms only the pod's own pairing, and
//     the tenant's controllers (label changes, adoption) keep working while
//     the webhook is away.
func (r Registration) Configuration() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			r.webhook("pods", admissionregistrationv1.Fail, podRule(admissionregistrationv1.Create, "pods"), podRule(admissionregistrationv1.Update, "pods/ephemeralcontainers")),
			r.webhook("pod-updates", admissionregistrationv1.Ignore, podRule(admissionregistrationv1.Update, "pods")),
		},
	}
}

func (r Registration) webhook(name string, failure admissionregistrationv1.FailurePolicyType, rules ...admissionregistrationv1.RuleWithOperations) admissionregistrationv1.MutatingWebhook {
	return admissionregistrationv1.MutatingWebhook{
		Name:                    name + "." + r.Name + ".podbridge.io",
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &r.URL, CABundle: r.CABundle},
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

func podRule(operation admissionregistrationv1.OperationType, resource string) admissionregistrationv1.RuleWithOperations {
	return admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{operation},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{""},
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

// InjectCABundle sets the CA bundle of every webhook of an existing
// configuration, for users who apply the configuration themselves.
func InjectCABundle(ctx context.Context, virtual client.Client, name string, caBundle []byte) error {
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
