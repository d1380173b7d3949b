package realnode

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
)

func (n *Node) dir(parts ...string) string {
	return filepath.Join(append([]string{n.opts.StateDir}, parts...)...)
}

func (n *Node) containerdAddress() string { return n.dir("containerd", "containerd.sock") }

// imageGateAddress is where the kubelet calls the image service: the gate
// in front of containerd's (see imageGate).
func (n *Node) imageGateAddress() string { return n.dir("containerd", "images.sock") }

// createNetwork creates the node's firewall and the bridge with the node's
// IP, after checking that no interface of this machine uses the subnet.
func (n *Node) createNetwork() error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && (n.subnet.Contains(ipn.IP) || ipn.Contains(n.subnet.IP)) {
			return fmt.Errorf("the real node's subnet %s overlaps %s on this machine: choose another", n.subnet, ipn)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.opts.Bridge)); err == nil {
		return fmt.Errorf("interface %s exists already and is not the test bed's: choose another bridge name", n.opts.Bridge)
	}
	if err := checkServiceCIDR(n.serviceCIDR); err != nil {
		return err
	}
	// The firewall before the bridge: no pod's packet ever passes
	// unfiltered.
	if err := n.createFirewall(); err != nil {
		return err
	}
	n.rec.Bridge = n.opts.Bridge
	if err := n.rec.save(); err != nil {
		return err
	}
	mac, err := bridgeMAC()
	if err != nil {
		return err
	}
	ones, _ := n.subnet.Mask.Size()
	for _, args := range [][]string{
		// A bridge given no address of its own takes the lowest of its
		// ports', so it changes as pods come and go, and a running pod's
		// ARP entry for its gateway (the node IP) then points at a MAC
		// that is gone: its connections to the virtual apiserver hang until
		// the entry expires. The CNI plugin pins the address only on a
		// bridge it gives the gateway address to, and this one has it.
		{"link", "add", n.opts.Bridge, "address", mac.String(), "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", n.IP, ones), "dev", n.opts.Bridge},
		{"link", "set", n.opts.Bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return fmt.Errorf("creating the real node's bridge: %w", err)
		}
	}
	return n.routeServices()
}

// bridgeMAC returns a random unicast, locally administered MAC address.
func bridgeMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("choosing the bridge's MAC address: %w", err)
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac, nil
}

// startContainerd writes containerd's and the CNI configuration and starts
// containerd with its own root, state and socket.
func (n *Node) startContainerd(ctx context.Context) error {
	cniConf := n.dir("cni", "net.d")
	for _, d := range []string{cniConf, n.dir("cni", "ipam"), n.dir("containerd")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// Pods get the subnet only: no default route, so nothing they send
	// leaves this machine; the bridge's address (node IP) is their gateway
	// to the servers the test bed binds there, and to the host's Service
	// range, which kube-proxy turns into other pods' addresses.
	conflist := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "podbridge-real-node",
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": n.opts.Bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": n.dir("cni", "ipam"),
				"ranges":  [][]map[string]string{{{"subnet": n.subnet.String(), "gateway": n.IP.String()}}},
				"routes":  []map[string]string{{"dst": n.serviceCIDR.String(), "gw": n.IP.String()}},
			},
		}},
	}
	b, err := json.MarshalIndent(conflist, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cniConf, "10-podbridge.conflist"), b, 0o600); err != nil {
		return err
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, n.dir("containerd", "root"), n.dir("containerd", "state"), n.containerdAddress(), PauseImage, cniBinDir, cniConf)
	for _, handler := range n.opts.RuntimeHandlers {
		config += fmt.Sprintf(`  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]q]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]q.options]
      SystemdCgroup = false
`, handler)
	}
	configPath := n.dir("containerd", "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	// Every registry request goes to the refuser on loopback: nothing a
	// tenant names (pullPolicy Always, an image not imported) is fetched
	// from off this machine.
	if err := n.start("containerd", "/usr/bin/containerd", n.pulls.Env(), "--config", configPath); err != nil {
		return err
	}
	return n.poll(ctx, "containerd to answer", time.Minute, func(ctx context.Context) (bool, error) {
		return exec.CommandContext(ctx, "ctr", "--address", n.containerdAddress(), "version").Run() == nil, nil
	})
}

