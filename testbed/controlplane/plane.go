package controlplane

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/testbed/child"
)

//go:embed kwok-stages.yaml
var kwokStages []byte

const stopTimeout = 15 * time.Second

// Plane is one running control plane.
type Plane struct {
	// Name is "host" or "virtual".
	Name string
	// Config authenticates as a cluster administrator.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string
	// CAFile holds the apiserver's serving CA.
	CAFile string

	env   *envtest.Environment
	procs []*child.Process
	// controllerManager is the host's kube-controller-manager, when
	// Options.RealNodeControllers runs one.
	controllerManager *child.Process
	kwok              *kwokServer
	// apiserverLog receives the kube-apiserver's output, across restarts.
	apiserverLog *os.File
}

// Options configure a control plane.
type Options struct {
	Assets Assets
	// Dir receives the kubeconfig, certificates and component logs.
	Dir string
	// Nodes is how many kwok nodes the host has (host only).
	Nodes int
	// PodsPerNode is each kwok node's pod capacity (host only).
	PodsPerNode int
	// WebhookClient, when set, is the client certificate the apiserver
	// presents to admission webhooks (virtual only).
	WebhookClient *WebhookClient
	// KubeletClient, when set, is how the apiserver reaches its nodes'
	// kubelet API, podbridge's (virtual only).
	KubeletClient *KubeletClient
	// StaticPolicies, when set, are admission policies the apiserver loads
	// from files at start (package staticpolicy; virtual only).
	StaticPolicies []byte
	// KwokRules are extra kwok configuration documents (ClusterLogs,
	// ClusterAttach, ClusterPortForward, or their per-pod kinds), placed
	// before the default rules, which match every pod: kwok takes the first
	// rule that matches (host only). An Exec or ClusterExec rule is refused:
	// kwok would run the tenant's command on this machine.
	KwokRules string
	// BindAddress, when set, is the address the apiserver serves on (and
	// its serving certificate names) instead of 127.0.0.1: the real
	// node's bridge address, so pods on that node reach it (virtual only).
	BindAddress string
	// ServingNames, when set, are names and addresses the apiserver's
	// serving certificate holds besides localhost and BindAddress: those
	// of its `kubernetes` Service, by which pods reach it (virtual only).
	ServingNames []string
	// KubeletClientCertFile and KubeletClientKeyFile, when set, are the
	// client certificate the apiserver presents to kubelets (host only:
	// a real node's kubelet accepts no anonymous caller).
	KubeletClientCertFile, KubeletClientKeyFile string
	// RealNodeKubeletCAFile, when set, is the CA of a real node's kubelet
	// serving certificate, which the apiserver trusts beside kwok's (host
	// only).
	RealNodeKubeletCAFile string
	// ServiceCIDR, when set, is the apiserver's Service range
	// (--service-cluster-ip-range) instead of ServiceClusterIPRange. A
	// virtual control plane's must contain its host's (podbridge pins
	// host addresses on virtual Services): give both the same. A real
	// node routes the host's (see realnode.Options.ServiceCIDR).
	ServiceCIDR string
	// HostForPods, when set, is an address of the real node's bridge the
	// host apiserver serves on instead of loopback, with ServingNames in
	// its certificate (its kubernetes Service's), and the host's
	// controller-manager (RealNodeControllers) runs PodControllers too: a
	// virtual cluster's control-plane pod (`podbridge create`) then runs on
	// the real node and reaches the host apiserver with its service account
	// (host only).
	HostForPods string
	// RealNodeControllers, when set, runs a kube-controller-manager on
	// the host with HostControllers only: the EndpointSlices a real node's
	// kube-proxy reads, and claims provisioned as folders of this machine,
	// which a real node mounts (host only).
	RealNodeControllers bool
}

// ServiceClusterIPRange is the --service-cluster-ip-range of both
// control planes unless Options.ServiceCIDR names another. podbridge pins each virtual Service's ClusterIP to the
// one the host allocated, so the virtual apiserver's range must contain
// the host's; the same range keeps the two `default/kubernetes` Services
// on the same first address too, which the host never gives to a tenant's
// Service. (envtest's default is 10.0.0.0/24; a /16 leaves room for the
// Services of several tenants and of conformance runs.)
const ServiceClusterIPRange = "10.0.0.0/16"

