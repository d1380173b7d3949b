package reflector

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/hostaccount"
	"github.com/podbridge/podbridge/internal/hostcopy"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/metricsauth"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// FieldManager names the reflector's writes in both clusters.
const FieldManager = translate.FieldManagerReflector

// DefaultNodeGracePeriod is how long a virtual node that is no tenant node
// carries no host pod before it is removed when Options leave it unset.
const DefaultNodeGracePeriod = 30 * time.Second

// Options configure a reflector.
type Options struct {
	Host, Virtual *rest.Config
	Translate     translate.Config
	// PodSecurityLevel is the Pod Security Standards level of the host-side
	// gate every host pod write passes, as the webhook's (empty: baseline).
	PodSecurityLevel string
	// VirtualRequestTimeout is the virtual apiserver's --request-timeout
	// (0: kube-apiserver's default), past which no create stores a pod.
	VirtualRequestTimeout time.Duration
	// OrphanGracePeriod is how old a host pod without a virtual pod must be
	// before it is deleted (0: translate.OrphanGracePeriod of
	// VirtualRequestTimeout). A shorter one may delete the host pod of a
	// create that the tenant's later admission steps are still on: that
	// pod is then failed as HostPodDeleted. Test beds shorten it.
	OrphanGracePeriod time.Duration
	// MaxConcurrentReconciles is the number of pod pairs handled at once.
	MaxConcurrentReconciles int
	// NodeGracePeriod is how long a virtual node that is no tenant node
	// (translate.TenantNode) must carry no host pod before it is removed
	// (0: DefaultNodeGracePeriod).
	NodeGracePeriod time.Duration
	// ResyncPeriod is how often every pod pair and virtual node is
	// reconciled without an event (0: DefaultResyncPeriod). A pass also runs
	// at start-up.
	ResyncPeriod time.Duration
	// SkipControllerNameValidation lets one process build the reflector
	// more than once (tests restart it); controller-runtime otherwise
	// refuses a second controller of the same name.
	SkipControllerNameValidation bool
	// TokenRefreshAfter, when set, refreshes projected tokens this long
	// after they are issued, if sooner than the usual 80% of their lifetime
	// (never later). The virtual apiserver issues no token shorter than 10
	// minutes, so this is how a test bed sees a refreshed token reach a
	// running container; 0 keeps the kubelet's schedule.
	TokenRefreshAfter time.Duration

	// DisableEvents turns off copying host pod events to virtual pods
	// (which needs list and watch of host events).
	DisableEvents bool
	// Kubelet is the endpoint virtual nodes advertise as their address
	// and kubelet port: where the virtual apiserver reaches podbridge's
	// kubelet API (package kubeletproxy), which the command runs beside
	// the reflector. Empty: virtual nodes advertise none (no logs, exec,
	// attach or port-forward).
	Kubelet translate.KubeletEndpoint

	// Limits cap the host copies the reflector makes (copies and their
	// bytes) and the tokens of a pod it makes again or requests tokens for
	// (the webhook enforces the request size).
	Limits caps.Limits

	LeaderElection   bool
	LeaderElectionID string

	// MetricsBindAddress is where the metrics are served, over TLS and
	// only to callers the host apiserver authenticates and authorizes
	// (internal/metricsauth); "0" turns them off. MetricsCertDir holds
	// their tls.crt and tls.key; empty, the certificate is self-signed.
	MetricsBindAddress     string
	MetricsCertDir         string
	HealthProbeBindAddress string
	PprofBindAddress       string
}

