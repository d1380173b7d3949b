// Package manifests holds podbridge's kustomize bases, components and
// overlays; its test checks that every overlay builds (`make manifests`).
// test/integration applies them to real apiservers with server-side dry-run.
package manifests

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podbridge/podbridge/internal/render"
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
