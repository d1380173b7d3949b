package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/testbed/child"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/testbed/promscrape"
)

// Names of the dev podbridge's host Secrets and folders (the shipped
// control-plane pod names its own; see podbridge_flags_test.go).
const (
	webhookSecretName = "podbridge-webhook-tls"
	webhookCertDir    = "webhook-certs"
	kubeletCertDir    = "kubelet-certs"
	// reflectorConcurrency is the reflector's --concurrency: half the
	// command's default, on the 2-core machines the tests run on.
	reflectorConcurrency = 16
)

// ErrDataRace is what a podbridge process built with the race detector
// (BuildPodbridge in a test built with -race) reports when it found a data
// race: it exits with status 66 once stopped, and Stop says so.
var ErrDataRace = errors.New("podbridge found a data race (WARNING: DATA RACE in its log)")

// raceExitCode is the race detector's exit status (GORACE exitcode).
const raceExitCode = 66

// podbridgePorts are the loopback ports the virtual apiserver calls
// podbridge at, chosen before it starts.
type podbridgePorts struct{ webhook, kubelet int }

// commandLines returns `podbridge webhook` and `podbridge reflector` for
// o, whose Translate is complete (Start has filled what it derives), with
// the shipped control-plane pod's flags wherever they mean the same
// (podbridge_flags_test.go compares them), not started yet.
func commandLines(o Options, c podbridgeproc.Cluster, ports podbridgePorts) (webhook, reflector *podbridgeproc.Process, err error) {
	tc := o.Translate
	c.HostNamespace, c.VCluster, c.HostServiceAccount = tc.HostNamespace, tc.VCluster, tc.HostServiceAccount
	// Each process's own lines, whole, to the output they share.
	webhookCluster, reflectorCluster := c, c
	webhookCluster.Output, reflectorCluster.Output = wholeLines(c.Output), wholeLines(c.Output)
	translateArgs, err := podbridgeproc.TranslateArgs(tc)
	if err != nil {
		return nil, nil, err
	}
	webhookArgs := append(append([]string{}, translateArgs...),
		"--pod-security-level="+o.PodSecurityLevel,
		"--webhook-timeout="+o.WebhookTimeout.String(),
		"--host-timeout="+(o.WebhookTimeout*7/10).String(),
		// The self-managed certificate mode, as a host without
		// cert-manager uses it, accepting only the virtual apiserver's
		// client certificate (stored by StoreInHost).
		"--cert-dir="+filepath.Join(o.StateDir, webhookCertDir),
		"--cert-mode="+string(certs.ModeSelfManaged),
		"--cert-secret="+webhookSecretName,
		"--client-ca-secret="+certs.DefaultClientSecretName,
		"--cert-hosts=127.0.0.1",
	)
	webhook, err = webhookCluster.Webhook(podbridgeproc.WebhookOptions{
		Name: "webhook", Port: ports.webhook,
		RegisterURL: "https://127.0.0.1:" + strconv.Itoa(ports.webhook),
		Args:        webhookArgs,
	})
	if err != nil {
		return nil, nil, err
	}
	reflectorArgs := append(append([]string{}, translateArgs...),
		"--pod-security-level="+o.PodSecurityLevel,
		"--leader-elect=false",
		"--concurrency="+strconv.Itoa(reflectorConcurrency),
		"--node-grace-period="+o.NodeGracePeriod.String(),
		// The virtual nodes' kubelet API, beside the reflector as the
		// command runs it.
		"--kubelet-advertise-address=127.0.0.1",
		"--kubelet-bind-address=127.0.0.1",
		"--kubelet-port="+strconv.Itoa(ports.kubelet),
		"--kubelet-cert-dir="+filepath.Join(o.StateDir, kubeletCertDir),
		"--kubelet-cert-mode="+string(certs.ModeSelfManaged),
		"--kubelet-cert-secret="+KubeletSecretName,
		"--client-ca-secret="+certs.DefaultClientSecretName,
	)
	if o.OrphanGracePeriod > 0 {
		reflectorArgs = append(reflectorArgs, "--orphan-grace-period="+o.OrphanGracePeriod.String())
	}
	if o.TokenRefreshAfter > 0 {
		reflectorArgs = append(reflectorArgs, "--token-refresh-after="+o.TokenRefreshAfter.String())
	}
	reflector, err = reflectorCluster.Reflector("reflector", reflectorArgs...)
	if err != nil {
		return nil, nil, err
	}
	return webhook, reflector, nil
}