// importImages imports the pause and workload images, and any extra
// images, for the kubelet (CRI namespace k8s.io): there is no registry to
// pull from.
func (n *Node) importImages(ctx context.Context) error {
	for _, tarball := range append([]string{n.opts.Images}, n.opts.ExtraImages...) {
		out, err := exec.CommandContext(ctx, "ctr", "--address", n.containerdAddress(), "-n", "k8s.io", "images", "import", tarball).CombinedOutput()
		if err != nil {
			return fmt.Errorf("importing %s: %w\n%s", tarball, err, out)
		}
	}
	return nil
}

// Host is what Join needs of the host control plane.
type Host struct {
	// Admin is a cluster-admin config, to grant the kubelet's roles and to
	// wait for the node.
	Admin *rest.Config
	// Kubeconfig authenticates the kubelet as system:node:<NodeName>
	// (group system:nodes).
	Kubeconfig []byte
	// ClientCAFile signs the certificate the host apiserver presents to
	// kubelets (--kubelet-client-certificate), whose CommonName is
	// APIServerUser: the kubelet trusts only it, and no anonymous caller,
	// so pods on the bridge cannot use the kubelet's API.
	ClientCAFile, APIServerUser string
	// ServingCertDir holds the kubelet's serving certificate and key
	// (certs.CertFile, certs.KeyFile) for the node's IP, issued by a CA the
	// host apiserver verifies kubelets against.
	ServingCertDir string
	// APIServerPort is the virtual apiserver's port on the node's IP: the
	// one listener of this machine the node's firewall lets pods reach.
	APIServerPort int
	// KubeProxyKubeconfig authenticates kube-proxy (as system:kube-proxy,
	// whom the host's default RBAC binds to system:node-proxier), when the
	// node runs one (Options.KubeProxy).
	KubeProxyKubeconfig []byte
}

