// Package devenv runs podbridge end to end on this machine: a host and a
// virtual control plane, podbridge's webhook registered in the virtual one
// with a self-managed certificate, and the reflector with the virtual
// nodes' kubelet API. The webhook and the reflector run as processes of the
// production binary (`podbridge webhook`, `podbridge reflector`, through
// package podbridgeproc) with the flags the shipped control-plane pod gives
// them wherever they mean the same (podbridge_flags_test.go holds the two
// together). `podbridge-dev`, the integration tests and the real-node
// suite use it.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/staticpolicy"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
)

// Options configure a development environment.
type Options struct {
	Assets controlplane.Assets
	// Podbridge is the production binary, cmd/podbridge (bin/podbridge of
	// make build, or BuildPodbridge's): the webhook and the reflector run
	// as its processes, `podbridge webhook` and `podbridge reflector`, with
	// the flags the shipped control-plane pod gives them wherever they mean
	// the same.
	Podbridge string
	// Output, when set, receives the output of podbridge's processes too
	// (each also logs to StateDir/logs/NAME.log): podbridge-dev's
	// terminal, or WarningsOnly(os.Stderr) in tests.
	Output io.Writer
	// StateDir receives kubeconfigs, certificates and logs.
	StateDir string
	// Nodes and PodsPerNode size the host's kwok nodes.
	Nodes, PodsPerNode int
	// Translate names the virtual cluster and the host namespace.
	Translate translate.Config
	// OrphanGracePeriod is the reflector's (0: the virtual apiserver's
	// request timeout plus a margin, safe); tests shorten it.
	OrphanGracePeriod time.Duration
	// NodeGracePeriod is how long the reflector keeps a virtual node that
	// is no tenant node and carries no host pod.
	NodeGracePeriod time.Duration
	// WebhookTimeout is the registration's timeoutSeconds.
	WebhookTimeout time.Duration
	// PodSecurityLevel is the webhook's and the reflector's, and the one
	// the host namespace enforces (empty: baseline).
	PodSecurityLevel string
	// TokenRefreshAfter is the reflector's (0: 80% of a token's lifetime);
	// the real-node suite shortens it to see a refreshed token arrive.
	TokenRefreshAfter time.Duration
	// KwokRules are extra kwok rules for the host's kubelet API (see
	// controlplane.Options.KwokRules).
	KwokRules string
	// RealNode, when set, adds a real kubelet node to the host beside the
	// kwok nodes (root only; see package realnode). The virtual apiserver
	// then serves on the node's bridge address, behind the host Service
	// APIServerServiceName that Translate's APIServerHost/Port name, so
	// pods on the node reach it with their tokens, and the virtual
	// cluster's DNS server (coredns.yaml) runs there. The host gets a
	// dynamic provisioner whose volumes the node mounts, a default
	// StorageClass naming it and a WaitForFirstConsumer one, which
	// Translate then allows (see StorageClassName and
	// WaitForFirstConsumerClassName).
	RealNode *realnode.Options
	// ControlPlanePods, with RealNode, lets virtual clusters' control-plane
	// pods (`podbridge create`, manifests/virtualcluster) run on the real
	// node: the host apiserver serves on the node's bridge address, named
	// by its certificate as its kubernetes Service, the host runs
	// controlplane.PodControllers, and the node's firewall lets each
	// control-plane pod, by its address, reach the host apiserver's port
	// (realnode.ControlPlaneChain), no other pod.
	ControlPlanePods bool
	// TenantsOnRealNode, with RealNode, runs every tenant pod on the real
	// node, as a platform that keeps tenants on one node pool would: the
	// platform's enforced node selector (Translate.NodeSelector) names the
	// node's kubernetes.io/hostname and its enforced tolerations
	// (Translate.Tolerations) tolerate the node's taint, whatever the
	// tenant's pod asks. The conformance harness runs the suite this way.
	TenantsOnRealNode bool
	// RuntimeHandlers, with RealNode, are runtime handlers the real node
	// offers (each runc under its name) and tenants may use: for each, the
	// host gets a RuntimeClass of that name and handler, and
	// Translate.RuntimeClasses allows it, as a platform offering a runtime
	// would do.
	RuntimeHandlers []string
}