// Validate reports what NewManager cannot run with, by field: whoever
// builds the Options (the command, podbridge-dev, tests) gets the same checks.
func (o Options) Validate() error {
	var errs field.ErrorList
	if err := o.Translate.Validate(); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("translate"), "", err.Error()))
	}
	errs = append(errs, policy.ValidateLevel(field.NewPath("podSecurityLevel"), o.PodSecurityLevel)...)
	if o.VirtualRequestTimeout < 0 {
		errs = append(errs, field.Invalid(field.NewPath("virtualRequestTimeout"), o.VirtualRequestTimeout.String(), "must not be negative (0: kube-apiserver's default of 1m)"))
	}
	if o.OrphanGracePeriod < 0 {
		errs = append(errs, field.Invalid(field.NewPath("orphanGracePeriod"), o.OrphanGracePeriod.String(), "must not be negative (0: the virtual request timeout plus a margin)"))
	}
	if o.Kubelet.Address != "" && (o.Kubelet.Port < 1 || o.Kubelet.Port > 65535) {
		errs = append(errs, field.Invalid(field.NewPath("kubelet", "port"), o.Kubelet.Port, "must be a port number"))
	}
	if o.TokenRefreshAfter != 0 && o.TokenRefreshAfter < time.Second {
		errs = append(errs, field.Invalid(field.NewPath("tokenRefreshAfter"), o.TokenRefreshAfter.String(), "must be 0 (80% of the token's lifetime) or at least 1s"))
	}
	if o.MaxConcurrentReconciles < 0 {
		errs = append(errs, field.Invalid(field.NewPath("maxConcurrentReconciles"), o.MaxConcurrentReconciles, "must not be negative"))
	}
	if err := errs.ToAggregate(); err != nil {
		return fmt.Errorf("reflector configuration: %w", err)
	}
	return nil
}

