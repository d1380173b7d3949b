package webhook

import (
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/certs"
)

func TestRegistrationDrift(t *testing.T) {
	ca := func() []byte {
		b, err := certs.NewSelfSigned([]string{"localhost"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return b.CA
	}
	ours, previous, tenants := ca(), ca(), ca()
	reg := Registration{Name: "podbridge", URL: "https://127.0.0.1", CABundle: append(append([]byte{}, ours...), previous...), TimeoutSeconds: 10}
	want := reg.Configuration()
	cases := []struct {
		name   string
		change func(*admissionregistrationv1.MutatingWebhookConfiguration)
		drift  string // "" for none
	}{
		{"as applied", func(*admissionregistrationv1.MutatingWebhookConfiguration) {}, ""},
		{"without the previous CA", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ClientConfig.CABundle = ours
		}, ""},
		{"without podbridge's CA", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ClientConfig.CABundle = previous
		}, "pods.podbridge.podbridge.io clientConfig.caBundle"},
		{"with a CA of the tenant's", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[1].ClientConfig.CABundle = append(append([]byte{}, ours...), tenants...)
		}, "pod-updates.podbridge.podbridge.io clientConfig.caBundle"},
		{"fail open", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
		}, "pods.podbridge.podbridge.io failurePolicy"},
		{"selector", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}, "pods.podbridge.podbridge.io objectSelector"},
		{"URL", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ClientConfig.URL = ptr.To("https://tenant.example/")
		}, "pods.podbridge.podbridge.io clientConfig.url"},
		{"entry removed", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks = c.Webhooks[1:]
		}, "webhook pods.podbridge.podbridge.io removed"},
		{"create webhook pointed at the update guard's path", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ClientConfig.URL = c.Webhooks[1].ClientConfig.URL
		}, "pods.podbridge.podbridge.io clientConfig.url"},
		{"ephemeral containers sent to the create path", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[2].ClientConfig.URL = c.Webhooks[0].ClientConfig.URL
		}, "pod-ephemeralcontainers.podbridge.podbridge.io clientConfig.url"},
		{"ephemeral containers entry removed", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks = append(c.Webhooks[:2], c.Webhooks[3:]...)
		}, "webhook pod-ephemeralcontainers.podbridge.podbridge.io removed"},
		{"Service entries removed", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks = append(c.Webhooks[:3], c.Webhooks[5:]...)
		}, "webhook services.podbridge.podbridge.io removed, webhook service-updates.podbridge.podbridge.io removed"},
		{"NetworkPolicy entries removed", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks = append(c.Webhooks[:5], c.Webhooks[7:]...)
		}, "webhook networkpolicies.podbridge.podbridge.io removed, webhook networkpolicy-updates.podbridge.podbridge.io removed"},
		{"claim entries removed", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks = c.Webhooks[:7]
		}, "webhook persistentvolumeclaims.podbridge.podbridge.io removed, webhook persistentvolumeclaim-updates.podbridge.podbridge.io removed"},
		{"update guard's condition widened to skip it", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[1].MatchConditions[0].Expression = "false"
		}, "pod-updates.podbridge.podbridge.io matchConditions"},
		{"update guard's condition removed", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[1].MatchConditions = nil
		}, "pod-updates.podbridge.podbridge.io matchConditions"},
		{"entry added", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks = append(c.Webhooks, admissionregistrationv1.MutatingWebhook{Name: "x.example"})
		}, "webhook x.example added"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			current := want.DeepCopy()
			tc.change(current)
			got := strings.Join(registrationDrift(want, current, ours, reg.CABundle), ", ")
			if got != tc.drift {
				t.Errorf("drift %q, want %q", got, tc.drift)
			}
		})
	}
	if got := registrationDrift(want, nil, ours, ours); len(got) != 1 || got[0] != "configuration deleted" {
		t.Errorf("deleted: %q", got)
	}
}
