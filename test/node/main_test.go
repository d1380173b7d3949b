//go:build node

// Package node is the end-to-end suite of the real node (make test-node,
// build tag node, root): each case is a tenant pod created through the
// virtual apiserver and podbridge's webhook that runs in a real container
// on the real node, checked from inside that container through its host
// pod's logs. The suite runs serially: one real node per machine.
package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/devenv"
	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/testbed/testwait"
	"github.com/podbridge/podbridge/translate"
)

// tokenRefreshAfter is when the reflector refreshes a projected token
// after issuing it, instead of at 80% of the virtual apiserver's 10-minute
// minimum lifetime: soon enough to watch a refresh reach a container.
const tokenRefreshAfter = 20 * time.Second

var (
	env *devenv.Env
	// podbridgeBinary is cmd/podbridge, built once for the suite (with
	// -race under -race): devenv and podbridge-dev run its webhook and
	// reflector.
	podbridgeBinary string
	stateDir        string
	hostClient      client.Client
	hostSet         kubernetes.Interface
	virtualClient   client.Client
	// sysctlsBefore are the machine's values before the suite: Stop must
	// restore them.
	sysctlsBefore map[string]string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(1))))
	// A node an earlier run left (killed, or a failed test's dev) is undone
	// first, whatever its folder, so the values read are the machine's own.
	if err := realnode.SweepLeftovers(ctrl.Log, "/"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sysctlsBefore = readSysctls()
	buildCtx, cancelBuild := context.WithTimeout(context.Background(), 10*time.Minute)
	var removePodbridge func()
	var err error
	podbridgeBinary, removePodbridge, err = devenv.BuildPodbridge(buildCtx)
	cancelBuild()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer removePodbridge()
	if env, stateDir, err = startEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if env != nil { // zz_stop_test.go stops it itself
			if code != 0 {
				env.WriteLogTails(os.Stderr, 64<<10)
			}
			if err := env.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "stopping: %v\n", err)
				// A data race inside podbridge fails the run.
				if errors.Is(err, devenv.ErrDataRace) {
					code = 1
				}
			}
		}
		os.RemoveAll(stateDir)
	}()
	if hostClient, err = client.New(env.Host.Config, client.Options{Scheme: kube.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if hostSet, err = kubernetes.NewForConfig(env.Host.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if virtualClient, err = client.New(env.Virtual.Config, client.Options{Scheme: kube.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// startEnv starts the dev environment with a real node in a fresh state dir
// and reports how long the node took.
func startEnv() (*devenv.Env, string, error) {
	dir, err := os.MkdirTemp("", "podbridge-node-")
	if err != nil {
		return nil, "", err
	}
	opts := devenv.Defaults()
	opts.StateDir = dir
	opts.TokenRefreshAfter = tokenRefreshAfter
	// podbridge's webhook and reflector run as processes of the binary
	// run built; their warnings and errors reach the test output.
	opts.Podbridge = podbridgeBinary
	opts.Output = devenv.WarningsOnly(os.Stderr)
	if opts.Assets, err = controlplane.DefaultAssets(); err != nil {
		return nil, dir, err
	}
	kubelet, err := opts.Assets.Path("kubelet")
	if err != nil {
		return nil, dir, err
	}
	root, err := controlplane.ModuleRoot()
	if err != nil {
		return nil, dir, err
	}
	kubeProxy, err := opts.Assets.Path("kube-proxy")
	if err != nil {
		return nil, dir, err
	}
	hostsImage, err := buildHostsImage(root, dir)
	if err != nil {
		return nil, dir, err
	}
	opts.Translate.HostsImage = realnode.HostsImage
	opts.RealNode = &realnode.Options{
		StateDir: filepath.Join(dir, "realnode"), Kubelet: kubelet, KubeProxy: kubeProxy,
		Images: filepath.Join(root, "bin", "node", "images.tar"),
		// podbridge.local/coredns (make node-bins), the hosts image, and the
		// control-plane images of `podbridge create` (make vc-images).
		ExtraImages: []string{filepath.Join(root, "bin", "node", "coredns.tar"), hostsImage, filepath.Join(root, "bin", "vc", "images.tar")},
		// The node's own few messages (packages installed, leftovers
		// undone) at info level; the controllers' at warning.
		Log: zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.InfoLevel)).WithName("realnode"),
	}
	// Virtual clusters' control planes run on the node (vcluster_test.go).
	opts.ControlPlanePods = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	started := time.Now()
	e, err := devenv.Start(ctx, opts)
	if err != nil {
		return nil, dir, fmt.Errorf("starting control planes, podbridge and the real node: %w", err)
	}
	t := e.RealNode.Timings()
	fmt.Fprintf(os.Stderr, "real node: packages %s, network %s, containerd %s, images %s, kubelet to Ready %s (of which kube-proxy %s; node start %s); whole environment %s\n",
		t.Packages.Round(time.Millisecond), t.Network.Round(time.Millisecond), t.Containerd.Round(time.Millisecond), t.Images.Round(time.Millisecond),
		t.Kubelet.Round(time.Millisecond), t.KubeProxy.Round(time.Millisecond), (t.Network + t.Containerd + t.Images + t.Kubelet).Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	return e, dir, nil
}

// buildHostsImage builds cmd/podbridge-hosts (static) and packs it with
// hack/nodeimage/vcimages into dir/hosts.tar, offline as make vc-images
// builds the other images (Go's build cache makes it seconds after the
// first run). Built here rather than by node-bins so the suite runs the
// source it tests.
func buildHostsImage(root, dir string) (string, error) {
	bin, tarball := filepath.Join(dir, "podbridge-hosts"), filepath.Join(dir, "hosts.tar")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/podbridge-hosts")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building podbridge-hosts: %w: %s", err, out)
	}
	pack := exec.Command("go", "run", "./vcimages", "-out", tarball, "-image", realnode.HostsImage+"="+bin)
	pack.Dir = filepath.Join(root, "hack", "nodeimage")
	if out, err := pack.CombinedOutput(); err != nil {
		return "", fmt.Errorf("packing the hosts image: %w: %s", err, out)
	}
	return tarball, nil
}

// eventually waits for condition (see testwait.Until).
var eventually = testwait.Until

// namespace creates a fresh virtual namespace and waits for its default
// service account.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "n-"}}
	if err := virtualClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating virtual namespace: %v", err)
	}
	eventually(t, 30*time.Second, "default service account in "+ns.Name, func(ctx context.Context) (bool, string) {
		err := virtualClient.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, fmt.Sprint(err)
	})
	return ns.Name
}