// Defaults returns the options `podbridge-dev` uses.
func Defaults() Options {
	return Options{
		StateDir:    ".podbridge/dev",
		Nodes:       3,
		PodsPerNode: 1000,
		Translate:   translate.Config{VCluster: "dev", HostNamespace: "podbridge-dev", HostServiceAccount: "podbridge-workloads"},
		// Short, so nodes visibly follow pods in a demo and in tests.
		NodeGracePeriod:  3 * time.Second,
		WebhookTimeout:   10 * time.Second,
		PodSecurityLevel: DefaultPodSecurityLevel,
	}
}

// Env is a running development environment.
type Env struct {
	Host, Virtual *controlplane.Plane
	// RealNode is the real node when Options.RealNode asked for one.
	RealNode *realnode.Node
	Options  Options
	// WebhookClient is what the virtual apiserver presents to the webhook,
	// and to podbridge's kubelet API.
	WebhookClient *controlplane.ClientCredentials
	// Kubelet is where podbridge serves the virtual nodes' kubelet API.
	Kubelet translate.KubeletEndpoint
	// KubeletCAFile is the CA of the kubelet API's serving certificate.
	KubeletCAFile string

	// stopControlPlanes ends the real node's control-plane exception
	// (Options.ControlPlanePods); controlPlanesDone says it has.
	stopControlPlanes context.CancelFunc
	controlPlanesDone chan error
	// hostOnBridge says the host apiserver serves on the real node's bridge
	// (Options.ControlPlanePods), so it stops before the bridge goes.
	hostOnBridge bool

	// failed receives an error when a podbridge component stops on its own.
	failed chan error

	// webhookProc and reflectorProc are podbridge's processes, each
	// started again with the same command line (ports included) after a
	// stop, as a restarted container would be.
	webhookProc, reflectorProc *podbridgeproc.Process

	mu        sync.Mutex // guards webhook, reflector and earlierMetrics
	webhook   *component
	reflector *component
	// earlierMetrics are the last scrapes of stopped runs (MetricSum).
	earlierMetrics []promscrape.Families
}