// Join starts the kubelet, registered with the host control plane as
// NodeName, labelled LabelRealNode=true and tainted TaintRealNode (only
// pods that ask land there), and waits until the node is Ready.
func (n *Node) Join(ctx context.Context, h Host) error {
	t := time.Now()
	if err := n.allowAPIServer(h.APIServerPort); err != nil {
		return err
	}
	c, err := client.New(h.Admin, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	// The host here has no Node authorizer: the kubelet gets the role
	// Kubernetes defines for kubelets, and the apiserver's kubelet client
	// the role for the kubelet API.
	bindings := []*rbacv1.ClusterRoleBinding{
		{ObjectMeta: metav1.ObjectMeta{Name: "podbridge-real-node"}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:node:" + n.opts.NodeName}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "podbridge-real-node-apiserver"}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: h.APIServerUser}}},
	}
	for _, b := range bindings {
		if err := c.Create(ctx, b); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("granting the real node's roles: %w", err)
		}
	}
	kdir := n.dir("kubelet")
	if err := os.MkdirAll(kdir, 0o700); err != nil {
		return err
	}
	kubeconfig := filepath.Join(kdir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, h.Kubeconfig, 0o600); err != nil {
		return err
	}
	// Default-policy pods resolve through the node IP (no server: queries
	// stay on this machine), never through the machine's resolver.
	resolv := filepath.Join(kdir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+n.IP.String()+"\n"), 0o644); err != nil {
		return err
	}
	config := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		// Only on the bridge: another test bed's servers may use the
		// machine's other addresses.
		"address":                  n.IP.String(),
		"port":                     10250,
		"readOnlyPort":             0,
		"tlsCertFile":              filepath.Join(h.ServingCertDir, certs.CertFile),
		"tlsPrivateKeyFile":        filepath.Join(h.ServingCertDir, certs.KeyFile),
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              10248,
		"failCgroupV1":             false,
		"cgroupDriver":             "cgroupfs",
		"failSwapOn":               false,
		"containerRuntimeEndpoint": "unix://" + n.containerdAddress(),
		// Pulls of images on this machine's loopback are refused there.
		"imageServiceEndpoint": "unix://" + n.imageGateAddress(),
		"podLogsDir":           n.dir("kubelet", "pod-logs"),
		"resolvConf":           resolv,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": h.ClientCAFile},
		},
		"authorization":      map[string]any{"mode": "Webhook"},
		"registerWithTaints": []corev1.Taint{{Key: TaintRealNode, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
		// Images were imported, not pulled: the kubelet must not collect them.
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"evictionHard":                map[string]string{"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
		"nodeStatusReportFrequency":   "10s",
		// Mounted ConfigMaps and Secrets follow their updates at this period.
		"syncFrequency":       "10s",
		"shutdownGracePeriod": "0s",
	}
	b, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	configPath := filepath.Join(kdir, "config.json")
	if err := os.WriteFile(configPath, b, 0o600); err != nil {
		return err
	}
	// Without /usr/sbin in its PATH the kubelet finds no iptables and
	// leaves the machine's firewall alone (it would add KUBE-FIREWALL and
	// canary chains for other components); kube-proxy, started below,
	// writes the Services' rules.
	if err := n.start("kubelet", n.opts.Kubelet, []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		"--config="+configPath,
		"--kubeconfig="+kubeconfig,
		"--root-dir="+n.dir("kubelet", "root"),
		"--hostname-override="+n.opts.NodeName,
		"--node-ip="+n.IP.String(),
		"--node-labels="+LabelRealNode+"=true",
	); err != nil {
		return err
	}
	err = n.poll(ctx, "the real node to be Ready", 3*time.Minute, func(ctx context.Context) (bool, error) {
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: n.opts.NodeName}, node); err != nil {
			return false, nil //nolint:nilerr // not registered yet.
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	// kube-proxy once the Node names its IP, and before the not-ready
	// taint goes: no pod is on the bridge until the node's firewall is
	// back above kube-proxy's jumps.
	if n.opts.KubeProxy != "" {
		if len(h.KubeProxyKubeconfig) == 0 {
			return errors.New("the real node runs kube-proxy but was given no kubeconfig for it")
		}
		tp := time.Now()
		if err := n.startKubeProxy(ctx, h.KubeProxyKubeconfig); err != nil {
			return err
		}
		n.timings.KubeProxy = time.Since(tp)
	}
	// The node lifecycle controller would remove the not-ready taint the
	// apiserver put on the new node; the dev host runs none.
	node := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: n.opts.NodeName}, node); err != nil {
		return err
	}
	patch := client.MergeFrom(node.DeepCopy())
	node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool {
		return t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable
	})
	if err := c.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("removing the real node's not-ready taint: %w", err)
	}
	n.host = c
	n.timings.Kubelet = time.Since(t)
	return nil
}

// poll waits for condition, failing fast when a process of the node exited.
func (n *Node) poll(ctx context.Context, what string, timeout time.Duration, condition wait.ConditionWithContextFunc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, p := range n.procs {
			if err := p.exited(); err != nil {
				return false, err
			}
		}
		return condition(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// process is a program of the node, its output in StateDir/logs.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs path and records its PID (and executable) first thing, so a
// killed run's processes can be found.
func (n *Node) start(name, path string, env []string, args ...string) error {
	logs := n.dir("logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(logs, "realnode-"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	// Dies with its parent; Stop or the next Start undoes the rest.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	n.procs = append(n.procs, p)
	n.rec.Processes = append(n.rec.Processes, recordedProcess{PID: cmd.Process.Pid, Exe: exe})
	return n.rec.save()
}

func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("real node's %s exited (see logs/realnode-%s.log): %w", p.name, p.name, p.err)
	default:
		return nil
	}
}

// stop sends SIGTERM, then SIGKILL after timeout, and waits.
func (p *process) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// Name is the node's name on the host.
func (n *Node) Name() string { return n.opts.NodeName }

// LogDir is where the node's programs log.
func (n *Node) LogDir() string { return n.dir("logs") }

// RefusedPulls are the registries containerd tried to reach, each refused
// by the node's loopback proxy.
func (n *Node) RefusedPulls() []string { return n.pulls.Targets() }

// RefusedLoopbackPulls are the images whose pull the node refused because
// their registry is on this machine's loopback.
func (n *Node) RefusedLoopbackPulls() []string { return n.images.Refused() }

// PullProxy is the loopback URL containerd sends registry requests to.
func (n *Node) PullProxy() string { return n.pulls.URL() }

// Subnet is the pods' network on the bridge.
func (n *Node) Subnet() *net.IPNet { return n.subnet }
