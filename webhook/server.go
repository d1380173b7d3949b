package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/google/uuid"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// Options configure a webhook server.
type Options struct {
	Host, Virtual *rest.Config
	Translate     translate.Config
	// PodSecurityLevel is the Pod Security Standards level pods must meet.
	PodSecurityLevel string
	// HostTimeout bounds each host call; keep it well under the
	// registration's timeout so the tenant gets podbridge's answer.
	HostTimeout time.Duration

	BindAddress string
	Port        int
	// CertDir holds tls.crt and tls.key, reloaded when they change.
	CertDir string

	MetricsBindAddress     string
	HealthProbeBindAddress string

	// Registration, when set, is applied in the virtual cluster at start-up.
	Registration *Registration
}

// NewManager builds a manager that serves pod admission.
func NewManager(o Options) (manager.Manager, error) {
	if err := o.Translate.Validate(); err != nil {
		return nil, fmt.Errorf("webhook configuration: %w", err)
	}
	policy, err := NewSecurityPolicy(o.PodSecurityLevel)
	if err != nil {
		return nil, err
	}
	// Direct clients: the webhook reads a handful of objects per request,
	// and a cache would cost memory proportional to the number of pods.
	host, err := client.New(o.Host, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating host client: %w", err)
	}
	virtual, err := client.New(o.Virtual, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating virtual client: %w", err)
	}
	server := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    o.BindAddress,
		Port:    o.Port,
		CertDir: o.CertDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }},
	})

	mgr, err := ctrl.NewManager(o.Host, manager.Options{
		Scheme:                 kube.Scheme,
		WebhookServer:          server,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthProbeBindAddress,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	// GetWebhookServer adds the server to the manager's runnables.
	mgr.GetWebhookServer().Register(Path, &admission.Webhook{Handler: &PodMutator{
		Host:        host,
		Virtual:     virtual,
		Config:      o.Translate,
		Policy:      policy,
		HostTimeout: o.HostTimeout,
		NewSyncID:   func() string { return uuid.NewString() },
		NameSuffix:  func() string { return utilrand.String(5) },
	}})
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return nil, err
	}
	if o.Registration != nil {
		reg := *o.Registration
		err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			// The virtual apiserver may come up after podbridge: retry
			// until it accepts the registration.
			log := ctrl.Log.WithName("registration")
			return wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
				if err := Register(ctx, virtual, reg); err != nil {
					log.Error(err, "Registration failed, retrying")
					return false, nil
				}
				log.Info("Registered MutatingWebhookConfiguration", "name", reg.Name, "url", reg.URL)
				return true, nil
			})
		}))
		if err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// Run serves pod admission until ctx is done.
func Run(ctx context.Context, o Options) error {
	mgr, err := NewManager(o)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