// HostControllers are the only controllers the host's
// kube-controller-manager runs (Options.RealNodeControllers), all for what
// a real node needs of its host. EndpointSlices for Services with a
// selector, and the mirror of a selector-less Service's Endpoints into
// EndpointSlices, which the node's kube-proxy reads. The persistent volume
// binder, with the host-path provisioner on (HostPathProvisionerFlag):
// it provisions a volume for a claim of a class naming
// kubernetes.io/host-path, binds the two, and on the claim's deletion
// removes the volume's folder (reclaim policy Delete) and the volume.
// Claim and volume protection: the host apiserver's
// StorageObjectInUseProtection admission puts their finalizers on every
// claim and volume, and only these controllers take them off (a claim once
// no host pod uses it, a volume once no claim is bound to it), so without
// them no claim or volume could be deleted. Nothing else: no
// attach-detach controller (a host-path volume is not attachable: the
// kubelet mounts it alone), no expander (host-path volumes do not grow), no
// ephemeral-volume controller (no test needs one yet), and the host's
// nodes, pods and namespaces are the test bed's and podbridge's to manage
// (no garbage collector, no node lifecycle, no service-account tokens:
// kube-proxy authenticates with a client certificate), so the slices of a
// deleted Service stay until their namespace goes, which kube-proxy
// ignores.
var HostControllers = []string{"endpointslice-controller", "endpointslice-mirroring-controller",
	"persistentvolume-binder-controller", "persistentvolumeclaim-protection-controller", "persistentvolume-protection-controller"}

// PodControllers are what a host whose pods run control planes
// (Options.HostForPods) adds to HostControllers: the StatefulSet of a
// virtual cluster's control plane, and the kube-root-ca.crt ConfigMap its
// service-account token volume needs.
var PodControllers = []string{"statefulset-controller", "root-ca-certificate-publisher-controller"}

func hostControllers(opts Options) []string {
	if opts.HostForPods == "" {
		return HostControllers
	}
	return append(slices.Clone(HostControllers), PodControllers...)
}

// HostPathProvisionerFlag turns on kube-controller-manager's host-path
// provisioner, meant for single-node test clusters: it makes each volume a
// folder /tmp/hostpath_pv/<uid> of the machine it runs on (a fixed path:
// no flag moves it; see realnode.HostPathProvisionerDir), and its deleter
// removes only folders under /tmp.
const HostPathProvisionerFlag = "--enable-hostpath-provisioner"

