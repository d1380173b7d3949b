package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/podbridge/podbridge/testbed/child"
	"github.com/podbridge/podbridge/testbed/testwait"
)

// parentDirEnv makes the test binary, started again, start etcd and a
// kube-apiserver in that folder, say "ready" and wait to be killed.
const parentDirEnv = "CONTROLPLANE_TEST_PARENT_DIR"

func TestMain(m *testing.M) {
	dir := os.Getenv(parentDirEnv)
	if dir == "" {
		os.Exit(m.Run())
	}
	assets, err := DefaultAssets()
	if err == nil {
		_, err = startAPIServer("host", Options{Assets: assets, Dir: dir}, nil)
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		time.Sleep(time.Hour) // the parent's life, not a test's wait.
	}
}

// etcd and the kube-apiserver, which envtest starts, die with the process
// that started them (a SIGKILLed `podbridge-dev`, a timed-out test binary)
// instead of keeping their ports, memory and CPU.
func TestEtcdAndAPIServerDieWithTheirParent(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), parentDirEnv+"="+t.TempDir())
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	parent.Stderr = parent.Stdout
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	var children []int
	t.Cleanup(func() {
		_ = parent.Process.Kill()
		_ = parent.Wait()
		for _, pid := range children {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	said := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		said <- line
	}()
	select {
	case line := <-said:
		if line != "ready\n" {
			t.Fatalf("the parent did not start its control plane: %q", line)
		}
	case <-time.After(4 * time.Minute):
		t.Fatal("the parent did not start its control plane within 4 minutes")
	}
	children = child.Children(parent.Process.Pid)
	var names []string
	for _, pid := range children {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		names = append(names, strings.TrimSpace(string(comm)))
	}
	if !slices.Contains(names, "etcd") || !slices.Contains(names, "kube-apiserver") {
		t.Fatalf("the parent's children are %q, want etcd and kube-apiserver among them", names)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, time.Minute, "etcd and the kube-apiserver gone with their parent", func(context.Context) (bool, string) {
		var left []string
		for i, pid := range children {
			if child.Running(pid) {
				left = append(left, fmt.Sprintf("%s (%d)", names[i], pid))
			}
		}
		return len(left) == 0, strings.Join(left, ", ")
	})
}

// kube-apiserver refuses an admission configuration that names files by
// relative path; `make bench` passes a relative output folder.
func TestAdmissionConfigNamesFilesByAbsolutePath(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("run", 0o700); err != nil {
		t.Fatal(err)
	}
	path, err := writeAdmissionConfig("run", &WebhookClient{Names: []string{"webhook"}, CertFile: "run/client/tls.crt", KeyFile: "run/client/tls.key"}, []byte("kind: List\n"))
	if err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"kubeConfigFile", "staticManifestsDir"} {
		_, rest, found := strings.Cut(string(config), key+": ")
		if !found {
			t.Fatalf("no %s in\n%s", key, config)
		}
		named, _, _ := strings.Cut(rest, "\n")
		if named, err = strconv.Unquote(named); err != nil || !filepath.IsAbs(named) {
			t.Errorf("%s %s (%v): want an absolute path", key, named, err)
		}
	}
	kubeconfig, err := clientcmd.LoadFromFile(filepath.Join("run", "webhook-client.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range kubeconfig.AuthInfos {
		if !filepath.IsAbs(user.ClientCertificate) || !filepath.IsAbs(user.ClientKey) {
			t.Errorf("the webhook client's kubeconfig names %s and %s: want absolute paths", user.ClientCertificate, user.ClientKey)
		}
	}
}

// An apiserver that will not start says why, not only that it timed out.
func TestAnAPIServerThatDiesAtStartSaysWhy(t *testing.T) {
	assets, err := DefaultAssets()
	if err != nil {
		t.Fatal(err)
	}
	_, err = startAPIServer("host", Options{Assets: assets, Dir: t.TempDir()}, map[string]string{"service-cluster-ip-range": "not-a-cidr"})
	if err == nil {
		t.Fatal("the apiserver started with an invalid flag")
	}
	if !strings.Contains(err.Error(), "service-cluster-ip-range[0] is not a valid cidr") {
		t.Errorf("the error does not quote the apiserver's reason: %v", err)
	}
}