// Start brings everything up and returns once a dry-run pod create in the
// virtual cluster passes through the webhook.
func Start(ctx context.Context, opts Options) (env *Env, err error) {
	if opts.Podbridge == "" {
		return nil, errors.New("the podbridge binary (Options.Podbridge) is required: make build, or devenv.BuildPodbridge")
	}
	if opts.Translate.ClusterDomain == "" {
		opts.Translate.ClusterDomain = defaultClusterDomain
	}
	if opts.TenantsOnRealNode && opts.RealNode == nil {
		return nil, errors.New("every tenant pod on the real node (TenantsOnRealNode) needs a real node")
	}
	if len(opts.RuntimeHandlers) > 0 {
		if opts.RealNode == nil {
			return nil, errors.New("runtime handlers (RuntimeHandlers) need a real node")
		}
		for _, handler := range opts.RuntimeHandlers {
			if msgs := validation.IsDNS1123Label(handler); len(msgs) > 0 {
				return nil, fmt.Errorf("runtime handler %q: %s", handler, strings.Join(msgs, "; "))
			}
		}
		realNode := *opts.RealNode
		realNode.RuntimeHandlers = opts.RuntimeHandlers
		opts.RealNode = &realNode
		opts.Translate.RuntimeClasses = append(slices.Clone(opts.Translate.RuntimeClasses), opts.RuntimeHandlers...)
	}
	env = &Env{Options: opts, failed: make(chan error, 8)}
	defer func() {
		if err != nil {
			err = errors.Join(err, env.Stop())
			env = nil
		}
	}()
	// The virtual apiserver reads its webhook client certificate, named by
	// the webhook's address, at start, before the host (where the
	// self-managed webhook keeps it) is up: choose the port, holding it
	// while the control planes pick theirs, issue the certificate here and
	// store it in the host Secret the webhook then adopts.
	reserved, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return env, fmt.Errorf("choosing the webhook's port: %w", err)
	}
	port := reserved.Addr().(*net.TCPAddr).Port
	defer reserved.Close()
	// Likewise the kubelet API's port, which virtual nodes advertise, and
	// its serving certificate, whose CA the virtual apiserver reads at start.
	reservedKubelet, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return env, fmt.Errorf("choosing the kubelet API's port: %w", err)
	}
	kubeletPort := reservedKubelet.Addr().(*net.TCPAddr).Port
	defer reservedKubelet.Close()
	env.Kubelet = translate.KubeletEndpoint{Address: "127.0.0.1", Port: int32(kubeletPort)}
	kubeletServing, err := certs.NewSelfSigned([]string{env.Kubelet.Address}, time.Now(), 365*24*time.Hour)
	if err != nil {
		return env, fmt.Errorf("issuing the kubelet API's serving certificate: %w", err)
	}
	kubeletServingDir := filepath.Join(opts.StateDir, "kubelet-serving-ca")
	if err := os.MkdirAll(kubeletServingDir, 0o700); err != nil {
		return env, err
	}
	env.KubeletCAFile = filepath.Join(kubeletServingDir, certs.CAFile)
	if err := os.WriteFile(env.KubeletCAFile, kubeletServing.CA, 0o600); err != nil {
		return env, err
	}
	planeOpts := controlplane.Options{Assets: opts.Assets, Dir: opts.StateDir, Nodes: opts.Nodes, PodsPerNode: opts.PodsPerNode, KwokRules: opts.KwokRules}
	hostOpts, virtualOpts := planeOpts, planeOpts
	var realNodeCerts string
	if opts.RealNode != nil {
		// The bridge first: the virtual apiserver serves on its address.
		if env.RealNode, err = realnode.Start(ctx, *opts.RealNode); err != nil {
			return env, err
		}
		virtualOpts.BindAddress = env.RealNode.IP.String()
		if realNodeCerts, err = issueRealNodeCerts(opts.StateDir, env.RealNode.IP.String()); err != nil {
			return env, err
		}
		hostOpts.KubeletClientCertFile = filepath.Join(realNodeCerts, "client", certs.CertFile)
		hostOpts.KubeletClientKeyFile = filepath.Join(realNodeCerts, "client", certs.KeyFile)
		hostOpts.RealNodeKubeletCAFile = filepath.Join(realNodeCerts, "serving", certs.CAFile)
		// The node routes the host's Service range; its kube-proxy reads
		// the EndpointSlices the host's controllers fill, and its kubelet
		// mounts the volumes they provision.
		hostOpts.ServiceCIDR = env.RealNode.ServiceCIDR().String()
		hostOpts.RealNodeControllers = true
		if opts.ControlPlanePods {
			hostKubernetesIP, err := firstAddress(env.RealNode.ServiceCIDR().String())
			if err != nil {
				return env, err
			}
			hostOpts.HostForPods = env.RealNode.IP.String()
			env.hostOnBridge = true
			hostOpts.ServingNames = kubernetesServingNames(hostKubernetesIP, "")
		}
	} else if opts.ControlPlanePods {
		return env, errors.New("control-plane pods (ControlPlanePods) need a real node")
	}
	// podbridge pins the host's ClusterIPs on virtual Services: the
	// virtual apiserver's range must contain the host's, so it is the same.
	virtualOpts.ServiceCIDR = hostOpts.ServiceCIDR
	serviceRange := hostOpts.ServiceCIDR
	if serviceRange == "" {
		serviceRange = controlplane.ServiceClusterIPRange
	}
	kubernetesIP, dnsIP, err := serviceAddresses(serviceRange)
	if err != nil {
		return env, err
	}
	virtualOpts.ServingNames = kubernetesServingNames(kubernetesIP, opts.Translate.ClusterDomain)
	// Nodes may name no address but the kubelet API's, and nothing proxies.
	if virtualOpts.StaticPolicies, err = staticpolicy.YAML(env.Kubelet); err != nil {
		return env, err
	}
	// The virtual apiserver presents podbridge's client certificate to the
	// webhook, and the same to podbridge's kubelet API.
	planes, err := controlplane.StartPair(ctx, controlplane.PairOptions{
		Host: hostOpts, Virtual: virtualOpts,
		ClientCommonName: certs.ClientCommonNameFor(opts.Translate.HostNamespace, opts.Translate.VCluster),
		WebhookNames:     []string{"127.0.0.1:" + strconv.Itoa(port)},
		KubeletCAFile:    env.KubeletCAFile,
	})
	if err != nil {
		return env, err
	}
	env.Host, env.Virtual, env.WebhookClient = planes.Host, planes.Virtual, planes.Client
	webhookClient := planes.Client
	apiServerPort, err := portOf(env.Virtual.Config.Host)
	if err != nil {
		return env, err
	}
	// Host pods reach the virtual apiserver through a host Service, as
	// `kubernetes.default.svc` and their variables name it, and resolve
	// through the virtual cluster's DNS Service, each at an address fixed
	// in the host's range.
	pointAtServices(&opts.Translate, kubernetesIP, dnsIP)
	env.Options.Translate = opts.Translate
	// The real node joins while podbridge starts. Start returns only once
	// the join has ended, on every path: a caller's Stop must not race a
	// kubelet still being started (a failed start cuts the join short).
	joined := make(chan error, 1)
	if env.RealNode != nil {
		useRealNode(&opts.Translate)
		allowStorageClasses(&opts.Translate)
		if opts.TenantsOnRealNode {
			keepTenantsOn(&opts.Translate, env.RealNode.Name())
		}
		env.Options.Translate = opts.Translate
		joinCtx, cancelJoin := context.WithCancel(ctx)
		go func() { joined <- env.joinRealNode(joinCtx, realNodeCerts, int(apiServerPort)) }()
		defer func() {
			if err != nil {
				cancelJoin()
			}
			err = errors.Join(err, <-joined)
			cancelJoin()
		}()
	}
	if opts.PodSecurityLevel == "" {
		opts.PodSecurityLevel = DefaultPodSecurityLevel
		env.Options.PodSecurityLevel = opts.PodSecurityLevel
	}
	if err := prepareHost(ctx, env.Host.Config, opts.Translate, opts.PodSecurityLevel, opts.RuntimeHandlers); err != nil {
		return env, err
	}
	hostAdmin, err := client.New(env.Host.Config, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return env, err
	}
	if env.RealNode != nil {
		if err := createStorageClasses(ctx, hostAdmin); err != nil {
			return env, err
		}
	}
	var apiServerEndpoint string
	if env.RealNode != nil && env.RealNode.RunsKubeProxy() {
		apiServerEndpoint = env.RealNode.IP.String()
	}
	if env.RealNode != nil && opts.ControlPlanePods {
		hostPort, err := portOf(env.Host.Config.Host)
		if err != nil {
			return env, err
		}
		cpCtx, cancel := context.WithCancel(context.Background())
		env.stopControlPlanes, env.controlPlanesDone = cancel, make(chan error, 1)
		go func() {
			env.controlPlanesDone <- env.RealNode.AllowControlPlanes(cpCtx, hostAdmin, int(hostPort), 500*time.Millisecond)
		}()
	}
	if err := exposeVirtualAPIServer(ctx, hostAdmin, opts.Translate, apiServerPort, apiServerEndpoint); err != nil {
		return env, err
	}
	if err := webhookClient.StoreInHost(ctx, env.Host.Config, opts.Translate); err != nil {
		return env, err
	}
	if err := storeTLSSecret(ctx, env.Host.Config, opts.Translate, KubeletSecretName, kubeletServing); err != nil {
		return env, err
	}
	// The scraper of the processes' metrics: a host identity allowed GET
	// /metrics, trusting the certificate they serve them with.
	metricsCerts, err := certs.NewSelfSigned([]string{"127.0.0.1"}, time.Now(), 365*24*time.Hour)
	if err != nil {
		return env, fmt.Errorf("issuing the metrics certificate: %w", err)
	}
	metricsCertDir := filepath.Join(opts.StateDir, "metrics-certs")
	if err := metricsCerts.WriteDir(metricsCertDir); err != nil {
		return env, err
	}
	scraper, err := promscrape.ScraperClient(ctx, env.Host.Config, metav1.NamespaceDefault, metricsCerts.CA)
	if err != nil {
		return env, err
	}
	env.webhookProc, env.reflectorProc, err = commandLines(opts, podbridgeproc.Cluster{
		Binary:         opts.Podbridge,
		HostKubeconfig: env.Host.Kubeconfig, VirtualKubeconfig: env.Virtual.Kubeconfig,
		MetricsCertDir: metricsCertDir, MetricsClient: scraper,
		LogDir: filepath.Join(opts.StateDir, "logs"),
		Output: opts.Output,
	}, podbridgePorts{webhook: port, kubelet: kubeletPort})
	if err != nil {
		return env, err
	}
	reserved.Close() // the webhook's process binds it.
	reservedKubelet.Close()
	if err := env.startWebhook(ctx); err != nil {
		return env, err
	}
	if err := env.startReflector(ctx); err != nil {
		return env, err
	}
	if err := env.waitForWebhook(ctx); err != nil {
		return env, err
	}
	virtualAdmin, err := client.New(env.Virtual.Config, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return env, err
	}
	if err := pinKubernetesService(ctx, virtualAdmin, kubernetesIP, apiServerPort); err != nil {
		return env, err
	}
	if apiServerEndpoint == "" {
		return env, nil // no pod could run or reach the DNS server.
	}
	return env, installDNS(ctx, virtualAdmin)
}