// StartHost starts a host control plane: etcd, kube-apiserver (with the
// ServiceAccount admission plugin, as real clusters have), kube-scheduler
// and kwok managing opts.Nodes fake nodes.
//
// kwok also plays the nodes' kubelet API (logs, attach, port-forward;
// exec is answered with an error and runs nothing: see defaultKwokRules)
// at the nodes' addresses, 127.0.0.10 and up, and the apiserver dials only
// those InternalIP addresses, verifying kwok's serving certificate.
func StartHost(ctx context.Context, opts Options) (p *Plane, err error) {
	opts.WebhookClient = nil // the host runs no webhook of podbridge's.
	opts.StaticPolicies = nil
	opts.KubeletClient = nil
	// Kubelets and podbridge reach the host on loopback, unless pods must.
	opts.BindAddress = opts.HostForPods
	if opts.HostForPods == "" {
		opts.ServingNames = nil
	}
	kwokDir := filepath.Join(opts.Dir, "kwok")
	if err := os.MkdirAll(kwokDir, 0o755); err != nil {
		return nil, err
	}
	kwokServer, err := prepareKwokServer(kwokDir, opts.Nodes)
	if err != nil {
		return nil, err
	}
	kubeletCA, err := kubeletCABundle(kwokDir, kwokServer.caFile(), opts.RealNodeKubeletCAFile)
	if err == nil {
		flags := map[string]string{"kubelet-certificate-authority": kubeletCA}
		if opts.HostForPods != "" {
			// Serving on the real node's bridge, it stops while the node's
			// kubelet, kube-proxy and pods still watch it: as StartVirtual,
			// it closes their watches rather than wait for them.
			flags["shutdown-watch-termination-grace-period"] = "5s"
		}
		p, err = startAPIServer("host", opts, flags)
	}
	if err != nil {
		kwokServer.stop()
		return nil, err
	}
	p.kwok = kwokServer
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Stop())
		}
	}()
	logs := filepath.Join(opts.Dir, "logs")
	scheduler, err := opts.Assets.Path("kube-scheduler")
	if err != nil {
		return p, err
	}
	if err := p.start("kube-scheduler", scheduler, logs, nil,
		"--kubeconfig="+p.Kubeconfig,
		"--authentication-kubeconfig="+p.Kubeconfig,
		"--authorization-kubeconfig="+p.Kubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
	); err != nil {
		return p, err
	}

	kwok, err := opts.Assets.Path("kwok")
	if err != nil {
		return p, err
	}
	rules, err := defaultKwokRules(kwokDir)
	if err != nil {
		return p, err
	}
	stages := filepath.Join(kwokDir, "stages.yaml")
	config := slices.Concat(kwokStages, []byte("\n"), []byte(opts.KwokRules), []byte("\n"), []byte(rules))
	if err := refuseKwokExec(config); err != nil {
		return p, err
	}
	if err := os.WriteFile(stages, config, 0o644); err != nil {
		return p, fmt.Errorf("writing kwok stages: %w", err)
	}
	// kwok also reads $KWOK_WORKDIR/kwok.yaml: point it at our own folder
	// so a user's ~/.kwok cannot change the control plane.
	if err := p.start("kwok", kwok, logs, []string{"KWOK_WORKDIR=" + kwokDir}, append([]string{
		"--kubeconfig=" + p.Kubeconfig,
		// Only the fake nodes: a real node beside them has its kubelet.
		"--manage-nodes-with-label-selector=type=kwok",
		"--config=" + stages,
		"--cidr=10.244.0.0/16",
	}, kwokServer.args()...)...); err != nil {
		return p, err
	}
	if err := p.createNodes(ctx, opts); err != nil {
		return p, err
	}
	if opts.RealNodeControllers {
		kcm, err := opts.Assets.Path("kube-controller-manager")
		if err != nil {
			return p, err
		}
		if err := p.start("kube-controller-manager", kcm, logs, nil,
			"--kubeconfig="+p.Kubeconfig,
			"--authentication-kubeconfig="+p.Kubeconfig,
			"--authorization-kubeconfig="+p.Kubeconfig,
			"--secure-port=0",
			"--leader-elect=false",
			"--controllers="+strings.Join(hostControllers(opts), ","),
			HostPathProvisionerFlag,
			"--use-service-account-credentials=false",
		); err != nil {
			return p, err
		}
		p.controllerManager = p.procs[len(p.procs)-1]
	}
	return p, nil
}

// VirtualControllers are the virtual kube-controller-manager's
// controllers: every default one but those that act for nodes and volumes
// the host owns. No node lifecycle or IPAM (virtual nodes have no kubelet;
// podbridge keeps their status). No persistentvolume-binder, attach-detach
// or expander: the host binds, attaches and expands claims and podbridge
// mirrors the host's answer (the binder would set a mirrored Bound claim
// back to Pending, finding no virtual volume). No ephemeral-volume
// controller: a pod's generic ephemeral volume is the host's to make, from
// the host pod's template; a virtual claim for it would make a second host
// claim. The claim-protection controller stays: a claim in use stays
// Terminating until its pods are gone, and only then goes on the host.
var VirtualControllers = []string{"*", "-node-lifecycle-controller", "-node-ipam-controller",
	"-persistentvolume-binder-controller", "-persistentvolume-attach-detach-controller", "-persistentvolume-expander-controller",
	"-ephemeral-volume-controller"}

// StartVirtual starts a virtual control plane: etcd, kube-apiserver (with
// ServiceAccount admission) and kube-controller-manager running
// VirtualControllers. There is no scheduler: podbridge binds virtual pods.
func StartVirtual(ctx context.Context, opts Options) (p *Plane, err error) {
	opts.KubeletClientCertFile, opts.KubeletClientKeyFile = "", "" // its nodes' kubelet API is podbridge's.
	opts.RealNodeControllers = false                               // its controller-manager runs every controller already.
	// Pods watch the virtual apiserver (the tenant's CoreDNS, on a real
	// node that stops after it: it serves on the node's bridge). Without a
	// grace period an apiserver's shutdown waits for open watches to end,
	// up to its request timeout; with one, it closes them.
	flags := map[string]string{"shutdown-watch-termination-grace-period": "5s"}
	if k := opts.KubeletClient; k != nil {
		flags["kubelet-client-certificate"] = k.CertFile
		flags["kubelet-client-key"] = k.KeyFile
		flags["kubelet-certificate-authority"] = k.CAFile
	}
	p, err = startAPIServer("virtual", opts, flags)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Stop())
		}
	}()
	kcm, err := opts.Assets.Path("kube-controller-manager")
	if err != nil {
		return p, err
	}
	certDir := p.env.ControlPlane.APIServer.CertDir
	if err := p.start("kube-controller-manager", kcm, filepath.Join(opts.Dir, "logs"), nil,
		"--kubeconfig="+p.Kubeconfig,
		"--authentication-kubeconfig="+p.Kubeconfig,
		"--authorization-kubeconfig="+p.Kubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
		"--controllers="+strings.Join(VirtualControllers, ","),
		"--service-account-private-key-file="+filepath.Join(certDir, "sa-signer.key"),
		"--root-ca-file="+p.CAFile,
		"--use-service-account-credentials=false",
	); err != nil {
		return p, err
	}
	return p, p.waitForDefaultServiceAccount(ctx)
}

