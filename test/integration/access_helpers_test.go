package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/podstream"
	"github.com/podbridge/podbridge/translate"
)

// The access tests' pods live in one virtual namespace of fixed name, so
// the host pod names (and the kwok rules that answer for them) are known
// before the host starts.
const accessNamespace = "access"

// accessDir holds the log files kwok serves for the access tests.
var accessDir string

// accessLog is the file kwok serves as container name's log (and, for
// "debugger", what attaching to it follows).
func accessLog(name string) string { return filepath.Join(accessDir, name+".log") }

// accessKwokRules are kwok's answers for the access tests, ahead of the
// default rules: per-container log files, attach files for ephemeral
// "debugger" and "mine" containers, and port 80 of pods pf-a and pf-b
// answering with their own name before echoing (so a test sees which pod
// it reached).
func accessKwokRules(dir string) (string, error) {
	accessDir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	app := criLines(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "line 1", "line 2", "line 3")
	previous := criLines(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "before the restart")
	for file, content := range map[string]string{"app": app, "app-previous": previous, "follow": "", "debugger": "", "mine": "", "bench": app} {
		if err := os.WriteFile(accessLog(file), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	vcluster := "dev"
	q := strconv.Quote
	return fmt.Sprintf(`---
# A kwok stage that records a Warning event about host pods of virtual
# pods labelled kwok-stage-event=warn, once (it sets status.message).
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: access-kwok-warning}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.labels["tenant.podbridge.io/kwok-stage-event"]', operator: In, values: [warn]}
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Running]}
    - {key: '.status.message', operator: DoesNotExist}
  next:
    event: {type: Warning, reason: KwokStageWarning, message: "kwok's stage warns about this pod"}
    statusTemplate: |
      message: warned by kwok
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata: {name: access}
spec:
  logs:
  - {containers: [app], logsFile: %s, previousLogsFile: %s, follow: true}
  - {containers: [follow], logsFile: %s, follow: true}
  - {containers: [bench], logsFile: %s}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterAttach
metadata: {name: access}
spec:
  attaches:
  - {containers: [debugger], logsFile: %s}
  - {containers: [mine], logsFile: %s}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata: {name: access-pf-a}
spec:
  selector: {matchNames: [%s]}
  forwards:
  - {ports: [80], command: [sh, -c, "printf pf-a: && exec cat"]}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata: {name: access-pf-b}
spec:
  selector: {matchNames: [%s]}
  forwards:
  - {ports: [80], command: [sh, -c, "printf pf-b: && exec cat"]}
`, q(accessLog("app")), q(accessLog("app-previous")), q(accessLog("follow")), q(accessLog("bench")), q(accessLog("debugger")), q(accessLog("mine")),
		q(translate.HostName("pf-a", accessNamespace, vcluster)), q(translate.HostName("pf-b", accessNamespace, vcluster))), nil
}

// criLines is a container log in the CRI format kwok reads, one line per
// message, stamped from start a second apart.
func criLines(start time.Time, lines ...string) string {
	var b strings.Builder
	for i, l := range lines {
		fmt.Fprintf(&b, "%s stdout F %s\n", start.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), l)
	}
	return b.String()
}

// appendLog appends CRI log lines to kwok's file for container.
func appendLog(t *testing.T, container string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(accessLog(container), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(criLines(time.Now().UTC(), lines...)); err != nil {
		t.Fatal(err)
	}
}

var accessNamespaceOnce sync.Once

// accessPod creates pod name in the access namespace with the given
// containers, waits until it runs bound to a node, and deletes it (both
// sides) when the test ends, as its name is used again by the next run.
func accessPod(t *testing.T, name string, containers ...string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	accessNamespaceOnce.Do(func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: accessNamespace}}
		if err := virtualClient.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating namespace %s: %v", accessNamespace, err)
		}
	})
	eventually(t, 30*time.Second, "default service account in "+accessNamespace, func(ctx context.Context) (bool, string) {
		err := virtualClient.Get(ctx, client.ObjectKey{Namespace: accessNamespace, Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, fmt.Sprint(err)
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: accessNamespace}}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
	}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := virtualClient.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting pod %s: %v", name, err)
		}
		waitGone(t, virtualClient, pod, time.Minute)
		waitGone(t, hostClient, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: hostKey(pod).Name, Namespace: hostKey(pod).Namespace}}, time.Minute)
	})
	return waitRunningBound(t, pod)
}

