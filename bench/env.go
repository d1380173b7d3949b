package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/testbed/controlplane"
)

// Namespaces of the scenarios. Each series has its own, so counting and
// emptying one never touches another's pods.
const (
	nsDirect     = "bench-direct"      // host: scenario 1, direct
	nsNoWebhook  = "bench-nowebhook"   // virtual: scenario 1 without the webhook
	nsCreate     = "bench-create"      // virtual: scenario 1 through podbridge
	nsDeploy     = "bench-deploy"      // both: scenario 3
	nsCostDirect = "bench-cost-direct" // host: scenario 5 baseline
	nsCost       = "bench-cost"        // virtual: scenario 5
	nsScale      = "bench-scale"       // virtual: scenarios 4 and 6
	nsChurn      = "bench-churn"       // virtual: scenario 7
)

var (
	hostNamespaces    = []string{hostNamespace, nsDirect, nsDeploy, nsCostDirect}
	virtualNamespaces = []string{nsNoWebhook, nsCreate, nsDeploy, nsCost, nsScale, nsChurn}
)

// cluster is one control plane as the bench drives it: a client with
// raised limits whose requests are counted.
type cluster struct {
	name    string
	plane   *controlplane.Plane
	client  kubernetes.Interface
	counter *requestCounter
}

// env is a running benchmark environment.
type env struct {
	cfg           Config
	dir           string
	log           logr.Logger
	host, virtual *cluster
	pb            *podbridge
	prof          *profiler // nil unless Config.ProfileDir is set
}

// startEnv starts both control planes, prepares the namespaces, and runs
// podbridge against them.
func startEnv(ctx context.Context, cfg Config) (e *env, err error) {
	e = &env{cfg: cfg, dir: filepath.Join(cfg.OutDir, "run"), log: cfg.Log}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.stop())
			e = nil
		}
	}()
	if err := os.RemoveAll(e.dir); err != nil {
		return e, fmt.Errorf("removing the previous run's state: %w", err)
	}
	binary := cfg.PodbridgeBinary // built by Run

	e.log.Info("Starting host and virtual control planes", "nodes", cfg.Nodes, "podsPerNode", cfg.PodsPerNode)
	opts := controlplane.Options{Assets: cfg.Assets, Dir: e.dir, Nodes: cfg.Nodes, PodsPerNode: cfg.PodsPerNode}
	// The webhook accepts only callers with a client certificate: the
	// virtual apiserver presents this one (the webhook trusts its CA file).
	planes, err := controlplane.StartPair(ctx, controlplane.PairOptions{Host: opts, Virtual: opts, ClientCommonName: clientCommonName})
	if err != nil {
		return e, err
	}
	host, virtual := planes.Host, planes.Virtual
	e.host, e.virtual = &cluster{name: "host", plane: host}, &cluster{name: "virtual", plane: virtual}
	for _, c := range []*cluster{e.host, e.virtual} {
		if c.client, c.counter, err = countedClient(c.plane.Config); err != nil {
			return e, err
		}
	}
	if err := e.prepareNamespaces(ctx); err != nil {
		return e, err
	}

	bundle, err := certs.NewSelfSigned([]string{"127.0.0.1", "localhost"}, time.Now(), 24*time.Hour)
	if err != nil {
		return e, err
	}
	certDir := filepath.Join(e.dir, "webhook-certs")
	if err := bundle.WriteDir(certDir); err != nil {
		return e, err
	}
	e.log.Info("Starting podbridge webhook and reflector processes")
	e.pb, err = startPodbridge(ctx, podbridgeOptions{
		binary:            binary,
		hostKubeconfig:    host.Kubeconfig,
		virtualKubeconfig: virtual.Kubeconfig,
		certDir:           certDir,
		clientCertDir:     planes.Client.Dir,
		host:              host.Config,
		metricsCA:         bundle.CA,
		logDir:            filepath.Join(e.dir, "logs"),
		orphanGrace:       time.Duration(cfg.OrphanGraceSeconds * float64(time.Second)),
		flags:             cfg.PodbridgeFlags,
		profile:           cfg.ProfileDir != "",
		virtual:           e.virtual.client,
		log:               e.log.WithName("podbridge"),
	})
	if err != nil || cfg.ProfileDir == "" {
		return e, err
	}
	e.prof, err = newProfiler(cfg.ProfileDir, e.pb.pprof)
	return e, err
}