// component is one podbridge process of the environment: started, it is
// watched, and an end nobody asked for is reported on Env.Err.
type component struct {
	name string
	proc *podbridgeproc.Process
	// stopping is set before the process is asked to end.
	stopping atomic.Bool
	// done is closed once the process has ended; exit is then its exit.
	done chan struct{}
	exit error
}

// startComponent starts p, waits until it is ready and watches it.
func (e *Env) startComponent(ctx context.Context, name string, p *podbridgeproc.Process) (*component, error) {
	if err := p.Start(ctx); err != nil {
		// Not ready in time, or ended: nothing of it may stay.
		return nil, errors.Join(fmt.Errorf("starting the %s: %w", name, err), p.Kill())
	}
	c := &component{name: name, proc: p, done: make(chan struct{})}
	go func() {
		c.exit = p.Wait(context.Background())
		if !c.stopping.Load() {
			err := p.Exited()
			// Said at once: a test that restarts components may not read
			// Err until its own wait has run out.
			logf.Log.WithName("devenv").Error(err, "Component stopped on its own", "component", name)
			select {
			case e.failed <- fmt.Errorf("%s: %w", name, err):
			default: // an earlier failure is already waiting to be read.
			}
		}
		close(c.done)
	}()
	return c, nil
}

// stopTimeout bounds a podbridge process's graceful stop before it is
// killed.
const stopTimeout = 30 * time.Second

// stop asks the process to end (SIGTERM), waits until it has, and reports
// an exit other than status 0: a data race (ErrDataRace) or an error. Its
// counters, read first, keep counting in Env.MetricSum.
func (e *Env) stop(c *component) error {
	if c == nil {
		return nil
	}
	scrapeCtx, cancelScrape := context.WithTimeout(context.Background(), 10*time.Second)
	if families, err := c.proc.Scrape(scrapeCtx); err == nil {
		e.earlierMetrics = append(e.earlierMetrics, families)
	}
	cancelScrape()
	c.stopping.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err := c.proc.Stop(ctx)
	<-c.done
	if err != nil {
		return fmt.Errorf("stopping the %s: %w", c.name, err)
	}
	return c.exitError()
}

// exitError says how the process ended, if not with status 0.
func (c *component) exitError() error {
	if c.exit == nil {
		return nil
	}
	if exit := (*exec.ExitError)(nil); errors.As(c.exit, &exit) && exit.ExitCode() == raceExitCode {
		return fmt.Errorf("the %s (log %s): %w", c.name, c.proc.LogFile(), ErrDataRace)
	}
	return fmt.Errorf("the %s ended with %w; see %s", c.name, c.exit, c.proc.LogFile())
}

// WebhookProcess is the webhook's process (its metrics, its PID), nil
// while it is stopped.
func (e *Env) WebhookProcess() *podbridgeproc.Process { return e.process(&e.webhook) }

// ReflectorProcess is the reflector's process (with the kubelet API), nil
// while it is stopped.
func (e *Env) ReflectorProcess() *podbridgeproc.Process { return e.process(&e.reflector) }

func (e *Env) process(c **component) *podbridgeproc.Process {
	e.mu.Lock()
	defer e.mu.Unlock()
	if *c == nil {
		return nil
	}
	return (*c).proc
}

// MetricSum adds the counters and gauges of family name over the series
// carrying every label in labels that podbridge's processes export now,
// plus the counters of their runs stopped earlier: a counter keeps
// counting across StopReflector and StartReflector, as it did when the
// components ran in the test's process.
func (e *Env) MetricSum(ctx context.Context, name string, labels map[string]string) (float64, error) {
	current, earlier, err := e.metrics(ctx)
	if err != nil {
		return 0, err
	}
	total := 0.0
	for _, f := range earlier {
		if f[name].GetType() == dto.MetricType_COUNTER {
			total += f.Sum(name, labels)
		}
	}
	for _, f := range current {
		total += f.Sum(name, labels)
	}
	return total, nil
}

