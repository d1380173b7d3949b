//go:build node

package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/testbed/child"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/realnode"
)

// Named to run last (go test runs a package's tests in file order): Stop,
// with a pod running and a provisioned claim Bound, leaves no process,
// mount, interface, cgroup, provisioned volume,
// firewall chain or changed sysctl behind; so does a `podbridge-dev` run
// killed with SIGKILL, undone by `podbridge-dev` started again in its
// folder; and a second start on the same machine works and is undone the
// same way.
func TestZZStopLeavesNothingAndStartingAgainWorks(t *testing.T) {
	// A pod still running when Stop comes, as with a Ctrl-C of make run.
	running := realPod("default", "running-at-stop", "pause")
	if err := virtualClient.Create(context.Background(), running); err != nil {
		t.Fatal(err)
	}
	waitVirtualReady(t, running)
	// A claim the host provisioned, Bound when Stop comes: its folder goes.
	kept := claim("default", "kept-at-stop")
	if err := virtualClient.Create(context.Background(), kept); err != nil {
		t.Fatal(err)
	}
	provisionedFolder(t, waitClaimBound(t, kept))
	first, firstDir := env, stateDir
	env = nil // TestMain must not stop it again.
	if err := first.Stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	assertMachineClean(t, firstDir)
	os.RemoveAll(firstDir)

	// A `podbridge-dev --real-node` killed with a pod running leaves its
	// shim, container, mounts and bridge: started again in the same
	// folder, it undoes them.
	bin, killedDir := killedRealNode(t)
	defer os.RemoveAll(killedDir)
	devAgainAfterKill(t, bin, killedDir)

	second, dir, err := startEnv()
	defer os.RemoveAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = second.Stop()
		}
	}()
	env, stateDir = second, dir
	if hostClient, err = client.New(second.Host.Config, client.Options{Scheme: kube.Scheme}); err != nil {
		t.Fatal(err)
	}
	if hostSet, err = kubernetes.NewForConfig(second.Host.Config); err != nil {
		t.Fatal(err)
	}
	if virtualClient, err = client.New(second.Virtual.Config, client.Options{Scheme: kube.Scheme}); err != nil {
		t.Fatal(err)
	}
	pod := realPod("default", "again", "env", "pause")
	if err := virtualClient.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	waitVirtualReady(t, pod)
	waitForLog(t, pod, 30*time.Second, "HOSTNAME=again")
	// Left running for Stop, too.

	env = nil
	stopped = true
	if err := second.Stop(); err != nil {
		t.Fatalf("stopping the second environment: %v", err)
	}
	assertMachineClean(t, dir)
	assertMachineClean(t, killedDir)
}

// devWithPod runs `podbridge-dev --real-node` in dir and starts a pod on
// its real node; the process ends with the test at the latest.
func devWithPod(t *testing.T, bin, dir string) *exec.Cmd {
	t.Helper()
	ctx := context.Background()
	root, err := controlplane.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.CreateTemp(t.TempDir(), "dev-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	cmd := exec.Command(bin, "--real-node", "--state-dir", dir, "--podbridge", podbridgeBinary)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = logFile, logFile
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// Not the ready file of a killed run that used the folder before.
	eventually(t, 3*time.Minute, "podbridge-dev --real-node ready (log "+logFile.Name()+")", func(context.Context) (bool, string) {
		info, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil && info.ModTime().After(started), fmt.Sprint(err)
	})
	virtualCfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "virtual.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	virtual, err := client.New(virtualCfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	pod := realPod("default", "left-behind", "pause")
	if err := virtual.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the pod Ready on the real node of podbridge-dev", func(ctx context.Context) (bool, string) {
		p := &corev1.Pod{}
		if err := virtual.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, err.Error()
		}
		return ready(p) == corev1.ConditionTrue, string(p.Status.Phase)
	})
	return cmd
}

