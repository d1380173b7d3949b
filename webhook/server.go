package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/hostaccount"
	"github.com/podbridge/podbridge/internal/hostcopy"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/metricsauth"
	"github.com/podbridge/podbridge/policy"
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
	// Certs says where the serving certificate comes from. Its Host and
	// Inject are filled in here; CertDir is where the server reads it.
	Certs certs.Options

	// MetricsBindAddress is where the metrics are served, over TLS and
	// only to callers the host apiserver authenticates and authorizes
	// (internal/metricsauth); "0" turns them off. MetricsCertDir holds
	// their tls.crt and tls.key; empty, the certificate is self-signed.
	MetricsBindAddress     string
	MetricsCertDir         string
	HealthProbeBindAddress string
	PprofBindAddress       string

	// Limits cap what the virtual cluster makes on the host.
	Limits caps.Limits

	// Registration is kept in the virtual cluster with the current CA
	// bundle. With an empty URL, only the CA bundle of an existing
	// configuration (applied by GitOps) is kept current.
	Registration Registration
}

// Validate reports what New cannot run with, by field: whoever builds the
// Options (the command, podbridge-dev, tests) gets the same checks.
func (o Options) Validate() error {
	var errs field.ErrorList
	if err := o.Translate.Validate(); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("translate"), "", err.Error()))
	}
	errs = append(errs, policy.ValidateLevel(field.NewPath("podSecurityLevel"), o.PodSecurityLevel)...)
	if o.HostTimeout <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("hostTimeout"), o.HostTimeout.String(), "must be positive"))
	}
	if o.Registration.URL != "" {
		timeout := time.Duration(o.Registration.TimeoutSeconds) * time.Second
		switch {
		case timeout < time.Second || timeout > 30*time.Second:
			errs = append(errs, field.Invalid(field.NewPath("registration", "timeoutSeconds"), o.Registration.TimeoutSeconds, "must be between 1 and 30"))
		case o.HostTimeout >= timeout:
			errs = append(errs, field.Invalid(field.NewPath("hostTimeout"), o.HostTimeout.String(),
				fmt.Sprintf("must be shorter than the webhook timeout %s, so tenants get podbridge's answer", timeout)))
		}
	}
	if err := errs.ToAggregate(); err != nil {
		return fmt.Errorf("webhook configuration: %w", err)
	}
	return nil
}