// countedClient is a client for the load generator: like podbridge's own
// (kube.WithLimits: no gzip) with limits raised far beyond what the bench
// sends (client-go's default of 5 QPS would measure the client), protobuf
// like the cluster's own components, and every request counted.
func countedClient(cfg *rest.Config) (kubernetes.Interface, *requestCounter, error) {
	cfg = kube.WithLimits(cfg, kube.Limits{QPS: 10000, Burst: 20000}, "podbridge-bench")
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	counter := &requestCounter{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return counter.wrap(rt) })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating client: %w", err)
	}
	return cs, counter, nil
}

// prepareNamespaces creates the scenarios' namespaces. The host runs no
// controller manager, so the bench creates the "default" ServiceAccounts
// there itself (as devenv's prepareHost does); in the virtual
// cluster it waits for the controller manager to create them, since
// ServiceAccount admission refuses pods until then.
func (e *env) prepareNamespaces(ctx context.Context) error {
	for _, ns := range hostNamespaces {
		_, err := e.host.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating host namespace %s: %w", ns, err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
		_, err = e.host.client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating host service account %s/default: %w", ns, err)
		}
		if ns == hostNamespace {
			// podbridge's host pods run as an account with no pull secrets
			// and no token mounted, or podbridge refuses to start.
			workloads := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hostServiceAccount, Namespace: ns, Annotations: map[string]string{ownership.Annotation: vclusterName}}, AutomountServiceAccountToken: ptr.To(false)}
			_, err = e.host.client.CoreV1().ServiceAccounts(ns).Create(ctx, workloads, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating host service account %s/%s: %w", ns, hostServiceAccount, err)
			}
		}
	}
	for _, ns := range virtualNamespaces {
		_, err := e.virtual.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating virtual namespace %s: %w", ns, err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, ns := range virtualNamespaces {
			if _, err := e.virtual.client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return false, nil //nolint:nilerr // the controller manager creates it shortly.
			}
		}
		return true, nil
	})
}

// stop stops podbridge, then both control planes, and removes the state
// (kubeconfigs and keys) but keeps the logs.
func (e *env) stop() error {
	if e == nil {
		return nil
	}
	errs := []error{e.pb.stop()}
	for _, c := range []*cluster{e.virtual, e.host} {
		if c != nil {
			errs = append(errs, c.plane.Stop())
		}
	}
	entries, _ := os.ReadDir(e.dir)
	for _, entry := range entries {
		if entry.Name() != "logs" {
			errs = append(errs, os.RemoveAll(filepath.Join(e.dir, entry.Name())))
		}
	}
	return errors.Join(errs...)
}

// checkAlive reports a podbridge process or control-plane component that exited.
func (e *env) checkAlive() error {
	return errors.Join(e.pb.webhookExited(), e.pb.reflector.Exited(), e.host.plane.Check(), e.virtual.plane.Check())
}

// buildPodbridge builds cfg.PodbridgeBinary (relative to the checkout) and
// returns its absolute path.
func buildPodbridge(ctx context.Context, cfg Config) (string, error) {
	root, err := controlplane.ModuleRoot()
	if err != nil {
		return "", err
	}
	binary := cfg.PodbridgeBinary
	if !filepath.IsAbs(binary) {
		binary = filepath.Join(root, binary)
	}
	cfg.Log.Info("Building podbridge", "binary", binary)
	return binary, controlplane.BuildPodbridge(ctx, binary)
}