// pointAtServices gives host pods the virtual apiserver through the host
// Service at kubernetesIP, port 443, and the virtual cluster's DNS
// Service at dnsIP unless tc names another.
func pointAtServices(tc *translate.Config, kubernetesIP, dnsIP string) {
	tc.KubernetesServiceIP, tc.APIServerHost, tc.APIServerPort = kubernetesIP, kubernetesIP, 443
	if tc.DNSNameserver == "" {
		tc.DNSNameserver = dnsIP
	}
	if tc.DNSService.Name == "" {
		tc.DNSService = DNSService
	}
}

// kubeletClientUser is the name in the certificate the host apiserver
// presents to the real node's kubelet.
const kubeletClientUser = "podbridge-dev-apiserver-kubelet-client"

// issueRealNodeCerts issues, under dir/real-node-certs, the host
// apiserver's kubelet client certificate (client/, whose CA the kubelet
// trusts) and the real kubelet's serving certificate for its address
// (serving/, whose CA the host apiserver verifies it against).
func issueRealNodeCerts(dir, nodeIP string) (string, error) {
	certDir, err := filepath.Abs(filepath.Join(dir, "real-node-certs"))
	if err != nil {
		return "", err
	}
	client, err := certs.NewClient(kubeletClientUser, time.Now(), 365*24*time.Hour)
	if err != nil {
		return "", fmt.Errorf("issuing the host apiserver's kubelet client certificate: %w", err)
	}
	serving, err := certs.NewSelfSigned([]string{nodeIP}, time.Now(), 365*24*time.Hour)
	if err != nil {
		return "", fmt.Errorf("issuing the real kubelet's serving certificate: %w", err)
	}
	return certDir, errors.Join(client.WriteDir(filepath.Join(certDir, "client")), serving.WriteDir(filepath.Join(certDir, "serving")))
}

