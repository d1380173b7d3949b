package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/translate"
)

// Names podbridge runs under in the bench.
const (
	vclusterName  = "bench"
	hostNamespace = "podbridge-bench"
	// hostServiceAccount is what host pods run as (--host-service-account).
	hostServiceAccount = "podbridge-workloads"
	registrationName   = "podbridge"
)

// clientCommonName is the subject of the virtual apiserver's client
// certificate: the one this virtual cluster's podbridge accepts (given
// by flag too, for binaries that expected another by default).
var clientCommonName = certs.ClientCommonNameFor(hostNamespace, vclusterName)

// podbridge is the webhook and the reflector, each its own process, on
// the same command line a user would run against real clusters.
type podbridge struct {
	webhook   *podbridgeproc.Process
	reflector *podbridgeproc.Process
	// webhookStopped is true while suspendRegistration has the webhook
	// stopped on purpose: its exit is then no failure.
	webhookStopped bool
	// pprof are the pprof base URLs by process name, when profiling.
	pprof   map[string]string
	virtual kubernetes.Interface
	log     logr.Logger
}

// podbridgeOptions are what the two processes need to know.
type podbridgeOptions struct {
	binary            string
	hostKubeconfig    string
	virtualKubeconfig string
	certDir           string
	clientCertDir     string
	// host is an administrator of the host cluster, which makes the
	// metrics scraper's ServiceAccount; metricsCA is the CA of the
	// serving certificate in certDir, which the metrics use too.
	host        *rest.Config
	metricsCA   []byte
	logDir      string
	orphanGrace time.Duration
	// flags go to both processes after the bench's own.
	flags   []string
	profile bool
	virtual kubernetes.Interface
	log     logr.Logger
}

// startPodbridge starts the webhook, which registers itself in the virtual
// cluster, and the reflector, and returns once a dry-run pod create passes
// through the webhook and both serve their metrics.
func startPodbridge(ctx context.Context, o podbridgeOptions) (*podbridge, error) {
	certArgs, err := versionedWebhookArgs(ctx, o.binary, o.certDir, o.clientCertDir)
	if err != nil {
		return nil, err
	}
	metricsCertDir, metricsClient, err := metricsAccess(ctx, o)
	if err != nil {
		return nil, err
	}
	cluster := podbridgeproc.Cluster{
		Binary:         o.binary,
		HostKubeconfig: o.hostKubeconfig, VirtualKubeconfig: o.virtualKubeconfig,
		HostNamespace: hostNamespace, VCluster: vclusterName, HostServiceAccount: hostServiceAccount,
		MetricsCertDir: metricsCertDir, MetricsClient: metricsClient,
		LogDir: o.logDir,
		Pprof:  o.profile,
	}
	pb := &podbridge{virtual: o.virtual, log: o.log}
	if pb.webhook, err = cluster.Webhook(podbridgeproc.WebhookOptions{Name: "podbridge-webhook", Args: append(certArgs, o.flags...)}); err != nil {
		return nil, err
	}
	if pb.reflector, err = cluster.Reflector("podbridge-reflector", append([]string{"--leader-elect=false", "--orphan-grace-period=" + o.orphanGrace.String()}, o.flags...)...); err != nil {
		return nil, err
	}
	if o.profile {
		pb.pprof = map[string]string{"webhook": pb.webhook.PprofURL, "reflector": pb.reflector.PprofURL}
	}
	if err := pb.webhook.Start(ctx); err != nil {
		return pb, err
	}
	if err := pb.reflector.Start(ctx); err != nil {
		return pb, err
	}
	return pb, pb.waitAdmission(ctx, true)
}

// versionedWebhookArgs point the webhook at the bench's self-signed files
// (tls.crt, tls.key and ca.crt in certDir) and raise its cap on host pods.
// The flags for that changed as podbridge grew, so they are chosen from the
// binary's own help.
func versionedWebhookArgs(ctx context.Context, binary, certDir, clientCertDir string) ([]string, error) {
	// -h prints the flags; its exit status has varied, the output not.
	help, err := exec.CommandContext(ctx, binary, "webhook", "-h").CombinedOutput()
	if !strings.Contains(string(help), "-cert-dir") {
		return nil, fmt.Errorf("reading podbridge webhook's flags (exit: %v):\n%s", err, help) //nolint:errorlint // err is often nil: the output is the message.
	}
	args := []string{"--cert-dir=" + certDir}
	if hasFlag(help, "cert-mode") {
		args = append(args, "--cert-mode=files")
	}
	if hasFlag(help, "ca-file") {
		args = append(args, "--ca-file="+filepath.Join(certDir, "ca.crt"))
	}
	// The virtual apiserver presents the client certificate of
	// clientCertDir (see startEnv); older binaries ask for none.
	if hasFlag(help, "client-ca-file") {
		args = append(args, "--client-ca-file="+filepath.Join(clientCertDir, "ca.crt"))
	}
	if hasFlag(help, "client-common-name") {
		args = append(args, "--client-common-name="+clientCommonName)
	}
	// Above the largest scenario's pods, with room for orphans.
	if hasFlag(help, "max-host-pods") {
		args = append(args, "--max-host-pods=30000")
	}
	return args, nil
}

