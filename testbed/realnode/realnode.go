// Package realnode runs one real Kubernetes node on this machine for the
// test bed: containerd, runc and CNI plugins from apt, and a kubelet
// registered with the host control plane beside the kwok nodes, so pods
// podbridge makes really run, and kube-proxy, so host Services route to
// them (services.go). Its one concern is to change the machine only in
// ways it records first and undoes on Stop, or on the next Start after a
// run that was killed: processes, mounts, interfaces, routes, firewall
// chains (its own and kube-proxy's), cgroups and sysctls. Pods on the node
// reach only the virtual apiserver and each other (directly or through a
// ClusterIP), nothing they send leaves the bridge (firewall.go), and no
// image is fetched from off this machine or from its loopback (pulls.go).
//
// Everything it starts lives under Options.StateDir, except what the
// kubelet and containerd keep at fixed paths (recorded and removed when
// they did not exist before) and the host-path provisioner's folder, a
// link into it (HostPathProvisionerDir). Only one real node can run per machine (the
// kubelet's ports and fixed paths); a lock file says so clearly.
package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Defaults of the network the test bed owns: a bridge with an address in a
// private range this machine does not use. The node's InternalIP is the
// bridge's address, so the apiservers dial the kubelet on an interface the
// test bed created, never the machine's external address.
const (
	DefaultBridge   = "pbr0"
	DefaultSubnet   = "10.201.0.0/24"
	DefaultNodeName = "podbridge-real-node"

	// LabelRealNode and TaintRealNode mark the node: only pods that select
	// the label and tolerate the taint land there.
	LabelRealNode = "podbridge.io/real-node"
	TaintRealNode = "podbridge.io/real-node"

	// PauseImage and WorkloadImage are the tags `make node-bins` builds.
	PauseImage    = "podbridge.local/pause:1"
	WorkloadImage = "podbridge.local/workload:1"
	// HostsImage is the image of bin/node/hosts.tar (make node-bins:
	// cmd/podbridge-hosts packed by hack/nodeimage/vcimages), podbridge's
	// --hosts-image on the real node.
	HostsImage = "podbridge.local/hosts:1"
	// CoreDNSImage is the image of bin/node/coredns.tar (make node-bins:
	// hack/coredns, hack/nodeimage/corednsimage), imported as an extra
	// image.
	CoreDNSImage = "podbridge.local/coredns:1.15.0"
)

// Options configure a real node.
type Options struct {
	// StateDir receives containerd's and the kubelet's configuration, root
	// and state, and their logs (StateDir/logs).
	StateDir string
	// Kubelet is the kubelet binary; Images the image tarball of
	// `make node-bins`.
	Kubelet, Images string
	// KubeProxy, when set, is the kube-proxy binary (`make node-bins`):
	// the node then runs it beside the kubelet, so host Services route to
	// pods on the bridge (see services.go).
	KubeProxy string
	// ExtraImages are more image tarballs to import (the conformance
	// suite's images): pods that name them with a pull policy other than
	// Always run without a pull.
	ExtraImages []string
	// RuntimeHandlers are containerd runtime handlers besides runc, each
	// runc under another name, for RuntimeClasses that name them (the
	// conformance suite's "test-handler", as the node e2e suite configures it).
	RuntimeHandlers []string
	// NodeName defaults to DefaultNodeName.
	NodeName string
	// Bridge and Subnet default to DefaultBridge and DefaultSubnet; the
	// bridge takes the subnet's first address, which is the node's IP.
	Bridge, Subnet string
	// ServiceCIDR is the host's Service range (the host apiserver's
	// --service-cluster-ip-range), DefaultServiceCIDR by default: pods get
	// a route to it through the bridge address, and this machine an
	// unreachable route, so no ClusterIP leaves it.
	ServiceCIDR string
	Log         logr.Logger
}

func (o *Options) defaults() {
	if o.NodeName == "" {
		o.NodeName = DefaultNodeName
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = DefaultServiceCIDR
	}
}

// Node is a real node being prepared or running.
type Node struct {
	opts Options
	// IP is the bridge's address: the node's InternalIP, and the address
	// pods on the node reach this machine's servers at.
	IP     net.IP
	subnet *net.IPNet
	// serviceCIDR is the host's Service range.
	serviceCIDR *net.IPNet

	lock    *os.File
	rec     *record
	host    client.Client
	procs   []*process
	pulls   *pullRefuser
	images  *imageGate
	timings Timings
}

// Timings say how long each step of the start took.
type Timings struct {
	Packages, Network, Containerd, Images, Kubelet time.Duration
	// KubeProxy is kube-proxy's start to its first sync (part of Kubelet,
	// the join).
	KubeProxy time.Duration
}

// Timings returns how long the start's steps took.
func (n *Node) Timings() Timings { return n.timings }

