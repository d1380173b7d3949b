//go:build node

package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/realnode"
)

// Named to run last (go test runs a package's tests in file order): Stop
// leaves no process, mount, interface, cgroup, firewall chain or changed
// sysctl behind, and a second Start on the same machine works and is
// undone the same way.
func TestZZStopLeavesNothingAndStartingAgainWorks(t *testing.T) {
	first, firstDir := env, stateDir
	env = nil // TestMain must not stop it again.
	if err := first.Stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	assertMachineClean(t, firstDir)
	os.RemoveAll(firstDir)

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

	env = nil
	stopped = true
	if err := second.Stop(); err != nil {
		t.Fatalf("stopping the second environment: %v", err)
	}
	assertMachineClean(t, dir)
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
	if _, err := os.Stat("/run/podbridge-realnode/record.json"); err == nil {
		t.Error("the real node's record is left: something was not undone")
	}
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(cg) > 0 {
		t.Errorf("pod cgroups left: %v", cg)
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil && strings.Contains(string(out), "KUBE-") {
		t.Errorf("iptables chains left:\n%s", out)
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
