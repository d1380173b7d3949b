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

// Configuration returns the MutatingWebhookConfiguration for r: pod creates
// and updates (updates only to guard podbridge's own keys) and ephemeral
// containers, failing closed (a pod that has no host pod must not exist),
// and no side effects on dry-run requests (the host create is a dry-run too).
func (r Registration) Configuration() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pods." + r.Name + ".podbridge.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &r.URL, CABundle: r.CABundle},
			AdmissionReviewVersions: []string{"v1"},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(r.TimeoutSeconds),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			NamespaceSelector:       &metav1.LabelSelector{},
			ObjectSelector:          &metav1.LabelSelector{},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
					Scope:       ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}, {
				// Ephemeral containers are checked like the pod was.
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods/ephemeralcontainers"},
					Scope:       ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
		}},
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