// clientsets for the typed subresource calls (logs, exec, port-forward),
// as an administrator of either cluster.
func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readLogs reads a whole (not followed) log.
func readLogs(ctx context.Context, c kubernetes.Interface, namespace, pod string, opts *corev1.PodLogOptions) (string, error) {
	stream, err := c.CoreV1().Pods(namespace).GetLogs(pod, opts).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer stream.Close()
	data, err := io.ReadAll(stream)
	return string(data), err
}

// roundTrip sends message through a forwarded local port and reads the
// answer up to want's length.
func roundTrip(port int, message string, want int) (string, error) {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write([]byte(message)); err != nil {
		return "", err
	}
	buf := make([]byte, want)
	n, err := io.ReadFull(conn, buf)
	return string(buf[:n]), err
}

// kubeletClient calls podbridge's kubelet API directly, as the virtual
// apiserver does (cert: its client certificate) or as anyone else would.
func kubeletClient(cert *tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(env.KubeletCAFile)
	if err == nil {
		roots.AppendCertsFromPEM(ca)
	}
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		config.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: config}}
}

func kubeletURL(path string) string {
	return "https://" + net.JoinHostPort(env.Kubelet.Address, strconv.Itoa(int(env.Kubelet.Port))) + path
}

var parameterCodec = scheme.ParameterCodec

type clientObject = client.Object

// lineWaiter is a writer that hands on each complete line it is written.
type lineWaiter struct {
	lines   chan string
	partial string
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.partial += string(p)
	for {
		i := strings.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- w.partial[:i]
		w.partial = w.partial[i+1:]
	}
}

// attach streams the attached container's stdout into out until ctx ends.
func attach(ctx context.Context, websocket bool, u *url.URL, out io.Writer) error {
	executor, err := podstream.Executor(env.Virtual.Config, websocket, u)
	if err != nil {
		return err
	}
	return executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out, Stderr: out})
}

func logReaderRole(namespace string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "log-reader", Namespace: namespace},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list"}},
		},
	}
}

func logReaderBinding(namespace, serviceAccount string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "log-reader", Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "log-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: namespace}},
	}
}

// impersonate is cfg acting as user (the administrator may impersonate).
func impersonate(cfg *rest.Config, user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user}
	return c
}

// addHostOnlyContainer adds an ephemeral container "host-only" to pod's
// host pod directly, as a host operator's debug session would: the virtual
// spec never has it.
func addHostOnlyContainer(ctx context.Context, t *testing.T, pod *corev1.Pod) {
	t.Helper()
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	host.Spec.EphemeralContainers = append(host.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "host-only", Image: "busybox"},
	})
	if err := hostClient.SubResource("ephemeralcontainers").Update(ctx, host); err != nil {
		t.Fatalf("adding a host-only container: %v", err)
	}
}

// addDebugContainer adds ephemeral container c to the virtual pod, as
// kubectl debug does, and waits until the reflector has carried it to the
// host pod (its only ephemeral container).
func addDebugContainer(ctx context.Context, t *testing.T, pod *corev1.Pod, c corev1.EphemeralContainer) {
	t.Helper()
	if err := updateVirtualPod(ctx, pod, "ephemeralcontainers", func(p *corev1.Pod) {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, c)
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "debug container "+c.Name+" on the host pod", func(ctx context.Context) (bool, string) {
		host, err := getHostPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		return len(host.Spec.EphemeralContainers) == 1, fmt.Sprintf("%d ephemeral containers", len(host.Spec.EphemeralContainers))
	})
}
