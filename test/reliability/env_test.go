//go:build reliability

package reliability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/hostaccount"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/devenv"
	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/translate"
)

// Timing shared by every test. The webhook's are podbridge's defaults; the
// orphan grace period is shortened (it must only exceed the webhook
// timeout) so orphan clean-up fits in a test.
const (
	webhookTimeout = 10 * time.Second
	hostTimeout    = 7 * time.Second
	orphanGrace    = 15 * time.Second
	processStop    = 20 * time.Second
	// startupTimeout bounds starting both control planes on a busy 2-core machine.
	startupTimeout = 5 * time.Minute
)

// cluster is one host and one virtual control plane, with clients for the
// test, and the podbridge processes it started.
type cluster struct {
	t             *testing.T
	dir           string
	planes        *controlplane.Pair
	host, virtual *controlplane.Plane
	hostClient    client.Client
	virtualClient client.Client
	config        translate.Config
	// podbridge serves metrics only to host identities allowed GET
	// /metrics: metricsClient scrapes as one, trusting the certificate of
	// metricsCertDir that every process serves them with.
	metricsCertDir string
	metricsClient  *http.Client

	// podbridge runs `podbridge webhook` and `podbridge reflector`.
	podbridge podbridgeproc.Cluster

	mu    sync.Mutex
	procs []*podbridgeproc.Process
}

