package devenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func claim(t *testing.T, dir string) func() {
	t.Helper()
	release, err := ClaimStateDir(dir, logr.Discard())
	if err != nil {
		t.Fatalf("claiming %s: %v", dir, err)
	}
	return release
}

// `podbridge-dev` after one that was killed starts in the same folder: the
// killed run's files are cleared, and the folder is held again.
func TestClaimStateDirClearsAKilledRunsFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "dev")
	release := claim(t, dir)
	writeFile(t, filepath.Join(dir, "logs", "host-kube-apiserver.log"), "the killed run's log")
	release() // as the kernel does when the holder is killed

	defer claim(t, dir)()
	if _, err := os.Stat(filepath.Join(dir, "logs")); !os.IsNotExist(err) {
		t.Errorf("the killed run's files are still there: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, stateLockName))
	if err != nil || string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Errorf("the lock says %q (%v), want this process's pid", b, err)
	}
}

// A folder a running `podbridge-dev` holds, or one podbridge did not make,
// is refused with the reason, and left as it is.
func TestClaimStateDirRefusesFoldersItMustNotClear(t *testing.T) {
	held := filepath.Join(t.TempDir(), "held")
	defer claim(t, held)()
	writeFile(t, filepath.Join(held, "virtual.kubeconfig"), "in use")

	foreign := filepath.Join(t.TempDir(), "foreign")
	writeFile(t, filepath.Join(foreign, "notes.txt"), "someone's")

	for _, tc := range []struct {
		dir, kept, want string
	}{
		{held, "virtual.kubeconfig", fmt.Sprintf("another podbridge-dev (pid %d) is using it", os.Getpid())},
		{foreign, "notes.txt", "is not a podbridge-dev state folder (no dev.lock)"},
	} {
		release, err := ClaimStateDir(tc.dir, logr.Discard())
		if err == nil {
			release()
			t.Errorf("%s claimed, want refused", tc.dir)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.dir) {
			t.Errorf("refusal %q, want it to name %s and say %q", err, tc.dir, tc.want)
		}
		if _, err := os.Stat(filepath.Join(tc.dir, tc.kept)); err != nil {
			t.Errorf("a refused claim touched %s: %v", tc.dir, err)
		}
	}
}
