package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/testbed/podstream"
)

// Logs through the virtual apiserver read the host container's log, with
// every option the apiserver passes on, as the same request on the host.
func TestLogsThroughVirtualCluster(t *testing.T) {
	pod := accessPod(t, "logs", "app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	virtual, host := clientset(t, env.Virtual.Config), clientset(t, env.Host.Config)
	hostPod := hostKey(pod)
	cases := []struct {
		name string
		opts corev1.PodLogOptions
		want string
	}{
		{"whole log", corev1.PodLogOptions{}, "line 1\nline 2\nline 3\n"},
		{"tailLines", corev1.PodLogOptions{TailLines: ptr.To[int64](1)}, "line 3\n"},
		{"limitBytes", corev1.PodLogOptions{LimitBytes: ptr.To[int64](9)}, "line 1\nli"},
		{"timestamps", corev1.PodLogOptions{Timestamps: true, TailLines: ptr.To[int64](1)}, "2026-01-02T03:04:07.000000000Z line 3\n"},
		{"sinceTime", corev1.PodLogOptions{SinceTime: &metav1.Time{Time: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)}}, "line 2\nline 3\n"},
		{"sinceSeconds (all lines are older)", corev1.PodLogOptions{SinceSeconds: ptr.To[int64](1)}, ""},
		{"previous", corev1.PodLogOptions{Previous: true}, "before the restart\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Container = "app"
			got, err := readLogs(ctx, virtual, pod.Namespace, pod.Name, &opts)
			if err != nil {
				t.Fatalf("virtual: %v", err)
			}
			direct, err := readLogs(ctx, host, hostPod.Namespace, hostPod.Name, &opts)
			if err != nil {
				t.Fatalf("host: %v", err)
			}
			if got != tc.want || got != direct {
				t.Errorf("virtual %q, host %q, want %q", got, direct, tc.want)
			}
		})
	}
}

// logSilence is how long `logs -f` stays silent in the follow test
// (PODBRIDGE_TEST_LOG_SILENCE, a Go duration; 15s by default, to keep
// make test short; the issue asks for minutes, run it with 60s).
func logSilence(t *testing.T) time.Duration {
	if v := os.Getenv("PODBRIDGE_TEST_LOG_SILENCE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PODBRIDGE_TEST_LOG_SILENCE: %v", err)
		}
		return d
	}
	return 15 * time.Second
}

// A followed log keeps streaming after a silence: the second part, written
// after the silence, arrives on the same stream as the first.
func TestLogsFollowSurvivesSilence(t *testing.T) {
	pod := accessPod(t, "follow", "follow")
	silence := logSilence(t)
	ctx, cancel := context.WithTimeout(context.Background(), silence+time.Minute)
	defer cancel()
	// The first part is there before the stream opens: a kubelet (kwok's
	// too) sends the response headers with the first log bytes.
	if err := os.WriteFile(accessLog("follow"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	appendLog(t, "follow", "first part")
	stream, err := clientset(t, env.Virtual.Config).CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "follow", Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		scanner := bufio.NewScanner(stream)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		readErr <- fmt.Errorf("stream ended: %w", errors.Join(scanner.Err(), io.EOF))
	}()
	expect := func(want string, within time.Duration) {
		t.Helper()
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("read %q, want %q", got, want)
			}
		case err := <-readErr:
			t.Fatalf("waiting for %q: %v", want, err)
		case <-time.After(within):
			t.Fatalf("%q not read within %s", want, within)
		}
	}
	expect("first part", 20*time.Second)
	start := time.Now()
	// The silence is the subject of this test: nothing is written and
	// nothing may arrive or end the stream meanwhile.
	select {
	case got := <-lines:
		t.Fatalf("read %q during the silence", got)
	case err := <-readErr:
		t.Fatalf("during the silence, after %s: %v", time.Since(start).Round(time.Second), err)
	case <-time.After(silence):
	}
	appendLog(t, "follow", "second part")
	expect("second part", 20*time.Second)
	t.Logf("the followed log delivered the second part after %s of silence", silence)
}