// startCluster starts a host (3 kwok nodes) and a virtual control plane in
// parallel, and the host namespace podbridge uses. Everything is stopped
// when t ends; the state folder is kept under runDir if t failed.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := filepath.Join(runDir, strings.ReplaceAll(t.Name(), "/", "_"))
	c := &cluster{t: t, dir: dir, config: translate.Config{VCluster: "rel", HostNamespace: "podbridge-rel", HostServiceAccount: hostaccount.DefaultName("rel")}}
	t.Cleanup(func() {
		c.mu.Lock()
		procs := c.procs
		c.mu.Unlock()
		var errs []error
		for _, p := range procs {
			errs = append(errs, stop(p))
		}
		errs = append(errs, c.planes.Stop())
		if err := errors.Join(errs...); err != nil {
			t.Logf("stopping the cluster: %v", err)
		}
		if t.Failed() {
			t.Logf("state and logs kept in %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	// The virtual apiserver presents a client certificate to the webhook,
	// as devenv's does; replicas and the load balancer listen on ports
	// chosen later, so it presents it to every webhook (the default).
	opts := controlplane.Options{Assets: assets, Dir: dir, Nodes: 3, PodsPerNode: 1000}
	var err error
	c.planes, err = controlplane.StartPair(ctx, controlplane.PairOptions{
		Host: opts, Virtual: opts,
		ClientCommonName: certs.ClientCommonNameFor(c.config.HostNamespace, c.config.VCluster),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.host, c.virtual = c.planes.Host, c.planes.Virtual
	if err := devenv.PrepareHostNamespace(ctx, c.host.Config, c.config); err != nil {
		t.Fatal(err)
	}
	if err := c.planes.Client.StoreInHost(ctx, c.host.Config, c.config); err != nil {
		t.Fatal(err)
	}
	c.hostClient = newClient(t, c.host.Config)
	c.virtualClient = newClient(t, c.virtual.Config)
	metricsCerts, err := certs.NewSelfSigned([]string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.metricsCertDir = filepath.Join(dir, "metrics-certs")
	if err := metricsCerts.WriteDir(c.metricsCertDir); err != nil {
		t.Fatal(err)
	}
	if c.metricsClient, err = promscrape.ScraperClient(ctx, c.host.Config, c.config.HostNamespace, metricsCerts.CA); err != nil {
		t.Fatal(err)
	}
	c.podbridge = podbridgeproc.Cluster{
		Binary:         podbridgeBinary,
		HostKubeconfig: c.host.Kubeconfig, VirtualKubeconfig: c.virtual.Kubeconfig,
		HostNamespace: c.config.HostNamespace, VCluster: c.config.VCluster,
		MetricsCertDir: c.metricsCertDir, MetricsClient: c.metricsClient,
		LogDir: filepath.Join(dir, "logs"),
	}
	return c
}

// newClient returns a client without client-side throttling worth the
// name: the bursts measure podbridge, not client-go's rate limiter.
func newClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(kube.WithLimits(cfg, kube.DefaultLimits, "podbridge-reliability"), client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startWebhook runs `podbridge webhook` with a self-managed certificate
// (replicas share its Secret) and waits until it is ready and admits pods.
func (c *cluster) startWebhook(o podbridgeproc.WebhookOptions) *podbridgeproc.Process {
	c.t.Helper()
	o.Args = append(o.Args,
		"--cert-mode=self-managed",
		"--cert-hosts=127.0.0.1,localhost",
		"--cert-dir="+filepath.Join(c.dir, o.Name+"-certs"),
		"--allowed-storage-classes="+claimClass,
		"--webhook-timeout="+webhookTimeout.String(),
		"--host-timeout="+hostTimeout.String(),
	)
	p, err := c.podbridge.Webhook(o)
	if err != nil {
		c.t.Fatal(err)
	}
	c.start(p)
	c.waitWebhookAdmits()
	return p
}

// startReflector runs `podbridge reflector` and waits until it is ready.
func (c *cluster) startReflector(name string, leaderElect bool) *podbridgeproc.Process {
	c.t.Helper()
	p, err := c.podbridge.Reflector(name,
		"--orphan-grace-period="+orphanGrace.String(),
		"--allowed-storage-classes="+claimClass,
		"--leader-elect="+strconv.FormatBool(leaderElect),
	)
	if err != nil {
		c.t.Fatal(err)
	}
	c.start(p)
	return p
}

// start starts p, stopped when the test ends, and waits until it is ready.
func (c *cluster) start(p *podbridgeproc.Process) {
	c.t.Helper()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	if err := p.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// waitWebhookAdmits waits until a dry-run create in the virtual cluster
// passes through podbridge: the registration is in place and a webhook
// and the host answer.
func (c *cluster) waitWebhookAdmits() {
	c.t.Helper()
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reliability-probe", Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod := probe.DeepCopy()
		if last = c.virtualClient.Create(ctx, pod, client.DryRunAll); last != nil {
			return false, nil //nolint:nilerr // not answering yet: keep waiting, report the last error at the end.
		}
		if pod.Annotations[translate.AnnotationSyncID] == "" {
			last = errors.New("admitted without podbridge's webhook")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		c.t.Fatalf("waiting for the webhook to admit pods: %v (last: %v)", err, last)
	}
}

// stop asks p to end and kills it after processStop.
func stop(p *podbridgeproc.Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), processStop)
	defer cancel()
	return p.Stop(ctx)
}

// apiserverMetric returns the sum of an apiserver metric over the series
// whose labels include labels, read from its /metrics as an administrator.
func apiserverMetric(ctx context.Context, plane *controlplane.Plane, name string, labels map[string]string) (float64, error) {
	f, err := promscrape.ScrapeAPIServer(ctx, plane.Config)
	if err != nil {
		return 0, fmt.Errorf("reading the %s apiserver's metrics: %w", plane.Name, err)
	}
	return f.Sum(name, labels), nil
}

// kubeconfigVia writes a copy of kubeconfig whose clusters are reached at
// address instead (a proxy in front of the apiserver). The apiserver's
// certificate names 127.0.0.1, so TLS still verifies through a loopback proxy.
func kubeconfigVia(t *testing.T, kubeconfig, address, path string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cluster := range cfg.Clusters {
		cluster.Server = "https://" + address
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// roundRobin is a TCP load balancer in front of webhook replicas, as a
// Service would be: each new connection goes to the next replica that
// accepts it, so a killed replica's connections move to the survivors.
type roundRobin struct {
	listener net.Listener
	backends []string
	mu       sync.Mutex
	next     int
}

func startRoundRobin(t *testing.T, backends []string) *roundRobin {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rr := &roundRobin{listener: l, backends: backends}
	t.Cleanup(func() { l.Close() })
	go rr.serve()
	return rr
}

func (rr *roundRobin) address() string { return rr.listener.Addr().String() }

func (rr *roundRobin) serve() {
	for {
		conn, err := rr.listener.Accept()
		if err != nil {
			return // closed at the end of the test.
		}
		go rr.forward(conn)
	}
}

func (rr *roundRobin) forward(conn net.Conn) {
	defer conn.Close()
	rr.mu.Lock()
	first := rr.next
	rr.next++
	rr.mu.Unlock()
	for i := range rr.backends {
		backend, err := net.DialTimeout("tcp", rr.backends[(first+i)%len(rr.backends)], time.Second)
		if err != nil {
			continue // that replica is down: try the next.
		}
		defer backend.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(backend, conn); done <- struct{}{} }()
		go func() { _, _ = io.Copy(conn, backend); done <- struct{}{} }()
		<-done // either side closed: close both.
		return
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := controlplane.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
