package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// KubernetesVersion is the version `make k8s-bins` builds; it names the
// folder under bin/k8s.
const KubernetesVersion = "v1.37.2"

// Assets finds the control-plane binaries: first in KUBEBUILDER_ASSETS (a
// user's own binaries), then in dir.
type Assets struct {
	dirs []string
}

// NewAssets looks in KUBEBUILDER_ASSETS, then in dir.
func NewAssets(dir string) Assets {
	var dirs []string
	if env := os.Getenv("KUBEBUILDER_ASSETS"); env != "" {
		dirs = append(dirs, env)
	}
	return Assets{dirs: append(dirs, dir)}
}

// DefaultAssets looks in KUBEBUILDER_ASSETS, then in bin/k8s/<version> of
// the podbridge checkout that holds the working directory.
func DefaultAssets() (Assets, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Assets{}, err
	}
	return NewAssets(filepath.Join(root, "bin", "k8s", KubernetesVersion)), nil
}

// Path returns the path of binary name.
func (a Assets) Path(name string) (string, error) {
	for _, dir := range a.dirs {
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err == nil && !info.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %v: run `make k8s-bins`", name, a.dirs)
}

// ModuleRoot walks up from the working directory to the folder with go.mod:
// podbridge's checkout, where bin/ and its tools live.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the podbridge checkout, or set KUBEBUILDER_ASSETS to the control-plane binaries")
		}
		dir = parent
	}
}

// BuildPodbridge builds cmd/podbridge into binary the way `make build`
// does, for the bench and the fault tests, which run the webhook and the
// reflector as processes of their own.
func BuildPodbridge(ctx context.Context, binary string) error {
	return Build(ctx, "./cmd/podbridge", binary)
}

// Build builds the command pkg (a path in the checkout, as ./cmd/podbridge-dev)
// into binary the way the Makefile does.
func Build(ctx context.Context, pkg, binary string) error {
	return build(ctx, pkg, binary, false)
}

// BuildWithRace builds the command pkg into binary with the race
// detector, as `go test -race` builds (cgo, no -trimpath, so the packages
// come from the build cache the tests' own build filled).
func BuildWithRace(ctx context.Context, pkg, binary string) error {
	return build(ctx, pkg, binary, true)
}

func build(ctx context.Context, pkg, binary string, race bool) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(binary), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(binary), err)
	}
	args, env := []string{"build", "-trimpath", "-o", binary, pkg}, append(os.Environ(), "CGO_ENABLED=0")
	if race {
		args, env = []string{"build", "-race", "-o", binary, pkg}, os.Environ()
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = root, env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", pkg, err, out)
	}
	return nil
}