// RunsKubeProxy says whether the node runs kube-proxy (Options.KubeProxy).
func (n *Node) RunsKubeProxy() bool { return n.opts.KubeProxy != "" }

// ServiceCIDR is the host's Service range the node routes.
func (n *Node) ServiceCIDR() *net.IPNet { return n.serviceCIDR }

// Bridge is the name of the bridge the node's pods are on.
func (n *Node) Bridge() string { return n.opts.Bridge }

// Start prepares the machine: it refuses unless root, takes the machine's
// real-node lock, undoes what a killed earlier run left, installs the apt
// packages when absent, creates the bridge and starts containerd with the
// images imported. The kubelet starts with Join, once the host control
// plane (which needs the node's IP first) is up. On error, everything done
// is undone.
func Start(ctx context.Context, opts Options) (n *Node, err error) {
	opts.defaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("a real node needs root: it installs packages, creates a bridge, and runs containerd and a kubelet (run as root, or without --real-node)")
	}
	for name, path := range map[string]string{"kubelet": opts.Kubelet, "images": opts.Images} {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("real node %s: %w (run `make node-bins`)", name, err)
		}
	}
	for _, path := range opts.ExtraImages {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("real node extra images: %w", err)
		}
	}
	ip, subnet, err := net.ParseCIDR(opts.Subnet)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("real node subnet %q: must be an IPv4 CIDR", opts.Subnet)
	}
	_, serviceCIDR, err := net.ParseCIDR(opts.ServiceCIDR)
	if err != nil || serviceCIDR.IP.To4() == nil {
		return nil, fmt.Errorf("real node service range %q: must be an IPv4 CIDR", opts.ServiceCIDR)
	}
	if serviceCIDR.Contains(subnet.IP) || subnet.Contains(serviceCIDR.IP) {
		return nil, fmt.Errorf("real node service range %s overlaps the pods' subnet %s", serviceCIDR, subnet)
	}
	if opts.KubeProxy != "" {
		if _, err := os.Stat(opts.KubeProxy); err != nil {
			return nil, fmt.Errorf("real node kube-proxy: %w (run `make node-bins`)", err)
		}
	}
	nodeIP := make(net.IP, 4)
	copy(nodeIP, subnet.IP.To4())
	nodeIP[3]++
	state, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, err
	}
	opts.StateDir = state
	n = &Node{opts: opts, IP: nodeIP, subnet: subnet, serviceCIDR: serviceCIDR}
	if err := n.takeLock(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Stop())
			n = nil
		}
	}()
	if err := sweepLeftovers(opts.Log); err != nil {
		return n, fmt.Errorf("undoing what an earlier real node left: %w", err)
	}
	n.rec = newRecord(n)
	if err := n.rec.save(); err != nil {
		return n, err
	}
	if err := n.linkProvisionerDir(); err != nil {
		return n, err
	}
	t := time.Now()
	if err := ensurePackages(ctx, opts.Log); err != nil {
		return n, err
	}
	n.timings.Packages = time.Since(t)
	t = time.Now()
	if err := n.createNetwork(); err != nil {
		return n, err
	}
	n.timings.Network = time.Since(t)
	t = time.Now()
	if n.pulls, err = refusePulls(opts.Log.WithName("pulls")); err != nil {
		return n, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return n, err
	}
	if n.images, err = gateImages(n.imageGateAddress(), n.containerdAddress(), opts.Log.WithName("images")); err != nil {
		return n, err
	}
	n.timings.Containerd = time.Since(t)
	t = time.Now()
	if err := n.importImages(ctx); err != nil {
		return n, err
	}
	n.timings.Images = time.Since(t)
	return n, nil
}

// Leave deletes the node from the host (once; Stop does it when it has not
// been done): its pods go with the kubelet when Stop stops it.
func (n *Node) Leave() error {
	if n == nil || n.host == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.host.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.opts.NodeName}})
	n.host = nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the real node from the host: %w", err)
	}
	return nil
}

// Stop stops the kubelet, the containers and containerd, and undoes every
// change Start and Join recorded; it then releases the machine's lock.
func (n *Node) Stop() error {
	if n == nil {
		return nil
	}
	errs := []error{n.Leave()}
	// The kubelet first, so it does not restart what is being stopped.
	for i := len(n.procs) - 1; i >= 0; i-- {
		errs = append(errs, n.procs[i].stop(15*time.Second))
	}
	n.procs = nil
	if n.pulls != nil {
		errs = append(errs, n.pulls.close())
		n.pulls = nil
	}
	if n.images != nil {
		errs = append(errs, n.images.close())
		n.images = nil
	}
	if n.rec != nil {
		errs = append(errs, n.rec.undo(n.opts.Log))
		n.rec = nil
	}
	if n.lock != nil {
		errs = append(errs, n.lock.Close())
		n.lock = nil
	}
	return errors.Join(errs...)
}