// NewManager builds a manager on the host cluster with the virtual cluster
// attached and the reflector's controllers registered.
//
// Pods read from either cache share their maps and slices with it (no deep
// copy per read: a reconcile runs per status change): the reflector reads
// them and writes only copies (translate's functions copy what they change).
func NewManager(o Options) (manager.Manager, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if safe := translate.OrphanGracePeriod(o.VirtualRequestTimeout); o.OrphanGracePeriod == 0 {
		o.OrphanGracePeriod = safe
	} else if o.OrphanGracePeriod < safe {
		logf.Log.WithName("reflector").Info("The orphan grace period is shorter than the virtual apiserver's request timeout allows: a create still in the tenant's admission chain may find its host pod deleted",
			"orphanGracePeriod", o.OrphanGracePeriod, "safe", safe)
	}
	ours := labels.SelectorFromSet(labels.Set{
		translate.LabelManagedBy: translate.ManagedByValue,
		translate.LabelVCluster:  o.Translate.VCluster,
	})
	mgr, err := ctrl.NewManager(o.Host, manager.Options{
		Scheme: kube.Scheme,
		// The cache below asks for a mapping on every read.
		MapperProvider: kube.RememberingMapper,
		Cache: cache.Options{
			// Only this virtual cluster's pods in the host namespace: the
			// reflector neither needs nor may read other tenants' pods.
			DefaultNamespaces: map[string]cache.Config{o.Translate.HostNamespace: {}},
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Pod{}: {Label: ours, Transform: hostPodTransform, UnsafeDisableDeepCopy: ptr.To(true)},
				// This virtual cluster's host Services only, with their
				// managed fields: when the webhook last wrote one.
				&corev1.Service{}: {Label: ours},
				// This virtual cluster's own host EndpointSlices only: the
				// host's endpointslice controller copies a host Service's
				// labels, podbridge's included, onto the slices it makes
				// for a Service with a selector, which are the host's.
				&discoveryv1.EndpointSlice{}: {Label: labels.SelectorFromSet(translate.OwnEndpointSliceLabels(o.Translate.VCluster)), Transform: cache.TransformStripManagedFields()},
				// And its host NetworkPolicies, the isolation policy included.
				&networkingv1.NetworkPolicy{}: {Label: ours},
				// And its host claims, likewise.
				&corev1.PersistentVolumeClaim{}: {Label: ours},
				// Host StorageClasses (cluster-scoped, few), for their mirrors.
				&storagev1.StorageClass{}: {Transform: cache.TransformStripManagedFields()},
				// Events of the host namespace, for the event copy
				// (events.go): those about its pods and claims.
				&corev1.Event{}: {Transform: cache.TransformStripManagedFields()},
				// Only podbridge's copies and token Secrets, by metadata.
				configMapCopies.metadata(): {Label: ours, Transform: cache.TransformStripManagedFields()},
				secretCopies.metadata():    {Label: ours, Transform: cache.TransformStripManagedFields()},
			},
			// A read of a kind no informer watches fails rather than
			// starting one: a full Secret informer would cache their data.
			ReaderFailOnMissingInformer: true,
		},
		Controller:                    config.Controller{SkipNameValidation: ptr.To(o.SkipControllerNameValidation)},
		Metrics:                       metricsauth.Options(o.MetricsBindAddress, o.MetricsCertDir),
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		PprofBindAddress:              o.PprofBindAddress,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.Translate.HostNamespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating host manager: %w", err)
	}
	checkCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := hostaccount.Check(checkCtx, mgr.GetAPIReader(), o.Translate.HostNamespace, o.Translate.HostServiceAccount, o.Translate.VCluster); err != nil {
		return nil, err
	}
	virtual, err := cluster.New(o.Virtual, func(co *cluster.Options) {
		co.Scheme = kube.Scheme
		co.Cache.ReaderFailOnMissingInformer = true
		// The originals of host copies are watched by metadata only: their
		// content is read live when their resourceVersion moves.
		co.Cache.ByObject = map[client.Object]cache.ByObject{
			&corev1.Pod{}:                   {Transform: virtualPodTransform, UnsafeDisableDeepCopy: ptr.To(true)},
			&corev1.Service{}:               {Transform: cache.TransformStripManagedFields()},
			&discoveryv1.EndpointSlice{}:    {Transform: cache.TransformStripManagedFields()},
			&networkingv1.NetworkPolicy{}:   {Transform: cache.TransformStripManagedFields()},
			&corev1.PersistentVolumeClaim{}: {Transform: cache.TransformStripManagedFields()},
			&storagev1.StorageClass{}:       {Transform: cache.TransformStripManagedFields()},
			&corev1.PersistentVolume{}:      {Transform: cache.TransformStripManagedFields()},
			// Namespaces' labels, which namespaceSelectors match.
			&corev1.Namespace{}:        {Transform: cache.TransformStripManagedFields()},
			configMapCopies.metadata(): {Transform: cache.TransformStripManagedFields()},
			secretCopies.metadata():    {Transform: cache.TransformStripManagedFields()},
		}
	})
	if err != nil {
		return nil, fmt.Errorf("creating virtual cluster client: %w", err)
	}
	if err := mgr.Add(virtual); err != nil {
		return nil, fmt.Errorf("adding virtual cluster: %w", err)
	}
	if err := indexVirtualPodDependencies(context.Background(), virtual.GetCache(), o.Translate); err != nil {
		return nil, err
	}
	if err := indexTokenSecrets(context.Background(), mgr.GetCache()); err != nil {
		return nil, err
	}
	if err := indexHostPods(context.Background(), mgr.GetCache()); err != nil {
		return nil, err
	}
	if err := indexHostPodsByNode(context.Background(), mgr.GetCache()); err != nil {
		return nil, err
	}
	if err := indexEndpointSlices(context.Background(), mgr.GetCache(), virtual.GetCache()); err != nil {
		return nil, err
	}
	resync := o.ResyncPeriod
	if resync <= 0 {
		resync = DefaultResyncPeriod
	}

	level := o.PodSecurityLevel
	if level == "" {
		level = "baseline"
	}
	security, err := policy.NewSecurityPolicy(level)
	if err != nil {
		return nil, fmt.Errorf("reflector configuration: %w", err)
	}

	// One gate for every host write the reflector makes.
	gate := policy.Gate{Security: security, Config: o.Translate, MaxTokensPerPod: o.Limits.MaxTokensPerPod}
	guard := &nodeGuard{}
	gone := newGonePods(o.OrphanGracePeriod, clock.RealClock{})
	pods := &podReconciler{
		Host:              mgr.GetClient(),
		HostReader:        mgr.GetAPIReader(),
		Virtual:           virtual.GetClient(),
		VirtualReader:     virtual.GetAPIReader(),
		Recorder:          virtual.GetEventRecorder(FieldManager),
		Config:            o.Translate,
		Gate:              gate,
		OrphanGracePeriod: o.OrphanGracePeriod,
		Clock:             clock.RealClock{},
		Nodes:             guard,
		Kubelet:           o.Kubelet,
		Gone:              gone,
	}
	if err := pods.SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
		return nil, err
	}
	nodeGrace := o.NodeGracePeriod
	if nodeGrace <= 0 {
		nodeGrace = DefaultNodeGracePeriod
	}
	nodes := &nodeReconciler{
		Host:             mgr.GetClient(),
		HostReader:       mgr.GetAPIReader(),
		Virtual:          virtual.GetClient(),
		Nodes:            guard,
		Config:           o.Translate,
		EmptyGracePeriod: nodeGrace,
		Clock:            clock.RealClock{},
		Kubelet:          o.Kubelet,
	}
	if err := nodes.SetupWithManager(mgr, virtual, resync); err != nil {
		return nil, err
	}
	// The Service, NetworkPolicy and claim reconcilers share these.
	pairs := pairDeps{
		Host:          mgr.GetClient(),
		HostReader:    mgr.GetAPIReader(),
		Virtual:       virtual.GetClient(),
		VirtualReader: virtual.GetAPIReader(),
		Recorder:      virtual.GetEventRecorder(FieldManager),
		Config:        o.Translate,
		Gate:          gate,
		GracePeriod:   o.OrphanGracePeriod,
		Clock:         clock.RealClock{},
	}
	if err := newServiceReconciler(pairs).SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
		return nil, err
	}
	endpointSlices := &endpointSliceReconciler{
		Host:     mgr.GetClient(),
		Virtual:  virtual.GetClient(),
		Recorder: virtual.GetEventRecorder(FieldManager),
		Config:   o.Translate,
		Gate:     gate,
	}
	if err := endpointSlices.SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
		return nil, err
	}
	if err := newPolicyReconciler(pairs).SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
		return nil, err
	}
	if err := newClaimReconciler(pairs).SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
		return nil, err
	}
	if err := indexHostClaimsByVolume(context.Background(), mgr.GetCache()); err != nil {
		return nil, err
	}
	volumes := &volumeReconciler{Host: mgr.GetClient(), Virtual: virtual.GetClient(), Config: o.Translate}
	if err := volumes.SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
		return nil, err
	}
	classes := &storageClassReconciler{Host: mgr.GetClient(), Virtual: virtual.GetClient(), Config: o.Translate}
	if err := classes.SetupWithManager(mgr, virtual, resync); err != nil {
		return nil, err
	}
	budget := &caps.Budget{Reader: mgr.GetClient(), Namespace: o.Translate.HostNamespace, VCluster: o.Translate.VCluster, Limits: o.Limits}
	o.Limits.Publish()
	for _, kind := range []copyKind{configMapCopies, secretCopies} {
		copies := &copyReconciler{
			Copies: &hostcopy.Writer{
				Host: mgr.GetClient(), Reader: mgr.GetAPIReader(), FieldManager: FieldManager, Config: o.Translate, Budget: budget,
			},
			Recorder:      virtual.GetEventRecorder(FieldManager),
			Kind:          kind,
			Host:          mgr.GetClient(),
			Virtual:       virtual.GetClient(),
			VirtualReader: virtual.GetAPIReader(),
			Config:        o.Translate,
			GracePeriod:   o.OrphanGracePeriod,
			Clock:         clock.RealClock{},
		}
		if err := copies.SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
			return nil, err
		}
	}
	tokens := &tokenReconciler{
		Host:          mgr.GetClient(),
		Virtual:       virtual.GetClient(),
		VirtualReader: virtual.GetAPIReader(),
		Config:        o.Translate,
		GracePeriod:   o.OrphanGracePeriod,
		RefreshAfter:  o.TokenRefreshAfter,
		MaxPerPod:     o.Limits.MaxTokensPerPod,
		Clock:         clock.RealClock{},
		Gone:          gone,
	}
	if err := tokens.SetupWithManager(mgr, virtual, o.MaxConcurrentReconciles, resync); err != nil {
		return nil, err
	}
	if !o.DisableEvents {
		events := &eventReconciler{
			Host:    mgr.GetClient(),
			Virtual: virtual.GetClient(),
			Config:  o.Translate,
			Limiter: flowcontrol.NewTokenBucketRateLimiter(DefaultEventQPS, DefaultEventBurst),
			Clock:   clock.RealClock{},
		}
		if err := events.SetupWithManager(mgr, o.MaxConcurrentReconciles); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	// The reflector serves nothing but probes and metrics: ready once it
	// answers, so a rollout of the manifests' Deployment can complete.
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Run runs the reflector until ctx is done.
func Run(ctx context.Context, o Options) error {
	mgr, err := NewManager(o)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
