// Package devenv runs podbridge end to end on this machine: a host and a
// virtual control plane, podbridge's webhook registered in the virtual one
// with a self-managed certificate, and the reflector, each component on the
// same code path as against real clusters. `podbridge dev` and the
// integration tests use it.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/controlplane"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

// Options configure a development environment.
type Options struct {
	Assets controlplane.Assets
	// StateDir receives kubeconfigs, certificates and logs.
	StateDir string
	// Nodes and PodsPerNode size the host's kwok nodes.
	Nodes, PodsPerNode int
	// Translate names the virtual cluster and the host namespace.
	Translate translate.Config
	// OrphanGracePeriod is the reflector's; tests shorten it.
	OrphanGracePeriod time.Duration
	// WebhookTimeout is the registration's timeoutSeconds.
	WebhookTimeout time.Duration
}

// Defaults returns the options `podbridge dev` uses.
func Defaults() Options {
	return Options{
		StateDir:          ".podbridge/dev",
		Nodes:             3,
		PodsPerNode:       1000,
		Translate:         translate.Config{VCluster: "dev", HostNamespace: "podbridge-dev", HostServiceAccount: "default"},
		OrphanGracePeriod: 30 * time.Second,
		WebhookTimeout:    10 * time.Second,
	}
}

// Env is a running development environment.
type Env struct {
	Host, Virtual *controlplane.Plane
	Options       Options

	cancel context.CancelFunc
	done   chan error
}

// Start brings everything up and returns once a dry-run pod create in the
// virtual cluster passes through the webhook.
func Start(ctx context.Context, opts Options) (env *Env, err error) {
	env = &Env{Options: opts}
	defer func() {
		if err != nil {
			err = errors.Join(err, env.Stop())
			env = nil
		}
	}()
	planeOpts := controlplane.Options{Assets: opts.Assets, Dir: opts.StateDir, Nodes: opts.Nodes, PodsPerNode: opts.PodsPerNode}
	hostErr := make(chan error, 1)
	go func() {
		var err error
		env.Host, err = controlplane.StartHost(ctx, planeOpts)
		hostErr <- err
	}()
	env.Virtual, err = controlplane.StartVirtual(ctx, planeOpts)
	if err = errors.Join(err, <-hostErr); err != nil {
		return env, err
	}
	if err := prepareHostNamespace(ctx, env.Host.Config, opts.Translate); err != nil {
		return env, err
	}

	bundle, err := certs.NewSelfSigned([]string{"127.0.0.1", "localhost"}, time.Now(), 365*24*time.Hour)
	if err != nil {
		return env, err
	}
	certDir := filepath.Join(opts.StateDir, "webhook-certs")
	if err := bundle.WriteDir(certDir); err != nil {
		return env, err
	}
	port, err := freePort()
	if err != nil {
		return env, err
	}

	hostCfg := kube.WithLimits(env.Host.Config, kube.DefaultLimits, "podbridge-dev")
	virtualCfg := kube.WithLimits(env.Virtual.Config, kube.DefaultLimits, "podbridge-dev")
	webhookMgr, err := webhook.NewManager(webhook.Options{
		Host: hostCfg, Virtual: virtualCfg, Translate: opts.Translate,
		PodSecurityLevel: "baseline",
		HostTimeout:      opts.WebhookTimeout * 7 / 10,
		BindAddress:      "127.0.0.1", Port: port, CertDir: certDir,
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Registration: &webhook.Registration{
			Name:           "podbridge",
			URL:            "https://127.0.0.1:" + strconv.Itoa(port) + webhook.Path,
			CABundle:       bundle.CA,
			TimeoutSeconds: int32(opts.WebhookTimeout / time.Second),
		},
	})
	if err != nil {
		return env, err
	}
	reflectorMgr, err := reflector.NewManager(reflector.Options{
		Host: hostCfg, Virtual: virtualCfg, Translate: opts.Translate,
		OrphanGracePeriod:       opts.OrphanGracePeriod,
		MaxConcurrentReconciles: 16,
		MetricsBindAddress:      "0", HealthProbeBindAddress: "0",
	})
	if err != nil {
		return env, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	env.cancel = cancel
	env.done = make(chan error, 2)
	for _, mgr := range []manager.Manager{webhookMgr, reflectorMgr} {
		go func() { env.done <- mgr.Start(runCtx) }()
	}
	return env, env.waitForWebhook(ctx)
}

// Err returns a channel that yields an error when a podbridge component
// stopped on its own.
func (e *Env) Err() <-chan error { return e.done }

// Stop stops podbridge, then both control planes.
func (e *Env) Stop() error {
	if e == nil {
		return nil
	}
	var errs []error
	if e.cancel != nil {
		e.cancel()
		for range 2 {
			if err := <-e.done; err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
		}
		e.cancel = nil
	}
	errs = append(errs, e.Virtual.Stop(), e.Host.Stop())
	return errors.Join(errs...)
}

// prepareHostNamespace creates the host namespace and the service account
// host pods run as (a real host's controller manager would create the
// latter; the dev host has none).
func prepareHostNamespace(ctx context.Context, cfg *rest.Config, tc translate.Config) error {
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	objects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tc.HostNamespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tc.HostServiceAccount, Namespace: tc.HostNamespace}},
	}
	for _, obj := range objects {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating host %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitForWebhook waits until a dry-run pod create in the virtual cluster
// succeeds: the registration is in place and the webhook and the host
// answer.
func (e *Env) waitForWebhook(ctx context.Context) error {
	c, err := client.New(e.Virtual.Config, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "podbridge-ready-probe", Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	var lastErr error
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-e.done:
			return false, fmt.Errorf("podbridge stopped: %w", err)
		default:
		}
		pod := probe.DeepCopy()
		if lastErr = c.Create(ctx, pod, client.DryRunAll); lastErr != nil {
			return false, nil
		}
		// Until the registration is in place, pods are admitted without podbridge.
		if pod.Annotations[translate.AnnotationSyncID] == "" {
			lastErr = errors.New("the pod was admitted without podbridge's webhook")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the webhook: %w (last attempt: %v)", err, lastErr)
	}
	return nil
}
