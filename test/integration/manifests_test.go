package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/render"
)

// Every rendered object of every overlay passes server-side dry-run apply
// against a real apiserver: the host objects against the host (with
// cert-manager's CRDs), the virtual ones against the virtual cluster. A
// typo or a wrong field fails here.
func TestManifestsPassServerSideDryRun(t *testing.T) {
	installCertManagerCRDs(t)
	overlays, err := filepath.Glob("../../manifests/overlays/*")
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objects, err := render.Kustomization(dir)
			if err != nil {
				t.Fatal(err)
			}
			target := hostClient
			if strings.HasSuffix(dir, "-virtual") {
				target = virtualClient
			}
			for _, obj := range objects {
				if ns := obj.GetNamespace(); ns != "" {
					ensureNamespace(t, target, ns)
				}
				apply := client.ApplyConfigurationFromUnstructured(obj)
				if err := target.Apply(context.Background(), apply, client.DryRunAll, client.FieldOwner("manifests-test"), client.ForceOwnership); err != nil {
					t.Errorf("%s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
				}
			}
		})
	}
}

func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
