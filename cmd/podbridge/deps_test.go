package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// testBedPackages are import path prefixes of the test bed: podbridge's
// own (control planes, dev environment, real node, child processes,
// metrics scraping, waits) and envtest, which starts etcd and apiservers.
var testBedPackages = []string{
	"github.com/podbridge/podbridge/testbed/",
	"github.com/podbridge/podbridge/cmd/podbridge-dev",
	"sigs.k8s.io/controller-runtime/pkg/envtest",
}

// The production binary links none of the test bed: podbridge-dev is a
// command of its own, and nothing cmd/podbridge imports, however
// indirectly, reaches into testbed/.
func TestProductionBinaryLinksNoTestBed(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	// As `make build` and the Dockerfile build it.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 || !slices.Contains(deps, "github.com/podbridge/podbridge/webhook") {
		t.Fatalf("go list -deps listed %d packages without the webhook: not the production binary's dependencies", len(deps))
	}
	for _, dep := range deps {
		for _, prefix := range testBedPackages {
			if strings.HasPrefix(dep, prefix) {
				t.Errorf("cmd/podbridge links test-bed package %s", dep)
			}
		}
	}
}