// New builds a manager that serves pod admission, once the serving
// certificate is in place (the server cannot start without one).
func New(ctx context.Context, o Options) (manager.Manager, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	security, err := NewSecurityPolicy(o.PodSecurityLevel)
	if err != nil {
		return nil, err
	}
	// Direct clients: the webhook reads a handful of objects per request,
	// and a cache of pods would cost memory proportional to their number.
	host, err := client.New(o.Host, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating host client: %w", err)
	}
	virtual, err := client.New(o.Virtual, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating virtual client: %w", err)
	}
	if err := hostaccount.Check(ctx, host, o.Translate.HostNamespace, o.Translate.HostServiceAccount, o.Translate.VCluster); err != nil {
		return nil, err
	}

	// The keeper is made below (it needs the manager's recorder); the
	// server applies this option when it starts, after New returns.
	var keeper *certs.Keeper
	ours := labels.SelectorFromSet(labels.Set{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: o.Translate.VCluster})
	mgr, err := ctrl.NewManager(o.Host, manager.Options{
		Scheme: kube.Scheme,
		// The manager's cache holds only the metadata of this virtual
		// cluster's host copies and token Secrets: the caps count them.
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{o.Translate.HostNamespace: {}},
			ByObject: map[client.Object]cache.ByObject{
				// Only what the budget reads of them: a token Secret per pod.
				copyMetadata("ConfigMap"): {Label: ours, Transform: caps.BudgetFields},
				copyMetadata("Secret"):    {Label: ours, Transform: caps.BudgetFields},
				// And of its host pods, by name alone: the cap on host pods
				// counts them.
				copyMetadata("Pod"): {Label: ours, Transform: nameOnly},
				// And of its host Services and NetworkPolicies: the caps on them.
				copyMetadata("Service"):       {Label: ours, Transform: nameOnly},
				copyMetadata("NetworkPolicy"): {Label: ours, Transform: nameOnly},
				// And of its host claims' requests: the cap on their storage.
				&corev1.PersistentVolumeClaim{}: {Label: ours, Transform: requestsOnly},
			},
			ReaderFailOnMissingInformer: true,
		},
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host:    o.BindAddress,
			Port:    o.Port,
			CertDir: o.Certs.CertDir,
			// Only the virtual apiserver may call: anyone else who can reach
			// the port could otherwise make podbridge create host pods
			// (issue 12). Callers without a valid client certificate are
			// refused in the TLS handshake, before any request is read.
			TLSOpts: []func(*tls.Config){func(c *tls.Config) {
				c.MinVersion = tls.VersionTLS12
				keeper.ClientVerifier().ConfigureServer(c)
			}},
		}),
		Metrics:                metricsauth.Options(o.MetricsBindAddress, o.MetricsCertDir),
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		PprofBindAddress:       o.PprofBindAddress,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}

	certOpts := o.Certs
	certOpts.Host = host
	certOpts.Namespace = o.Translate.HostNamespace
	certOpts.VCluster = o.Translate.VCluster
	certOpts.Recorder = mgr.GetEventRecorder(FieldManager)
	registration, err := newRegistrationKeeper(o.Virtual, virtual, o.Registration, func(ctx context.Context) ([]byte, error) { return keeper.CA(ctx) })
	if err != nil {
		return nil, err
	}
	certOpts.Inject = registration.SetCABundle
	if keeper, err = certs.NewKeeper(certOpts); err != nil {
		return nil, err
	}
	if err := keeper.Prepare(ctx); err != nil {
		return nil, fmt.Errorf("preparing the serving certificate and client CA: %w", err)
	}
	if err := mgr.Add(keeper); err != nil {
		return nil, err
	}
	if err := mgr.Add(registration); err != nil {
		return nil, err
	}

	originals, err := newOriginalsCache(ctx, o.Virtual)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(originals); err != nil {
		return nil, err
	}

	for _, kind := range []string{"ConfigMap", "Secret"} {
		// Registered now, so the first admission finds the informers.
		if _, err := mgr.GetCache().GetInformer(ctx, copyMetadata(kind), cache.BlockUntilSynced(false)); err != nil {
			return nil, fmt.Errorf("watching host %s copies: %w", kind, err)
		}
	}
	hostPods := caps.NewHostPods(o.Limits.MaxHostPods)
	hostServices := caps.NewHostServices(o.Limits.MaxHostServices)
	hostPolicies := caps.NewHostNetworkPolicies(o.Limits.MaxHostNetworkPolicies)
	for kind, counter := range map[string]*caps.HostObjects{"Pod": hostPods, "Service": hostServices, "NetworkPolicy": hostPolicies} {
		informer, err := mgr.GetCache().GetInformer(ctx, copyMetadata(kind), cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("watching host %ss: %w", kind, err)
		}
		if _, err := informer.AddEventHandler(counter.Handler()); err != nil {
			return nil, fmt.Errorf("counting host %ss: %w", kind, err)
		}
	}
	hostStorage := caps.NewHostStorage(o.Limits.MaxClaimStorage)
	claims, err := mgr.GetCache().GetInformer(ctx, &corev1.PersistentVolumeClaim{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching host PersistentVolumeClaims: %w", err)
	}
	if _, err := claims.AddEventHandler(hostStorage.Handler()); err != nil {
		return nil, fmt.Errorf("counting host PersistentVolumeClaims: %w", err)
	}
	o.Limits.Publish()

	// GetWebhookServer adds the server to the manager's runnables.
	server := mgr.GetWebhookServer()
	// One handler per path, each registered as its own webhook (see
	// Registration.Configuration), each refusing requests of other kinds,
	// and each refusing a body over the request cap before reading it.
	register := func(path string, h admission.Handler) {
		server.Register(path, limitBody(o.Limits.MaxRequestBytes, &admission.Webhook{Handler: h}))
	}
	register(translate.WebhookPathPodUpdate, updateGuard{})
	hostGate := policy.Gate{Security: security, Config: o.Translate, MaxTokensPerPod: o.Limits.MaxTokensPerPod}
	register(translate.WebhookPathEphemeralContainers, &ephemeralContainersCheck{Config: o.Translate, Gate: hostGate})
	register(translate.WebhookPath, &podMutator{
		Host:        host,
		Virtual:     virtual,
		Config:      o.Translate,
		Gate:        hostGate,
		HostPods:    hostPods,
		HostTimeout: o.HostTimeout,
		NewSyncID:   uuid.NewString,
		NameSuffix:  func() string { return utilrand.String(5) },
		Originals:   originals,
		Copies: &hostcopy.Writer{
			Host: host, FieldManager: FieldManager, Config: o.Translate,
			Budget: &caps.Budget{
				Reader: mgr.GetCache(), Namespace: o.Translate.HostNamespace, VCluster: o.Translate.VCluster, Limits: o.Limits,
			},
		},
	})
	for path, update := range map[string]bool{translate.WebhookPathService: false, translate.WebhookPathServiceUpdate: true} {
		register(path, &serviceMutator{
			Host: host, Virtual: virtual, Config: o.Translate, Gate: hostGate, HostTimeout: o.HostTimeout,
			NewSyncID: uuid.NewString, NameSuffix: func() string { return utilrand.String(5) },
			HostServices: hostServices, Update: update,
		})
	}
	for path, update := range map[string]bool{translate.WebhookPathNetworkPolicy: false, translate.WebhookPathNetworkPolicyUpdate: true} {
		register(path, &networkPolicyMutator{
			Host: host, Virtual: virtual, Config: o.Translate, Gate: hostGate, HostTimeout: o.HostTimeout,
			NewSyncID: uuid.NewString, NameSuffix: func() string { return utilrand.String(5) },
			HostPolicies: hostPolicies, Update: update,
		})
	}
	for path, update := range map[string]bool{translate.WebhookPathClaim: false, translate.WebhookPathClaimUpdate: true} {
		register(path, &claimMutator{
			Host: host, Virtual: virtual, Config: o.Translate, Gate: hostGate, HostTimeout: o.HostTimeout,
			NewSyncID: uuid.NewString, NameSuffix: func() string { return utilrand.String(5) },
			Storage: hostStorage, Update: update,
		})
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", passOnce(server.StartedChecker())); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Run serves pod admission until ctx is done.
func Run(ctx context.Context, o Options) error {
	mgr, err := New(ctx, o)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// passOnce runs check until it passes once, then passes without running
// it: the server's check opens a TLS connection without a client
// certificate, which the server refuses and logs, and a probe every few
// seconds would bury the refusals worth reading. The server, once
// listening, listens until the manager stops.
func passOnce(check healthz.Checker) healthz.Checker {
	var passed atomic.Bool
	return func(req *http.Request) error {
		if passed.Load() {
			return nil
		}
		if err := check(req); err != nil {
			return err
		}
		passed.Store(true)
		return nil
	}
}

// nameOnly keeps of a cached object what identifies it: the cap on host
// pods reads names, and a pod's metadata is mostly podbridge's annotations.
func nameOnly(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
	}}, nil
}

// requestsOnly keeps of a cached host claim its name and resource
// requests: the cap on requested storage reads nothing else.
func requestsOnly(obj any) (any, error) {
	c, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return obj, nil
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace, UID: c.UID, ResourceVersion: c.ResourceVersion},
		Spec:       corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: c.Spec.Resources.Requests}},
	}, nil
}

func copyMetadata(kind string) *metav1.PartialObjectMetadata {
	apiVersion := "v1"
	if kind == "NetworkPolicy" {
		apiVersion = "networking.k8s.io/v1"
	}
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}}
}

// limitBody refuses request bodies over limit bytes (0: no cap) with a
// 413 that names the cap, without reading more than limit+1 bytes of them.
func limitBody(limit int64, next http.Handler) http.Handler {
	if limit <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tooLarge := func(size string) {
			caps.Refused(caps.FlagMaxRequestBytes)
			http.Error(w, fmt.Sprintf("admission request of %s bytes is larger than podbridge's limit of %d bytes (--%s)", size, limit, caps.FlagMaxRequestBytes), http.StatusRequestEntityTooLarge)
		}
		if r.ContentLength > limit {
			caps.ObserveRequestBytes(r.ContentLength)
			tooLarge(strconv.FormatInt(r.ContentLength, 10))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		_ = r.Body.Close()
		if err != nil {
			http.Error(w, fmt.Sprintf("reading the admission request: %v", err), http.StatusBadRequest)
			return
		}
		caps.ObserveRequestBytes(int64(len(body)))
		if int64(len(body)) > limit {
			tooLarge("more than " + strconv.FormatInt(limit, 10))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}
