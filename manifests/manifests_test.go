// Package manifests holds podbridge's kustomize bases, components and
// overlays; its test checks that every overlay builds (`make manifests`).
// test/integration applies them to real apiservers with server-side dry-run.
package manifests

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podbridge/podbridge/internal/render"
	"github.com/podbridge/podbridge/webhook"
)

// TestOverlaysBuild builds every overlay and checks what a deployment of
// podbridge cannot do without.
func TestOverlaysBuild(t *testing.T) {
	overlays, err := filepath.Glob("overlays/*")
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objects, err := render.Kustomization(dir)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, o := range objects {
				kinds = append(kinds, o.GetKind()+"/"+o.GetName())
				if strings.Contains(o.GetName(), "NAMESPACE") {
					t.Errorf("%s/%s keeps a placeholder name", o.GetKind(), o.GetName())
				}
			}
			want := []string{"Deployment/podbridge-webhook", "Deployment/podbridge-reflector", "Service/podbridge-webhook", "PodDisruptionBudget/podbridge-webhook", "Role/podbridge", "ServiceAccount/podbridge"}
			if strings.HasSuffix(dir, "-virtual") {
				want = []string{"MutatingWebhookConfiguration/podbridge", "ClusterRole/podbridge", "ClusterRoleBinding/podbridge"}
			}
			for _, w := range want {
				if !slices.Contains(kinds, w) {
					t.Errorf("%s lacks %s (has %v)", dir, w, kinds)
				}
			}
		})
	}
}

// The GitOps registration registers what podbridge registers itself:
// the same webhooks, rules, failure policies and side effects.
func TestVirtualRegistrationMatchesPodbridge(t *testing.T) {
	objects, err := render.Kustomization("overlays/example-virtual")
	if err != nil {
		t.Fatal(err)
	}
	var got *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objects {
		if o.GetKind() == "MutatingWebhookConfiguration" {
			got = &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, got); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got == nil {
		t.Fatal("no MutatingWebhookConfiguration in overlays/example-virtual")
	}
	want := webhook.Registration{Name: got.Name, TimeoutSeconds: 10}.Configuration()
	if len(got.Webhooks) != len(want.Webhooks) {
		t.Fatalf("%d webhooks, podbridge registers %d", len(got.Webhooks), len(want.Webhooks))
	}
	for i, w := range want.Webhooks {
		g := got.Webhooks[i]
		if g.Name != w.Name || *g.FailurePolicy != *w.FailurePolicy || *g.SideEffects != *w.SideEffects ||
			*g.TimeoutSeconds != *w.TimeoutSeconds || !apiequality.Semantic.DeepEqual(g.Rules, w.Rules) {
			t.Errorf("webhook %d: %s failurePolicy %s sideEffects %s timeout %d rules %+v; podbridge registers %s %s %s %d %+v",
				i, g.Name, *g.FailurePolicy, *g.SideEffects, *g.TimeoutSeconds, g.Rules, w.Name, *w.FailurePolicy, *w.SideEffects, *w.TimeoutSeconds, w.Rules)
		}
		if g.ClientConfig.URL == nil || strings.Contains(*g.ClientConfig.URL, "NAMESPACE") {
			t.Errorf("webhook %s keeps the placeholder URL %v", g.Name, g.ClientConfig.URL)
		}
	}
}