func startAPIServer(name string, opts Options, flags map[string]string) (*Plane, error) {
	apiserver, err := opts.Assets.Path("kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcd, err := opts.Assets.Path("etcd")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.Dir, err)
	}
	// The apiserver's certificates live in a folder of ours, not in a
	// temporary one envtest removes on Stop: StartAPIServer then restarts
	// it with the same serving certificate and client CA, so every client
	// and kubeconfig made before keeps working.
	certDir := filepath.Join(opts.Dir, name+"-apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", certDir, err)
	}
	// envtest starts etcd and the apiserver itself; through launchers they
	// die with this process, as the components package child starts do.
	launchers := filepath.Join(certDir, "launchers")
	if apiserver, err = child.Launcher(launchers, apiserver); err != nil {
		return nil, err
	}
	if etcd, err = child.Launcher(launchers, etcd); err != nil {
		return nil, err
	}
	// A generous start timeout: on a loaded 2-core machine the apiserver can
	// take over a minute, and envtest's retry after a timeout reuses the
	// port the slow first attempt may still hold, so it cannot succeed.
	// Its output goes to the logs folder, as every other component's does,
	// so a request that hung can be traced afterwards.
	logDir := filepath.Join(opts.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", logDir, err)
	}
	apiserverLog, err := os.OpenFile(filepath.Join(logDir, name+"-kube-apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the %s kube-apiserver's log: %w", name, err)
	}
	owned := false // by the Plane, which closes it on Stop
	defer func() {
		if !owned {
			_ = apiserverLog.Close()
		}
	}()
	env := &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{Path: apiserver, CertDir: certDir, StartTimeout: 3 * time.Minute, StopTimeout: stopTimeout, Out: apiserverLog, Err: apiserverLog},
			// etcd's data in the plane's folder, which its callers remove,
			// rather than in a temporary one envtest removes only on Stop:
			// a killed run leaves no data behind in /tmp.
			Etcd: &envtest.Etcd{Path: etcd, DataDir: filepath.Join(opts.Dir, name+"-etcd"), StartTimeout: time.Minute, StopTimeout: stopTimeout},
		},
	}
	// envtest turns ServiceAccount admission off; real clusters have it on.
	env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	if opts.BindAddress != "" {
		// envtest picks a loopback port unless given both address and port.
		l, err := net.Listen("tcp", net.JoinHostPort(opts.BindAddress, "0"))
		if err != nil {
			return nil, fmt.Errorf("choosing the %s apiserver's port on %s: %w", name, opts.BindAddress, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		env.ControlPlane.APIServer.Address = opts.BindAddress
		env.ControlPlane.APIServer.Port = strconv.Itoa(port)
	}
	// The apiserver dials a node's InternalIP for logs, exec, attach and
	// port-forward: never its hostname, which would be a DNS lookup off
	// this machine. The virtual cluster's nodes mirror the host's.
	env.ControlPlane.GetAPIServer().Configure().Set("kubelet-preferred-address-types", "InternalIP")
	serviceCIDR := opts.ServiceCIDR
	if serviceCIDR == "" {
		serviceCIDR = ServiceClusterIPRange
	}
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", serviceCIDR)
	if opts.KubeletClientCertFile != "" {
		env.ControlPlane.GetAPIServer().Configure().
			Set("kubelet-client-certificate", opts.KubeletClientCertFile).
			Set("kubelet-client-key", opts.KubeletClientKeyFile)
	}
	for flag, value := range flags {
		env.ControlPlane.GetAPIServer().Configure().Set(flag, value)
	}
	if len(opts.ServingNames) > 0 {
		hosts := append([]string{"localhost", "127.0.0.1"}, opts.ServingNames...)
		if opts.BindAddress != "" {
			hosts = append(hosts, opts.BindAddress)
		}
		if env.ControlPlane.APIServer.CA, err = issueServingCerts(certDir, hosts); err != nil {
			return nil, err
		}
	}
	if opts.WebhookClient != nil || len(opts.StaticPolicies) > 0 {
		config, err := writeAdmissionConfig(certDir, opts.WebhookClient, opts.StaticPolicies)
		if err != nil {
			return nil, err
		}
		env.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", config)
	}
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("starting %s apiserver: %w; %s", name, err, child.LogEnd(apiserverLog.Name()))
	}
	p := &Plane{Name: name, env: env, apiserverLog: apiserverLog}
	owned = true
	admin, err := env.AddUser(envtest.User{Name: "podbridge-dev-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return p, errors.Join(fmt.Errorf("provisioning %s admin: %w", name, err), p.Stop())
	}
	p.Config = admin.Config()
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return p, errors.Join(fmt.Errorf("writing %s kubeconfig: %w", name, err), p.Stop())
	}
	p.Kubeconfig = filepath.Join(opts.Dir, name+".kubeconfig")
	p.CAFile = filepath.Join(opts.Dir, name+"-ca.crt")
	if err := os.WriteFile(p.Kubeconfig, kubeconfig, 0o600); err != nil {
		return p, errors.Join(err, p.Stop())
	}
	if err := os.WriteFile(p.CAFile, env.ControlPlane.APIServer.CA, 0o644); err != nil {
		return p, errors.Join(err, p.Stop())
	}
	return p, nil
}