// restartReflector stops the reflector, calls whileDown, and starts a new
// one; it returns when the new process is ready.
func (pb *podbridge) restartReflector(ctx context.Context, whileDown func(context.Context) error) error {
	if err := pb.reflector.Stop(context.Background()); err != nil {
		return err
	}
	if whileDown != nil {
		if err := whileDown(ctx); err != nil {
			return err
		}
	}
	return pb.reflector.Start(ctx)
}

// metricsAccess returns the folder of the certificate both processes
// serve their metrics with and the client that scrapes them. podbridge
// serves metrics only to host identities allowed GET /metrics: the bench
// scrapes as a host ServiceAccount bound to that permission, over TLS
// verified with the bench's CA (the webhook's serving certificate names
// 127.0.0.1). An older binary, without --metrics-cert-dir, serves plain
// HTTP to anyone: no folder, no client.
func metricsAccess(ctx context.Context, o podbridgeOptions) (certDir string, c *http.Client, err error) {
	help, err := exec.CommandContext(ctx, o.binary, "reflector", "-h").CombinedOutput()
	if !strings.Contains(string(help), "-metrics-bind-address") {
		return "", nil, fmt.Errorf("reading podbridge reflector's flags (exit: %v):\n%s", err, help) //nolint:errorlint // err is often nil: the output is the message.
	}
	if !hasFlag(help, "metrics-cert-dir") {
		return "", nil, nil
	}
	c, err = promscrape.ScraperClient(ctx, o.host, hostNamespace, o.metricsCA)
	if err != nil {
		return "", nil, err
	}
	return o.certDir, c, nil
}

// stop stops both processes.
func (pb *podbridge) stop() error {
	if pb == nil {
		return nil
	}
	var errs []error
	for _, p := range []*podbridgeproc.Process{pb.reflector, pb.webhook} {
		if p != nil { // not made yet.
			errs = append(errs, p.Stop(context.Background()))
		}
	}
	return errors.Join(errs...)
}

// waitAdmission waits until a dry-run pod create in the virtual cluster is
// (admitted true) or is not (false) mutated by podbridge: the apiserver
// picks up changes to webhook configurations asynchronously.
func (pb *podbridge) waitAdmission(ctx context.Context, admitted bool) error {
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-admission-probe", Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "registry.invalid/probe:1"}}},
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := pb.webhookExited(); err != nil {
			return false, err
		}
		got, err := pb.virtual.CoreV1().Pods("default").Create(ctx, probe.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err
			return false, nil //nolint:nilerr // not admitting yet: kept for the message.
		}
		_, mutated := got.Annotations[translate.AnnotationSyncID]
		return mutated == admitted, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for pod admission through podbridge to be %t: %w (last error: %w)", admitted, err, last)
	}
	return nil
}

// suspendRegistration stops the webhook and deletes podbridge's
// MutatingWebhookConfiguration, so the virtual apiserver admits pods
// without the webhook, and returns a function that starts the webhook
// again, which registers itself at start-up. While it runs, the webhook
// restores a deleted configuration within milliseconds (as it must against
// a tenant), so it cannot stay up for the series.
func (pb *podbridge) suspendRegistration(ctx context.Context) (restore func(context.Context) error, err error) {
	if err := pb.webhook.Stop(context.Background()); err != nil {
		return nil, err
	}
	pb.webhookStopped = true
	restore = func(ctx context.Context) error {
		pb.webhookStopped = false
		if err := pb.webhook.Start(ctx); err != nil {
			return err
		}
		pb.log.Info("Started the webhook again; it registered itself", "name", registrationName)
		return pb.waitAdmission(ctx, true)
	}
	configs := pb.virtual.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if err := configs.Delete(ctx, registrationName, metav1.DeleteOptions{}); err != nil {
		return nil, errors.Join(fmt.Errorf("deleting MutatingWebhookConfiguration %s: %w", registrationName, err), restore(ctx))
	}
	pb.log.Info("Stopped the webhook and deleted its MutatingWebhookConfiguration for the series without it", "name", registrationName)
	if err := pb.waitAdmission(ctx, false); err != nil {
		return nil, errors.Join(err, restore(ctx))
	}
	return restore, nil
}

// hasFlag reports whether a flag set's help lists flag.
func hasFlag(help []byte, flag string) bool {
	return regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(flag) + `\b`).Match(help)
}

// webhookExited reports the webhook's exit, unless it was stopped on purpose.
func (pb *podbridge) webhookExited() error {
	if pb.webhookStopped {
		return nil
	}
	return pb.webhook.Exited()
}