// HistogramCount is how many observations the histogram name (its first
// series carrying labels) holds, over the processes' runs as MetricSum.
func (e *Env) HistogramCount(ctx context.Context, name string, labels map[string]string) (float64, error) {
	current, earlier, err := e.metrics(ctx)
	if err != nil {
		return 0, err
	}
	total := 0.0
	for _, f := range append(earlier, current...) {
		total += f.Histogram(name, labels).Count
	}
	return total, nil
}

// metrics scrapes the running processes and returns, with those, the
// scrapes of runs stopped earlier.
func (e *Env) metrics(ctx context.Context) (current, earlier []promscrape.Families, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range []*component{e.webhook, e.reflector} {
		if c == nil {
			continue
		}
		f, err := c.proc.Scrape(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("scraping the %s: %w", c.name, err)
		}
		current = append(current, f)
	}
	return current, slices.Clone(e.earlierMetrics), nil
}

// PodbridgeLogs are the log files of podbridge's processes (none before
// Start chose their command lines).
func (e *Env) PodbridgeLogs() []string {
	if e == nil || e.webhookProc == nil || e.reflectorProc == nil {
		return nil
	}
	return []string{e.webhookProc.LogFile(), e.reflectorProc.LogFile()}
}

// WriteLogTails writes the last maxBytes of each podbridge process's log
// to w: a failed test's output shows what podbridge said.
func (e *Env) WriteLogTails(w io.Writer, maxBytes int64) {
	for _, path := range e.PodbridgeLogs() {
		_, _ = fmt.Fprintf(w, "---- the end of %s:\n%s\n", path, child.Tail(path, maxBytes))
	}
}

// BuildPodbridge builds cmd/podbridge into a new folder under the
// checkout's bin/ (/tmp may not allow running programs) and returns the
// binary and what removes the folder. A test binary built with -race
// gets a podbridge built with -race too, so a data race in podbridge
// fails the tests as it did when the components ran in the test's own
// process (Env.Stop reports ErrDataRace).
func BuildPodbridge(ctx context.Context) (binary string, remove func(), err error) {
	root, err := controlplane.ModuleRoot()
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(filepath.Join(root, "bin"), "podbridge-test-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	binary = filepath.Join(dir, "podbridge")
	build := controlplane.Build
	if raceDetector {
		build = controlplane.BuildWithRace
	}
	if err := build(ctx, "./cmd/podbridge", binary); err != nil {
		remove()
		return "", nil, err
	}
	return binary, remove, nil
}

// WarningsOnly passes to w the lines of podbridge's output that are not
// log records below warning level: warnings, errors, and whatever is no
// JSON record (a panic, a data race report, the command's last error).
// The tests show podbridge's processes through it, as they showed its
// in-process components' logs at warning level.
func WarningsOnly(w io.Writer) io.Writer {
	return &lineWriter{w: w, keep: func(line []byte) bool {
		return !slices.ContainsFunc(quietLevels, func(level []byte) bool { return bytes.HasPrefix(line, level) })
	}}
}

// quietLevels start the JSON records WarningsOnly drops (zap's encoder
// writes the level first).
var quietLevels = [][]byte{[]byte(`{"level":"debug"`), []byte(`{"level":"info"`), []byte(`{"level":"Level(-`)}

// wholeLines writes to w each whole line of what it is given, in one
// Write: the processes sharing Options.Output do not interleave their
// lines.
func wholeLines(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &lineWriter{w: w, keep: func([]byte) bool { return true }}
}

// lineWriter passes the lines keep keeps to w, each in one Write.
type lineWriter struct {
	mu      sync.Mutex
	w       io.Writer
	keep    func(line []byte) bool
	partial []byte
}

// maxPartial bounds a line kept while its end has not come.
const maxPartial = 1 << 20

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	rest := l.partial
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		if line := rest[:i+1]; l.keep(line) {
			if _, err := l.w.Write(line); err != nil {
				return len(p), err
			}
		}
		rest = rest[i+1:]
	}
	if len(rest) > maxPartial {
		rest = nil // a line with no end in sight: dropped, not kept forever.
	}
	l.partial = append(l.partial[:0], rest...)
	return len(p), nil
}