// issueServingCerts writes into certDir, where envtest looks before making
// its own, the apiserver's serving certificate for hosts and its service
// account signing key, and returns the serving CA. envtest's certificate
// names only localhost and the bind address.
func issueServingCerts(certDir string, hosts []string) ([]byte, error) {
	serving, err := certs.NewSelfSigned(hosts, time.Now(), 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issuing the apiserver's serving certificate: %w", err)
	}
	signer, err := certs.NewSelfSigned([]string{"localhost"}, time.Now(), 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issuing the service account signing key: %w", err)
	}
	for name, data := range map[string][]byte{
		"apiserver.crt": serving.Cert, "apiserver.key": serving.Key,
		"sa-signer.crt": signer.CA, "sa-signer.key": signer.CAKey,
	} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return serving.CA, nil
}

func (p *Plane) start(name, path, logDir string, env []string, args ...string) error {
	name = p.Name + "-" + name
	proc, err := child.Start(child.Command{Name: name, Path: path, Args: args, Env: env, LogFile: filepath.Join(logDir, name+".log")})
	if err != nil {
		return err
	}
	p.procs = append(p.procs, proc)
	return nil
}

// AddUser provisions a user authenticated by a client certificate and
// returns a kubeconfig for it (the real node's kubelet uses one).
func (p *Plane) AddUser(name string, groups ...string) ([]byte, error) {
	u, err := p.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("provisioning %s user %s: %w", p.Name, name, err)
	}
	return u.KubeConfig()
}

// Stop stops every component, the ones podbridge started first.
func (p *Plane) Stop() error {
	if p == nil {
		return nil
	}
	var errs []error
	for i := len(p.procs) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		errs = append(errs, p.procs[i].Stop(ctx))
		cancel()
	}
	p.procs = nil
	if p.env != nil {
		errs = append(errs, p.env.Stop())
	}
	if p.apiserverLog != nil {
		errs = append(errs, p.apiserverLog.Close())
		p.apiserverLog = nil
	}
	p.kwok.stop()
	p.kwok = nil
	return errors.Join(errs...)
}

// StopControllerManager stops the host's kube-controller-manager, if it
// runs, ahead of the rest: a real node stops first, and no volume may be
// provisioned into the provisioner's folder once the node has removed it.
func (p *Plane) StopControllerManager() error {
	if p == nil || p.controllerManager == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err := p.controllerManager.Stop(ctx)
	p.procs = slices.DeleteFunc(p.procs, func(c *child.Process) bool { return c == p.controllerManager })
	p.controllerManager = nil
	return err
}