// kwok has no containers: an exec it had a rule for would run the
// tenant's command on this machine, as the user running the test bed (root
// with the real node). Through the virtual apiserver onto a kwok-backed
// pod, over SPDY and WebSocket, with and without stdin, an exec runs
// nothing: it ends with kwok's refusal, as the same exec made directly on
// the host does, and the file the command would create never appears.
// Exec itself (stdin, exit codes, a terminal) is proved on the real node.
func TestExecOnKwokRunsNothingOnThisMachine(t *testing.T) {
	pod := accessPod(t, "exec", "app")
	hostPod := hostKey(pod)
	dir := t.TempDir()
	for _, websocket := range []bool{false, true} {
		for _, stdin := range []string{"", "input\n"} {
			t.Run(fmt.Sprintf("websocket=%v/stdin=%v", websocket, stdin != ""), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				for _, side := range []struct {
					name string
					cfg  *rest.Config
					key  client.ObjectKey
				}{{"virtual", env.Virtual.Config, client.ObjectKeyFromObject(pod)}, {"host", env.Host.Config, hostPod}} {
					marker := filepath.Join(dir, fmt.Sprintf("ran-%s-%v-%v", side.name, websocket, stdin != ""))
					got, err := podstream.Exec(ctx, side.cfg, websocket, side.key.Namespace, side.key.Name, "app", stdin, "touch", marker)
					if err == nil {
						err = got.Err
					}
					// With stdin, kwok's refusal and its closing the connection
					// race the copy of stdin, and the refusal may be lost: over
					// SPDY in the client (seen in 1 of ~10 runs), over
					// WebSocket in the apiserver, which relays to the kubelet
					// API over SPDY (seen once, on a loaded machine). What
					// matters is that nothing ran.
					switch {
					case err != nil && !strings.Contains(err.Error(), "no exec found"):
						t.Errorf("%s: exec ended with %v (stdout %q), want kwok's refusal", side.name, err, got.Stdout)
					case err == nil && stdin == "":
						t.Errorf("%s: exec ended without kwok's refusal (stdout %q)", side.name, got.Stdout)
					case err == nil && got.Stdout != "":
						t.Errorf("%s: exec without kwok's refusal wrote %q", side.name, got.Stdout)
					}
					// The exec has ended: a command kwok ran has too.
					if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: the exec ran on this machine: %s exists (%v)", side.name, marker, err)
					}
				}
			})
		}
	}
}

// port-forward through the virtual apiserver reaches the pod named, over
// SPDY and WebSocket: kwok answers port 80 of pf-a and pf-b with their
// own names.
func TestPortForwardReachesThePodNamed(t *testing.T) {
	a, b := accessPod(t, "pf-a", "app"), accessPod(t, "pf-b", "app")
	for _, websocket := range []bool{false, true} {
		for _, pod := range []*corev1.Pod{a, b} {
			t.Run(fmt.Sprintf("websocket=%v/%s", websocket, pod.Name), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				port, err := podstream.Forward(ctx, env.Virtual.Config, websocket, pod.Namespace, pod.Name, 80)
				if err != nil {
					t.Fatal(err)
				}
				want := pod.Name + ":ping"
				got, err := roundTrip(port, "ping", len(want))
				if err != nil || got != want {
					t.Fatalf("read %q (%v), want %q", got, err, want)
				}
			})
		}
	}
}

// kubectl debug adds an ephemeral container, then attaches to it: the
// reflector carries the container to the host pod, and attach through the
// virtual apiserver follows its output.
func TestAttachToDebugContainer(t *testing.T) {
	pod := accessPod(t, "debug", "app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addDebugContainer(ctx, t, pod, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox", Stdin: true, TTY: false}})
	// What kubectl debug -it waits for before it attaches: the virtual
	// pod reports the debug container running (kwok's stage starts it on
	// the host, the reflector carries the status back).
	eventually(t, 30*time.Second, "the debug container running in the virtual pod's status", func(ctx context.Context) (bool, string) {
		current := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), current); err != nil {
			return false, err.Error()
		}
		for _, s := range current.Status.EphemeralContainerStatuses {
			if s.Name == "debugger" && s.State.Running != nil {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", current.Status.EphemeralContainerStatuses)
	})
	c := clientset(t, env.Virtual.Config)
	req := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: "debugger", Stdout: true, Stderr: true}, parameterCodec)
	for _, websocket := range []bool{false, true} {
		t.Run(fmt.Sprintf("websocket=%v", websocket), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			out := &lineWaiter{lines: make(chan string, 16)}
			done := make(chan error, 1)
			go func() { done <- attach(ctx, websocket, req.URL(), out) }()
			want := fmt.Sprintf("debug output %v", websocket)
			// kwok follows the file from its end once attached: write until
			// the line is read (attaching takes a moment).
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case got := <-out.lines:
					if got == want {
						return
					}
				case err := <-done:
					t.Fatalf("attach ended: %v", err)
				case <-tick.C:
					appendLog(t, "debugger", want)
				case <-ctx.Done():
					t.Fatalf("%q not read through attach", want)
				}
			}
		})
	}
}