// useRealNode lets tenant pods onto the real node by tolerating its taint.
func useRealNode(tc *translate.Config) {
	if !slices.Contains(tc.TolerationKeys, realnode.TaintRealNode) {
		tc.TolerationKeys = append(tc.TolerationKeys, realnode.TaintRealNode)
	}
}

// portOf is the port of an apiserver's URL.
func portOf(server string) (int32, error) {
	u, err := url.Parse(server)
	if err != nil {
		return 0, err
	}
	port, err := strconv.ParseInt(u.Port(), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("apiserver port in %s: %w", server, err)
	}
	return int32(port), nil
}

// keepTenantsOn makes the platform place every host pod on the node
// named node (whose kubernetes.io/hostname label the kubelet sets to its
// name) and tolerate its real-node taint, on top of the tenant's own
// selector and tolerations.
func keepTenantsOn(tc *translate.Config, node string) {
	selector := maps.Clone(tc.NodeSelector)
	if selector == nil {
		selector = map[string]string{}
	}
	selector[corev1.LabelHostname] = node
	tc.NodeSelector = selector
	tolerate := corev1.Toleration{Key: realnode.TaintRealNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	if !slices.ContainsFunc(tc.Tolerations, func(t corev1.Toleration) bool { return t.MatchToleration(&tolerate) }) {
		tc.Tolerations = append(slices.Clone(tc.Tolerations), tolerate)
	}
}

// joinRealNode registers the real node's kubelet with the host; its pods
// may reach the virtual apiserver at apiServerPort on the bridge, and
// nothing else on this machine.
func (e *Env) joinRealNode(ctx context.Context, realNodeCerts string, apiServerPort int) error {
	kubeconfig, err := e.Host.AddUser("system:node:"+e.RealNode.Name(), "system:nodes")
	if err != nil {
		return err
	}
	// The user the host's default RBAC binds to system:node-proxier.
	var kubeProxy []byte
	if e.RealNode.RunsKubeProxy() {
		if kubeProxy, err = e.Host.AddUser("system:kube-proxy"); err != nil {
			return err
		}
	}
	return e.RealNode.Join(ctx, realnode.Host{
		Admin: e.Host.Config, Kubeconfig: kubeconfig,
		ClientCAFile: filepath.Join(realNodeCerts, "client", certs.CAFile), APIServerUser: kubeletClientUser,
		ServingCertDir:      filepath.Join(realNodeCerts, "serving"),
		APIServerPort:       apiServerPort,
		KubeProxyKubeconfig: kubeProxy,
	})
}

// StartWebhook starts the webhook's process again, as a restarted
// container would; it restores its registration in the virtual cluster.
// It does nothing if the webhook is running.
func (e *Env) StartWebhook() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.startWebhook(ctx)
}

