// Package podbridgeproc runs podbridge's webhook and reflector as processes
// of their own, on the command line a user types against real clusters:
// the one runner the benchmark and the fault tests share. A Process keeps
// its command line and ports, so it can be killed and started again as a
// restarted pod would be; it is ready once its health probe answers and it
// serves its metrics to the scraper.
package podbridgeproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podbridge/podbridge/testbed/child"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/translate"
)

// readyTimeout bounds a start's wait for readiness when ctx has no deadline.
const readyTimeout = 2 * time.Minute

// Cluster says where the podbridge processes of one virtual cluster run
// and what each of them is told.
type Cluster struct {
	// Binary is cmd/podbridge (controlplane.BuildPodbridge builds it).
	Binary                            string
	HostKubeconfig, VirtualKubeconfig string
	HostNamespace, VCluster           string
	// HostServiceAccount, when set, is passed as --host-service-account.
	HostServiceAccount string
	// MetricsCertDir, when set, has every process serve its metrics over
	// TLS with the tls.crt and tls.key there (--metrics-cert-dir), which
	// MetricsClient (a host identity allowed GET /metrics) trusts. Empty:
	// plain HTTP, as binaries older than that flag serve them.
	MetricsCertDir string
	MetricsClient  *http.Client
	// LogDir receives each process's log, NAME.log.
	LogDir string
	// Output, when set, receives each process's output too (the test bed
	// shows it in a terminal or a failed test's output).
	Output io.Writer
	// Pprof serves pprof too, on a loopback port of each process's own
	// (Process.PprofURL).
	Pprof bool
}

// WebhookOptions say how one webhook replica runs.
type WebhookOptions struct {
	// Name names the process and its log.
	Name string
	// Port is where it serves admission (0: a free port).
	Port int
	// RegisterURL is where the virtual apiserver calls it: empty for its
	// own port, or a load balancer's in front of several replicas.
	RegisterURL string
	// HostKubeconfig, when set, replaces the cluster's (to go through a
	// proxy).
	HostKubeconfig string
	// Args are more flags: the certificate mode, timeouts, caps.
	Args []string
}

// Webhook returns `podbridge webhook` for o, not started yet.
func (c Cluster) Webhook(o WebhookOptions) (*Process, error) {
	if o.Port == 0 {
		var err error
		if o.Port, err = controlplane.FreePort(); err != nil {
			return nil, err
		}
	}
	if o.RegisterURL == "" {
		o.RegisterURL = "https://" + loopback(o.Port) + translate.WebhookPath
	}
	hostKubeconfig := c.HostKubeconfig
	if o.HostKubeconfig != "" {
		hostKubeconfig = o.HostKubeconfig
	}
	args := append(c.clusterArgs("webhook", hostKubeconfig),
		"--bind-address=127.0.0.1",
		"--port="+strconv.Itoa(o.Port),
		"--register-url="+o.RegisterURL,
	)
	p, err := c.process(o.Name, "/readyz", append(args, o.Args...))
	if err != nil {
		return nil, err
	}
	p.Port = o.Port
	return p, nil
}

// Reflector returns `podbridge reflector` with more flags args (leader
// election, the orphan grace period), not started yet.
func (c Cluster) Reflector(name string, args ...string) (*Process, error) {
	return c.process(name, "/readyz", append(c.clusterArgs("reflector", c.HostKubeconfig), args...))
}

// clusterArgs are the command and the flags every podbridge process of
// the cluster shares.
func (c Cluster) clusterArgs(command, hostKubeconfig string) []string {
	args := []string{command,
		"--host-kubeconfig=" + hostKubeconfig,
		"--virtual-kubeconfig=" + c.VirtualKubeconfig,
		"--host-namespace=" + c.HostNamespace,
		"--vcluster-name=" + c.VCluster,
	}
	if c.HostServiceAccount != "" {
		args = append(args, "--host-service-account="+c.HostServiceAccount)
	}
	return args
}