// StopAPIServer stops the plane's kube-apiserver and leaves etcd and every
// other component running, as an apiserver outage or upgrade does; the
// components keep retrying until StartAPIServer brings it back. It sends
// SIGTERM: the apiserver refuses new requests at once, then drains open
// watches for up to a minute, so envtest kills it (SIGKILL) after the stop
// timeout. StopAPIServer returns once the apiserver's port refuses
// connections.
func (p *Plane) StopAPIServer() error {
	// envtest reports the kill after its stop timeout as an error; what
	// matters is that the apiserver is gone, which the wait below checks.
	stopErr := p.env.ControlPlane.APIServer.Stop()
	server, err := url.Parse(p.Config.Host)
	if err != nil {
		return errors.Join(fmt.Errorf("stopping the %s kube-apiserver: %w", p.Name, err), stopErr)
	}
	address := server.Host
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		conn, err := net.DialTimeout("tcp", address, time.Second)
		if err != nil {
			return true, nil //nolint:nilerr // refused: the apiserver is gone, as wanted.
		}
		conn.Close()
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("stopping the %s kube-apiserver: still listening on %s: %w", p.Name, address, errors.Join(err, stopErr))
	}
	return nil
}

// StartAPIServer starts the kube-apiserver StopAPIServer stopped, on the
// same port, etcd and certificates, so existing clients reconnect to it;
// it returns once the apiserver reports healthy.
func (p *Plane) StartAPIServer() error {
	if err := p.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("starting the %s kube-apiserver again: %w", p.Name, err)
	}
	return nil
}

// Check reports a component that has exited.
func (p *Plane) Check() error {
	var errs []error
	for _, proc := range p.procs {
		errs = append(errs, proc.Exited())
	}
	return errors.Join(errs...)
}

// createNodes registers the kwok nodes and waits until kwok reports them Ready.
func (p *Plane) createNodes(ctx context.Context, opts Options) error {
	c, err := client.New(p.Config, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	for i := range opts.Nodes {
		node := fakeNode(fmt.Sprintf("kwok-node-%d", i), i, opts.PodsPerNode, p.kwok.port)
		if err := c.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s: %w", node.Name, err)
		}
	}
	err = p.poll(ctx, "kwok nodes to become Ready", func(ctx context.Context) (bool, error) {
		nodes := &corev1.NodeList{}
		if err := c.List(ctx, nodes); err != nil {
			return false, nil //nolint:nilerr // the apiserver may still be warming up.
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= opts.Nodes, nil
	})
	if err != nil {
		return err
	}
	return untaintReadyNodes(ctx, c)
}

// untaintReadyNodes removes the not-ready taint the apiserver puts on new
// nodes, as the node lifecycle controller of a real host's controller
// manager would once the node reports Ready; the host here runs none.
func untaintReadyNodes(ctx context.Context, c client.Client) error {
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes); err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for i := range nodes.Items {
		node := &nodes.Items[i]
		patch := client.MergeFrom(node.DeepCopy())
		node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable
		})
		if err := c.Patch(ctx, node, patch); err != nil {
			return fmt.Errorf("removing not-ready taint from %s: %w", node.Name, err)
		}
	}
	return nil
}

func fakeNode(name string, index, pods, kubeletPort int) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.244.%d.0/24", index), PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", index)}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			// An apiserver dials this address for logs, exec, attach and
			// port-forward: it stays on this machine (loopback).
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: nodeAddress(index)},
				{Type: corev1.NodeHostName, Address: name},
			},
			// kwok's kubelet API (the apiserver dials the InternalIP only).
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
		},
	}
}

// waitForDefaultServiceAccount waits until the controller manager has
// created the default namespace's service account: before that, every pod
// create fails ServiceAccount admission.
func (p *Plane) waitForDefaultServiceAccount(ctx context.Context) error {
	c, err := client.New(p.Config, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	return p.poll(ctx, "the default service account", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, nil
	})
}

// poll waits for condition, failing fast when a component has exited.
func (p *Plane) poll(ctx context.Context, what string, condition wait.ConditionWithContextFunc) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := p.Check(); err != nil {
			return false, err
		}
		return condition(ctx)
	})
	if err != nil {
		return fmt.Errorf("%s control plane: waiting for %s: %w", p.Name, what, err)
	}
	return nil
}