// startWebhook starts the webhook's process and waits until it is ready
// (ctx bounds the wait).
func (e *Env) startWebhook(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.webhook != nil {
		return nil
	}
	c, err := e.startComponent(ctx, "webhook", e.webhookProc)
	if err != nil {
		return err
	}
	e.webhook = c
	return nil
}

// StopWebhook stops the webhook's process (SIGTERM) and waits until it has
// ended: nothing answers the virtual apiserver's admission calls or
// restores the registration meanwhile, as when podbridge's webhook is down.
func (e *Env) StopWebhook() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.stop(e.webhook)
	e.webhook = nil
	return err
}

// StartReflector starts the reflector's process again, as a restarted
// container would: fresh caches and queues, nothing remembered. It does
// nothing if the reflector is running.
func (e *Env) StartReflector() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.startReflector(ctx)
}

func (e *Env) startReflector(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reflector != nil {
		return nil
	}
	c, err := e.startComponent(ctx, "reflector", e.reflectorProc)
	if err != nil {
		return err
	}
	e.reflector = c
	return nil
}

// StopReflector stops the reflector's process and waits until it has
// ended; the webhook keeps admitting pods meanwhile.
func (e *Env) StopReflector() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.stop(e.reflector)
	e.reflector = nil
	return err
}

// RestartReflector stops the reflector and starts a new one.
func (e *Env) RestartReflector() error {
	if err := e.StopReflector(); err != nil {
		return err
	}
	return e.StartReflector()
}

// Err returns a channel that yields an error when a podbridge component
// stopped on its own.
func (e *Env) Err() <-chan error { return e.failed }

// Stop stops podbridge, then both control planes and the real node.
func (e *Env) Stop() error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	errs := []error{e.stop(e.webhook), e.stop(e.reflector)}
	e.webhook, e.reflector = nil, nil
	e.mu.Unlock()
	if e.stopControlPlanes != nil {
		e.stopControlPlanes()
		errs = append(errs, <-e.controlPlanesDone)
		e.stopControlPlanes = nil
	}
	// The virtual apiserver serves on the real node's bridge: it stops
	// before the bridge goes, and the node before the host it is part of,
	// but after the host's controllers, which provision into its folder.
	errs = append(errs, named("virtual control plane", e.Virtual.Stop()), named("host controller-manager", e.Host.StopControllerManager()))
	if e.hostOnBridge {
		// An apiserver whose serving address has gone hangs in its own
		// shutdown: the node leaves the host, the host stops, then the
		// node (and its bridge) goes.
		errs = append(errs, named("real node", e.RealNode.Leave()), named("host control plane", e.Host.Stop()), named("real node", e.RealNode.Stop()))
	} else {
		errs = append(errs, named("real node", e.RealNode.Stop()), named("host control plane", e.Host.Stop()))
	}
	return errors.Join(errs...)
}