// killedRealNode runs `podbridge-dev --real-node` with a pod on the real
// node, kills podbridge with SIGKILL and checks that every process it
// started died with it (etcd, the apiservers, kwok, the kubelet,
// containerd...) while the real node's container, shim, bridge and
// firewall are left, as after a crash. It returns the podbridge-dev binary and the folder.
func killedRealNode(t *testing.T) (bin, dir string) {
	t.Helper()
	bin = filepath.Join(t.TempDir(), "podbridge-dev")
	if err := controlplane.Build(context.Background(), "./cmd/podbridge-dev", bin); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(os.TempDir(), fmt.Sprintf("podbridge-node-killed-%d", time.Now().UnixNano()))
	cmd := devWithPod(t, bin, dir)
	children := child.Children(cmd.Process.Pid)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, 30*time.Second, "every process podbridge-dev started gone with it", func(context.Context) (bool, string) {
		var left []string
		for _, pid := range children {
			if child.Running(pid) {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				left = append(left, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
	if _, err := os.Stat(filepath.Join("/sys/class/net", realnode.DefaultBridge)); err != nil {
		t.Errorf("after the kill, no bridge is left to undo: %v", err)
	}
	if left := processesLeft(dir); len(left) == 0 {
		t.Error("after the kill, no shim or container is left to undo")
	}
	if err := exec.Command("iptables", "-w", "-S", realnode.ForwardChain).Run(); err != nil {
		t.Errorf("after the kill, no firewall chain is left to undo: %v", err)
	}
	if chains, err := realnode.KubeProxyChains(); err != nil || len(chains) == 0 {
		t.Errorf("after the kill, no kube-proxy chain is left to undo: %v %v", chains, err)
	}
	return bin, dir
}

// devAgainAfterKill starts `podbridge-dev --real-node` again in the killed
// run's folder, as a user would: it undoes what the killed node left,
// clears the folder and runs a pod; Ctrl-C (SIGINT) then leaves nothing,
// the folder included.
func devAgainAfterKill(t *testing.T, bin, dir string) {
	t.Helper()
	cmd := devWithPod(t, bin, dir)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("podbridge-dev after Ctrl-C: %v", err)
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("podbridge-dev still ran 2 minutes after Ctrl-C (then killed: %v)", <-exited)
	}
	assertMachineClean(t, dir)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the state folder is left after Ctrl-C: %v", err)
	}
}

// assertMachineClean checks what `ip link`, `mount | grep`, `pgrep` and
// `iptables-save` would show after a real node stopped.
func assertMachineClean(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("/sys/class/net", realnode.DefaultBridge)); err == nil {
		t.Errorf("interface %s left", realnode.DefaultBridge)
	}
	if links, _ := filepath.Glob("/sys/class/net/veth*"); len(links) > 0 {
		t.Errorf("veth interfaces left: %v", links)
	}
	mounts, err := realnode.Mounts(filepath.Join(dir, "realnode"))
	if err != nil || len(mounts) > 0 {
		t.Errorf("mounts left: %v %v", mounts, err)
	}
	if left := processesLeft(dir); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
	// The host-path provisioner's link and the folder it names, with
	// the volumes in it.
	for _, path := range []string{realnode.HostPathProvisionerDir, filepath.Join(dir, "realnode", "hostpath_pv")} {
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("the host-path provisioner's %s left: %v", path, err)
		}
	}
	if _, err := os.Stat("/run/podbridge-realnode/record.json"); err == nil {
		t.Error("the real node's record is left: something was not undone")
	}
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(cg) > 0 {
		t.Errorf("pod cgroups left: %v", cg)
	}
	// kube-proxy's chains (every KUBE-* one, in filter, nat and mangle),
	// the kubelet's (it must add none) and the node's firewall.
	if chains, err := realnode.KubeProxyChains(); err != nil || len(chains) > 0 {
		t.Errorf("kube-proxy chains left: %v %v", chains, err)
	}
	if out, err := exec.Command("ip", "route", "show", "table", "all", realnode.DefaultServiceCIDR).Output(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("the service range's route left: %q %v", out, err)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(save).Output()
		if err != nil {
			t.Errorf("%s: %v", save, err)
			continue
		}
		if strings.Contains(string(out), "KUBE-") || strings.Contains(string(out), "PODBRIDGE-RN") {
			t.Errorf("%s: chains left:\n%s", save, out)
		}
	}
	for s, before := range sysctlsBefore {
		b, _ := os.ReadFile(filepath.Join("/proc/sys", s))
		if now := strings.TrimSpace(string(b)); now != before {
			t.Errorf("sysctl %s = %s, was %s before the real node", s, now, before)
		}
	}
}

// processesLeft lists processes of the node: containerd, its shims, the
// kubelet, containers (the workload binary), or anything naming dir.
func processesLeft(dir string) []string {
	var left []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		base := filepath.Base(args[0])
		if strings.Contains(string(cmdline), dir) || base == "containerd" || strings.HasPrefix(base, "containerd-shim") || base == "kubelet" || base == "podbridge-workload" {
			left = append(left, fmt.Sprintf("%s %s", e.Name(), strings.Join(args, " ")))
		}
	}
	return left
}
