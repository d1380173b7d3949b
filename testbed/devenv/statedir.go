package devenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-logr/logr"

	"github.com/podbridge/podbridge/testbed/realnode"
)

// stateLockName is the file in a state folder that its `podbridge-dev`
// holds locked while it runs, and that marks the folder as one podbridge
// may remove.
const stateLockName = "dev.lock"

// ClaimStateDir makes dir the state folder of this process, which holds it
// until release. A folder another running process holds is refused, naming
// it; a folder a killed run left (its lock free) is cleared first, after
// undoing what a real node of that run left, whose mounts are in it. A
// folder without the lock file is not podbridge's and is never removed.
func ClaimStateDir(dir string, log logr.Logger) (release func(), err error) {
	if err := clearLeftover(dir, log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating --state-dir %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, stateLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating the lock of --state-dir %s: %w", dir, err)
	}
	// Two starts racing for a new folder both get here: one lock wins.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("--state-dir %s: %w", dir, heldBy(lock.Name()))
	}
	if _, err := fmt.Fprintf(lock, "%d\n", os.Getpid()); err != nil {
		lock.Close()
		return nil, fmt.Errorf("writing the lock of --state-dir %s: %w", dir, err)
	}
	return func() { lock.Close() }, nil
}

// clearLeftover removes dir when it is the state folder of a podbridge-dev
// that no longer runs.
func clearLeftover(dir string, log logr.Logger) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	lock, err := os.Open(filepath.Join(dir, stateLockName))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--state-dir %s exists and is not a podbridge-dev state folder (no %s): choose another, or remove it", dir, stateLockName)
	}
	if err != nil {
		return fmt.Errorf("opening the lock of --state-dir %s: %w", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("--state-dir %s: %w", dir, heldBy(lock.Name()))
	}
	log.Info("Clearing the state folder of a podbridge-dev that was killed", "stateDir", dir)
	if err := realnode.SweepLeftovers(log.WithName("realnode"), dir); err != nil {
		return fmt.Errorf("undoing what the killed run's real node left: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing --state-dir %s, left by a podbridge-dev that was killed: %w", dir, err)
	}
	return nil
}

// heldBy says which process holds a state folder's lock.
func heldBy(lock string) error {
	b, _ := os.ReadFile(lock)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return errors.New("another podbridge-dev is using it")
	}
	return fmt.Errorf("another podbridge-dev (pid %d) is using it", pid)
}