// named says which part an error of Stop comes from.
func named(part string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("stopping the %s: %w", part, err)
}

// defaultClusterDomain is the virtual cluster's DNS domain unless
// Options.Translate names one (the command's default).
const defaultClusterDomain = "cluster.local"

// DefaultPodSecurityLevel is podbridge's default Pod Security level.
const DefaultPodSecurityLevel = "baseline"

// PrepareHostNamespace creates the host namespace, enforcing
// DefaultPodSecurityLevel, the service account host pods run as, and the
// namespace's default account (a real host's controller manager would
// create that; the dev host has none).
func PrepareHostNamespace(ctx context.Context, cfg *rest.Config, tc translate.Config) error {
	return prepareHost(ctx, cfg, tc, DefaultPodSecurityLevel, nil)
}

// prepareHost makes the host namespace, labelled for pod-security-admission
// at level as platform teams should (the host's own backstop behind
// podbridge's gate), its service accounts, and a RuntimeClass for each
// runtime handler tenants may use.
func prepareHost(ctx context.Context, cfg *rest.Config, tc translate.Config, level string, runtimeHandlers []string) error {
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	objects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tc.HostNamespace, Labels: map[string]string{
			psaapi.EnforceLevelLabel:   level,
			psaapi.EnforceVersionLabel: psaapi.VersionLatest,
		}}},
		// As a platform would make it: no pull secrets, no token mounted,
		// marked as this virtual cluster's (package hostaccount refuses
		// any other).
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tc.HostServiceAccount, Namespace: tc.HostNamespace, Annotations: map[string]string{ownership.Annotation: tc.VCluster}}, AutomountServiceAccountToken: ptr.To(false)},
	}
	if tc.HostServiceAccount != "default" {
		// Every namespace of a real host has one, for its own pods.
		objects = append(objects, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: tc.HostNamespace}})
	}
	for _, handler := range runtimeHandlers {
		objects = append(objects, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: handler}, Handler: handler})
	}
	for _, obj := range objects {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating host %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
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
		case err := <-e.failed:
			return false, fmt.Errorf("podbridge stopped: %w", err)
		default:
		}
		pod := probe.DeepCopy()
		if lastErr = c.Create(ctx, pod, client.DryRunAll); lastErr != nil {
			return false, nil //nolint:nilerr // not answering yet: keep waiting, report the last error at the end.
		}
		// Until the registration is in place, pods are admitted without podbridge.
		if pod.Annotations[translate.AnnotationSyncID] == "" {
			lastErr = errors.New("the pod was admitted without podbridge's webhook")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the webhook: %w (last attempt: %w)", err, lastErr)
	}
	return nil
}

// KubeletSecretName is the host Secret of the kubelet API's self-managed
// serving certificate in podbridge-dev.
const KubeletSecretName = "podbridge-kubelet-tls"

// storeTLSSecret stores b in the host Secret name of tc's host namespace,
// marked as tc's, where a self-managed certificate keeper finds and keeps
// it instead of issuing its own.
func storeTLSSecret(ctx context.Context, cfg *rest.Config, tc translate.Config, name string, b *certs.Bundle) error {
	cl, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tc.HostNamespace, Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{certs.CertFile: b.Cert, certs.KeyFile: b.Key, certs.CAFile: b.CA, certs.CAKeyFile: b.CAKey},
	}
	ownership.Mark(&secret.ObjectMeta, tc.VCluster)
	if err := cl.Create(ctx, secret); err != nil {
		return fmt.Errorf("storing %s in the host: %w", name, err)
	}
	return nil
}