// realPod is a tenant pod that asks for the real node and runs the
// workload's steps.
func realPod(ns, name string, steps ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{realnode.LabelRealNode: "true"},
			Tolerations:                   []corev1.Toleration{{Key: realnode.TaintRealNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			Containers: []corev1.Container{{
				Name: "w", Image: realnode.WorkloadImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: steps,
			}},
		},
	}
}

// create creates the virtual pod and deletes it when the test ends.
func create(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if err := virtualClient.Create(context.Background(), pod); err != nil {
		t.Fatalf("creating virtual pod %s: %v", pod.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "virtual-kube-apiserver.log", 40)
		}
		_ = virtualClient.Delete(context.Background(), pod, client.GracePeriodSeconds(0))
	})
}

// logTail logs the last lines of a component's log in the state folder,
// which goes with the run: what a failed test needs to find its cause.
func logTail(t *testing.T, name string, lines int) {
	b, err := os.ReadFile(filepath.Join(stateDir, "logs", name))
	if err != nil {
		t.Logf("reading %s: %v", name, err)
		return
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("last %d lines of %s:\n%s", lines, name, strings.Join(all[max(0, len(all)-lines):], "\n"))
}

// hostKey is the host pod of a virtual pod.
func hostKey(pod *corev1.Pod) client.ObjectKey {
	tc := env.Options.Translate
	return client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostName(pod.Name, pod.Namespace, tc.VCluster)}
}

// logs returns the output of the container "w", read through the host
// apiserver (pods/log, which dials the kubelet on the bridge).
func logs(ctx context.Context, pod *corev1.Pod, previous bool) (string, error) {
	return containerLogs(ctx, pod, "w", previous)
}

func containerLogs(ctx context.Context, pod *corev1.Pod, container string, previous bool) (string, error) {
	k := hostKey(pod)
	b, err := hostSet.CoreV1().Pods(k.Namespace).GetLogs(k.Name, &corev1.PodLogOptions{Container: container, Previous: previous}).DoRaw(ctx)
	return string(b), err
}

// waitForLog waits until the output of the container "w" has every line
// of want.
func waitForLog(t *testing.T, pod *corev1.Pod, timeout time.Duration, want ...string) {
	t.Helper()
	waitForContainerLog(t, pod, "w", timeout, want...)
}

func waitForContainerLog(t *testing.T, pod *corev1.Pod, container string, timeout time.Duration, want ...string) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("output of %s/%s with %q", pod.Name, container, want), func(ctx context.Context) (bool, string) {
		out, err := containerLogs(ctx, pod, container, false)
		if err != nil {
			return false, err.Error()
		}
		lines := strings.Split(out, "\n")
		for _, w := range want {
			if !containsLine(lines, w) {
				return false, out
			}
		}
		return true, ""
	})
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// virtualPod reads the virtual pod.
func virtualPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	return p, virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), p)
}

// ready reports the pod's Ready condition.
func ready(p *corev1.Pod) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// waitVirtualReady waits until the virtual pod is on the real node and
// Ready (90 s: the first pod of a run also waits for its token).
func waitVirtualReady(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	eventually(t, 90*time.Second, "virtual pod "+pod.Name+" Ready on the real node", func(ctx context.Context) (bool, string) {
		var err error
		if p, err = virtualPod(ctx, pod); err != nil {
			return false, err.Error()
		}
		return p.Spec.NodeName == env.RealNode.Name() && ready(p) == corev1.ConditionTrue, fmt.Sprintf("node %q phase %s ready %s", p.Spec.NodeName, p.Status.Phase, ready(p))
	})
	return p
}

// readSysctls reads what the real node changes.
func readSysctls() map[string]string {
	out := map[string]string{}
	for _, s := range []string{
		"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
		"net/ipv4/conf/all/route_localnet", "net/netfilter/nf_conntrack_max",
		"net/netfilter/nf_conntrack_tcp_timeout_established", "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
	} {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", s)); err == nil {
			out[s] = strings.TrimSpace(string(b))
		}
	}
	return out
}