// process chooses the metrics, health and pprof ports of a process, kept
// across its restarts, and completes its command line.
func (c Cluster) process(name, readyPath string, args []string) (*Process, error) {
	ports := make([]int, 3)
	for i := range ports {
		var err error
		if ports[i], err = controlplane.FreePort(); err != nil {
			return nil, err
		}
	}
	metrics, health, pprof := ports[0], ports[1], ports[2]
	scheme := "http"
	if c.MetricsCertDir != "" {
		scheme = "https"
		args = append(args, "--metrics-cert-dir="+c.MetricsCertDir)
	}
	args = append(args,
		"--metrics-bind-address="+loopback(metrics),
		"--health-probe-bind-address="+loopback(health),
	)
	p := &Process{
		Name:       name,
		MetricsURL: scheme + "://" + loopback(metrics) + "/metrics",
		ReadyURL:   "http://" + loopback(health) + readyPath,
		command:    child.Command{Name: name, Path: c.Binary, LogFile: filepath.Join(c.LogDir, name+".log"), Output: c.Output},
		client:     c.MetricsClient,
	}
	if c.Pprof {
		p.PprofURL = "http://" + loopback(pprof)
		args = append(args, "--pprof-bind-address="+loopback(pprof))
	}
	p.command.Args = args
	return p, nil
}

// Process is one podbridge process, which may be stopped or killed and
// started again with the same command line (same ports).
type Process struct {
	Name string
	// Port is a webhook's admission port.
	Port int
	// MetricsURL, ReadyURL and PprofURL (empty unless Cluster.Pprof) are
	// where the process serves each.
	MetricsURL, ReadyURL, PprofURL string

	command child.Command
	client  *http.Client

	mu      sync.Mutex
	current *child.Process
}

// Args is the process's command line after the binary.
func (p *Process) Args() []string { return p.command.Args }

// Start starts the process and waits until it is ready: its health probe
// answers and it serves its metrics to the scraper. It fails fast if the
// process exits first; ctx bounds the wait (2 minutes without a deadline).
func (p *Process) Start(ctx context.Context) error {
	current, err := child.Start(p.command)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.current = current
	p.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	if err := current.WaitReady(ctx, p.ReadyURL); err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := current.Exited(); err != nil {
			return false, err
		}
		_, last = p.Scrape(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to serve %s: %w (last: %w)", p.Name, p.MetricsURL, err, last)
	}
	return nil
}

// process is the child of the latest start (nil before the first).
func (p *Process) process() *child.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

// errNotStarted is what a process never started reports as its exit.
var errNotStarted = errors.New("not started")

// Exited returns nil while the process runs, and once it has ended an
// error saying how, with the end of its log.
func (p *Process) Exited() error {
	current := p.process()
	if current == nil {
		return fmt.Errorf("%s: %w", p.Name, errNotStarted)
	}
	return current.Exited()
}

// Stop sends SIGTERM and waits until the process has ended, killing it
// when ctx ends (after 20 s without a deadline). A process not started or
// already ended is left alone.
func (p *Process) Stop(ctx context.Context) error {
	if current := p.process(); current != nil {
		return current.Stop(ctx)
	}
	return nil
}

// Wait waits until the latest start has ended and returns its exit error
// (nil for status 0), or ctx's error. A process never started has ended.
func (p *Process) Wait(ctx context.Context) error {
	if current := p.process(); current != nil {
		return current.Wait(ctx)
	}
	return nil
}

// LogFile is where the process's output is appended, start after start.
func (p *Process) LogFile() string { return p.command.LogFile }

// Kill sends SIGKILL, as the OOM killer or a node failure would, and waits
// until the process has ended.
func (p *Process) Kill() error {
	if current := p.process(); current != nil {
		return current.Kill()
	}
	return nil
}

// PID is the process ID of the latest start.
func (p *Process) PID() int { return p.process().PID() }

// Started is when the latest start began.
func (p *Process) Started() time.Time { return p.process().Started() }

// Scrape reads the process's metrics as the scraper.
func (p *Process) Scrape(ctx context.Context) (promscrape.Families, error) {
	return promscrape.Scrape(ctx, p.client, p.MetricsURL)
}

// Metric returns the sum of a counter or gauge the process exports, over
// the series whose labels include labels.
func (p *Process) Metric(ctx context.Context, name string, labels map[string]string) (float64, error) {
	f, err := p.Scrape(ctx)
	if err != nil {
		return 0, err
	}
	return f.Sum(name, labels), nil
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