// A tenant allowed pods/log but not pods/exec gets exactly that: the
// virtual apiserver's authorization stays in charge.
func TestServiceAccountWithLogsButNotExec(t *testing.T) {
	pod := accessPod(t, "rbac", "app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sa := "log-reader"
	objects := []clientObject{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: accessNamespace}},
		logReaderRole(accessNamespace),
		logReaderBinding(accessNamespace, sa),
	}
	for _, obj := range objects {
		if err := virtualClient.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cfg := impersonate(env.Virtual.Config, "system:serviceaccount:"+accessNamespace+":"+sa)
	eventually(t, 30*time.Second, "the service account reads logs", func(ctx context.Context) (bool, string) {
		got, err := readLogs(ctx, clientset(t, cfg), pod.Namespace, pod.Name, &corev1.PodLogOptions{Container: "app", TailLines: ptr.To[int64](1)})
		return err == nil && got == "line 3\n", fmt.Sprintf("%q %v", got, err)
	})
	for _, websocket := range []bool{false, true} {
		res, err := podstream.Exec(ctx, cfg, websocket, pod.Namespace, pod.Name, "app", "", "true")
		if err == nil {
			err = res.Err
		}
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "forbidden") {
			t.Errorf("exec (websocket=%v) as a service account without pods/exec: %v, want forbidden", websocket, err)
		}
	}
}

// Only the virtual apiserver's kubelet client certificate is accepted:
// no certificate, or one of the right name from another CA, is refused in
// the TLS handshake.
func TestKubeletAPIRefusesOtherClients(t *testing.T) {
	pod := accessPod(t, "mtls", "app")
	path := kubeletURL("/containerLogs/" + pod.Namespace + "/" + pod.Name + "/app")
	apiserver := keyPair(t, env.WebhookClient.Bundle)
	stranger, err := certs.NewClient(devClientCommonName(), time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	strangerPair := keyPair(t, stranger)
	cases := []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"the virtual apiserver's client certificate", &apiserver, true},
		{"no client certificate", nil, false},
		{"the same name from another CA", &strangerPair, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := kubeletClient(tc.cert).Get(path)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || string(body) != "line 1\nline 2\nline 3\n" {
					t.Fatalf("%d %q", resp.StatusCode, body)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("answered %d", resp.StatusCode)
			}
			if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") {
				t.Errorf("refused, but not in the handshake: %v", err)
			}
		})
	}
}

// Closing the tenant's end of a stream frees podbridge's connection to the
// host: the open-streams gauge falls back while the container (kwok's
// attach, following its log file) would go on, over SPDY and WebSocket.
// The container's end closing the stream, and exec with a terminal and its
// resizes, are proved on the real node (test/node/streams_test.go): kwok
// runs no exec.
func TestStreamClosedByTheTenantIsFreed(t *testing.T) {
	pod := accessPod(t, "streams", "app")
	before := metricSum(t, "podbridge_kubelet_open_streams", "subresource", "attach")
	c := clientset(t, env.Virtual.Config)
	req := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: "app", Stdout: true, Stderr: true}, parameterCodec)
	for _, websocket := range []bool{false, true} {
		t.Run(fmt.Sprintf("websocket=%v", websocket), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			streamCtx, closeStream := context.WithCancel(ctx)
			defer closeStream()
			done := make(chan error, 1)
			go func() { done <- attach(streamCtx, websocket, req.URL(), io.Discard) }()
			eventually(t, 30*time.Second, "the attach stream open", func(context.Context) (bool, string) {
				v := metricSum(t, "podbridge_kubelet_open_streams", "subresource", "attach")
				return v == before+1, fmt.Sprintf("%v open", v)
			})
			closeStream()
			eventually(t, 15*time.Second, "the stream freed on both sides", func(context.Context) (bool, string) {
				v := metricSum(t, "podbridge_kubelet_open_streams", "subresource", "attach")
				return v == before, fmt.Sprintf("%v open", v)
			})
			select {
			case err := <-done:
				t.Logf("the attach returned: %v", err) // canceled: the tenant closed it
			case <-ctx.Done():
				t.Fatal("the client's attach did not return")
			}
		})
	}
}
