//go:build reliability

package reliability

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/devenv"
)

var (
	// podbridgeBinary is cmd/podbridge, built once for the whole run.
	podbridgeBinary string
	// assets are the control-plane binaries `make k8s-bins` built.
	assets controlplane.Assets
	// runDir keeps the summary of the run, and the state (logs included)
	// of every test that failed.
	runDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests' own control-plane helpers log through controller-runtime;
	// keep them to warnings (podbridge's processes log to their own files).
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.WarnLevel)))
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if runDir, err = os.MkdirTemp("", "podbridge-reliability-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if assets, err = controlplane.DefaultAssets(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok"} {
		if _, err := assets.Path(name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Built where the other suites build theirs (under bin/, which may
	// run programs where /tmp may not) and removed when the run ends:
	// runDir keeps only the summary and failed tests' state.
	binary, removeBinary, err := devenv.BuildPodbridge(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer removeBinary()
	podbridgeBinary = binary
	code := m.Run()
	if err := writeSummary(os.Stdout, runDir); err != nil {
		fmt.Fprintf(os.Stderr, "writing the summary: %v\n", err)
		return 1
	}
	return code
}

// tally counts what one test did, so its numbers can be quoted.
type tally struct {
	mu sync.Mutex

	Test     string   `json:"test"`
	Passed   bool     `json:"passed"`
	Seconds  int      `json:"seconds"`
	Faults   []string `json:"faults"`
	Attempts int      `json:"createsAttempted"`
	Admitted int      `json:"admitted"`
	// Refused503 are creates the webhook refused as retryable: the host
	// was unavailable or too slow.
	Refused503 int `json:"refused503"`
	// Other are creates that failed otherwise, by code and reason: the
	// apiserver could not call the webhook, or was itself down.
	Other        int            `json:"other"`
	OtherReasons map[string]int `json:"otherReasons,omitempty"`
	// Retried creates were made again after the fault with the same name.
	Retried int `json:"retried"`
	// OrphansCleaned are host pods without a virtual pod that the
	// reflector removed while the test waited for the invariant.
	OrphansCleaned int `json:"orphansCleaned"`
	// Violations of the invariant at the test's last check (0 on success).
	Violations int `json:"violations"`
	// Notes are measurements particular to a test.
	Notes []string `json:"notes,omitempty"`
}

var (
	talliesMu sync.Mutex
	tallies   []*tally
)

// newTally starts counting for t and logs the counts when t ends.
func newTally(t *testing.T) *tally {
	t.Helper()
	tl := &tally{Test: t.Name(), OtherReasons: map[string]int{}}
	talliesMu.Lock()
	tallies = append(tallies, tl)
	talliesMu.Unlock()
	started := time.Now()
	t.Cleanup(func() {
		tl.mu.Lock()
		tl.Passed = !t.Failed()
		tl.Seconds = int(time.Since(started).Round(time.Second) / time.Second)
		tl.mu.Unlock()
		t.Logf("SUMMARY %s", tl.line())
	})
	return tl
}

func (tl *tally) fault(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.Faults = append(tl.Faults, fmt.Sprintf(format, args...))
}

func (tl *tally) note(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.Notes = append(tl.Notes, fmt.Sprintf(format, args...))
}

// count records the outcome of one create.
func (tl *tally) count(o outcome, retry bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.Attempts++
	if retry {
		tl.Retried++
	}
	switch o.kind {
	case admitted:
		tl.Admitted++
	case refused503:
		tl.Refused503++
	default:
		tl.Other++
		tl.OtherReasons[o.reason]++
	}
}

func (tl *tally) line() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	verdict := "FAIL"
	if tl.Passed {
		verdict = "ok"
	}
	var reasons []string
	for r, n := range tl.OtherReasons {
		reasons = append(reasons, fmt.Sprintf("%q=%d", r, n))
	}
	sort.Strings(reasons)
	s := fmt.Sprintf("%s %s %ds: faults=%d [%s] creates=%d admitted=%d refused503=%d other=%d retried=%d orphansCleaned=%d violations=%d",
		verdict, tl.Test, tl.Seconds, len(tl.Faults), strings.Join(tl.Faults, "; "), tl.Attempts, tl.Admitted, tl.Refused503, tl.Other,
		tl.Retried, tl.OrphansCleaned, tl.Violations)
	if len(reasons) > 0 {
		s += " otherReasons{" + strings.Join(reasons, ", ") + "}"
	}
	if len(tl.Notes) > 0 {
		s += " notes{" + strings.Join(tl.Notes, "; ") + "}"
	}
	return s
}

// writeSummary prints a table of every test's counts to w and writes it,
// with the same counts as JSON, into dir.
func writeSummary(w io.Writer, dir string) error {
	talliesMu.Lock()
	defer talliesMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\nreliability summary (%d tests)\n", len(tallies))
	fmt.Fprintf(&b, "%-46s %-4s %5s %6s %7s %8s %6s %5s %7s %8s %10s\n",
		"test", "ok", "secs", "faults", "creates", "admitted", "503", "other", "retried", "orphans", "violations")
	totals := tally{}
	for _, tl := range tallies {
		tl.mu.Lock()
		fmt.Fprintf(&b, "%-46s %-4v %5d %6d %7d %8d %6d %5d %7d %8d %10d\n",
			tl.Test, tl.Passed, tl.Seconds, len(tl.Faults), tl.Attempts, tl.Admitted, tl.Refused503, tl.Other, tl.Retried, tl.OrphansCleaned, tl.Violations)
		totals.Seconds += tl.Seconds
		totals.Faults = append(totals.Faults, tl.Faults...)
		totals.Attempts += tl.Attempts
		totals.Admitted += tl.Admitted
		totals.Refused503 += tl.Refused503
		totals.Other += tl.Other
		totals.Retried += tl.Retried
		totals.OrphansCleaned += tl.OrphansCleaned
		totals.Violations += tl.Violations
		tl.mu.Unlock()
	}
	fmt.Fprintf(&b, "%-46s %-4s %5d %6d %7d %8d %6d %5d %7d %8d %10d\n",
		"total", "", totals.Seconds, len(totals.Faults), totals.Attempts, totals.Admitted, totals.Refused503, totals.Other, totals.Retried, totals.OrphansCleaned, totals.Violations)
	for _, tl := range tallies {
		fmt.Fprintf(&b, "%s\n", tl.line())
	}
	text := b.String()
	if _, err := fmt.Fprint(w, text); err != nil {
		return err
	}
	data, err := json.MarshalIndent(tallies, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), data, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(text), 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "summary written to %s/summary.{txt,json}\n", dir)
	return err
}
