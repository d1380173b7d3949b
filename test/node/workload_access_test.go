//go:build node

package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/kubectl/pkg/cmd/cp"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/testbed/podstream"
	"github.com/podbridge/podbridge/testbed/realnode"
)

// The verbs kwok cannot play (it never closes a command's stdin and never
// ends an attach), on the real node through the virtual apiserver: what
// kubectl debug, logs -f, logs --previous and cp do.

func virtualClientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// virtualLogs reads container w's whole log through the virtual
// apiserver.
func virtualLogs(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, previous bool) (string, error) {
	b, err := c.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "w", Previous: previous}).DoRaw(ctx)
	return string(b), err
}

// execWorkload runs the workload binary's steps in container w through
// the virtual apiserver and fails the test unless it exits 0.
func execWorkload(t *testing.T, pod *corev1.Pod, stdin string, steps ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := podstream.Exec(ctx, env.Virtual.Config, true, pod.Namespace, pod.Name, "w", stdin, append([]string{"/podbridge-workload"}, steps...)...)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("exec %q in %s: %v (stdout %q, stderr %q)", steps, pod.Name, err, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// kubectl debug: an ephemeral container added through the virtual pod's
// ephemeralcontainers subresource (the strategic merge patch kubectl
// sends) runs in the real pod; attach through the virtual apiserver, over
// SPDY and WebSocket, sends it stdin, whose end it sees (stdinOnce), reads
// its output, and ends when it exits. Its exit code reaches the virtual
// pod's status.
func TestDebugContainerAttachedOnRealNode(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "debugged", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	c := virtualClientset(t, env.Virtual.Config)
	for i, websocket := range []bool{false, true} {
		t.Run("websocket="+strconv.FormatBool(websocket), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := fmt.Sprintf("debugger-%d", i)
			exit := 7 + i
			patch := fmt.Sprintf(`{"spec":{"ephemeralContainers":[{"name":%q,"image":%q,"imagePullPolicy":"IfNotPresent","args":["cat:/dev/stdin","exit:%d"],"stdin":true,"stdinOnce":true}]}}`,
				name, realnode.WorkloadImage, exit)
			if _, err := c.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "ephemeralcontainers"); err != nil {
				t.Fatalf("adding the debug container: %v", err)
			}
			status := func(ctx context.Context) (*corev1.ContainerStatus, string) {
				p, err := virtualPod(ctx, pod)
				if err != nil {
					return nil, err.Error()
				}
				for _, s := range p.Status.EphemeralContainerStatuses {
					if s.Name == name {
						return &s, fmt.Sprintf("%+v", s.State)
					}
				}
				return nil, fmt.Sprintf("%d ephemeral container statuses", len(p.Status.EphemeralContainerStatuses))
			}
			// What kubectl debug -i waits for before it attaches.
			eventually(t, time.Minute, "the debug container running in the virtual pod's status", func(ctx context.Context) (bool, string) {
				s, seen := status(ctx)
				return s != nil && s.State.Running != nil, seen
			})
			input := fmt.Sprintf("typed into %s\n", name)
			started := time.Now()
			res, err := podstream.Attach(ctx, env.Virtual.Config, websocket, false, ns, pod.Name, name, strings.NewReader(input))
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("== /dev/stdin\n%s\n== end\nexiting=%d\n", input, exit)
			if res.Stdout != want || res.Err != nil {
				t.Fatalf("attach read %q (stderr %q), ended with %v; want %q and a clean end", res.Stdout, res.Stderr, res.Err, want)
			}
			t.Logf("attach to %s returned %s after it was opened, when the container exited", name, time.Since(started).Round(time.Millisecond))
			eventually(t, time.Minute, "the debug container's exit in the virtual pod's status", func(ctx context.Context) (bool, string) {
				s, seen := status(ctx)
				return s != nil && s.State.Terminated != nil && s.State.Terminated.ExitCode == int32(exit), seen
			})
		})
	}
}

// lineReader hands out the lines of a stream as they arrive, and whether
// the stream ended.
type lineReader struct {
	lines chan string
	ended chan error
}

func readLines(r io.Reader) *lineReader {
	l := &lineReader{lines: make(chan string, 1024), ended: make(chan error, 1)}
	go func() {
		s := bufio.NewScanner(r)
		for s.Scan() {
			l.lines <- s.Text()
		}
		l.ended <- s.Err()
	}()
	return l
}

// waitLine reads lines until want; the stream must not end first.
func (l *lineReader) waitLine(t *testing.T, timeout time.Duration, want string) {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case got := <-l.lines:
			if got == want {
				return
			}
			seen = append(seen, got)
		case err := <-l.ended:
			t.Fatalf("the stream ended (%v) before %q; read %q", err, want, seen)
		case <-deadline:
			t.Fatalf("%q not read within %s; read %q", want, timeout, seen)
		}
	}
}

// logs -f of a running container through the virtual apiserver receives
// the lines written after the follow started, and ends when the container
// does; logs --previous of the restarted container then reads what the
// ended one wrote, and the current log only what the new one wrote.
func TestLogsFollowAndPreviousOnRealNode(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "followed", "watch:/tmp/msg")
	create(t, pod)
	waitVirtualReady(t, pod)
	c := virtualClientset(t, env.Virtual.Config)
	execWorkload(t, pod, "before the follow", "write:/tmp/msg")
	eventually(t, 30*time.Second, "the first line in the log", func(ctx context.Context) (bool, string) {
		out, err := virtualLogs(ctx, c, pod, false)
		return err == nil && strings.Contains(out, "before the follow\n"), fmt.Sprintf("%q %v", out, err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stream, err := c.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "w", Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	follow := readLines(stream)
	follow.waitLine(t, 30*time.Second, "before the follow")
	// Written after the follow read what was there: only the follow can
	// bring these.
	for _, line := range []string{"after the follow 1", "after the follow 2"} {
		execWorkload(t, pod, line, "write:/tmp/msg")
		follow.waitLine(t, 30*time.Second, line)
	}
	// End the container's process: the kubelet restarts the container
	// (restartPolicy Always), and the follow of the ended one ends.
	// The exec may lose its stream as the container it runs in ends: only
	// the end of the container matters.
	killCtx, killCancel := context.WithTimeout(ctx, 30*time.Second)
	res, err := podstream.Exec(killCtx, env.Virtual.Config, true, ns, pod.Name, "w", "", "/podbridge-workload", "kill:1")
	killCancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exec kill:1: %q, %v", res.Stdout, res.Err)
	follow.waitLine(t, 30*time.Second, "signal=terminated")
	select {
	case err := <-follow.ended:
		if err != nil {
			t.Errorf("the follow ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the follow did not end within 30s of the container's end")
	}
	eventually(t, 90*time.Second, "the container restarted and Ready", func(ctx context.Context) (bool, string) {
		p, err := virtualPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		if len(p.Status.ContainerStatuses) != 1 {
			return false, fmt.Sprintf("%d container statuses", len(p.Status.ContainerStatuses))
		}
		s := p.Status.ContainerStatuses[0]
		return s.RestartCount == 1 && s.State.Running != nil && ready(p) == corev1.ConditionTrue, fmt.Sprintf("restarts %d state %+v", s.RestartCount, s.State)
	})
	execWorkload(t, pod, "written by the second container", "write:/tmp/msg")
	eventually(t, 30*time.Second, "the second container's line", func(ctx context.Context) (bool, string) {
		out, err := virtualLogs(ctx, c, pod, false)
		return err == nil && strings.Contains(out, "written by the second container\n"), fmt.Sprintf("%q %v", out, err)
	})
	current, err := virtualLogs(ctx, c, pod, false)
	if err != nil {
		t.Fatal(err)
	}
	previous, err := virtualLogs(ctx, c, pod, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"before the follow", "after the follow 2", "signal=terminated", "stopped=true"} {
		if !strings.Contains(previous, line+"\n") {
			t.Errorf("logs --previous %q lacks %q", previous, line)
		}
		if strings.Contains(current, line+"\n") {
			t.Errorf("the current log %q has the ended container's %q", current, line)
		}
	}
	if strings.Contains(previous, "written by the second container") {
		t.Errorf("logs --previous %q has the current container's line", previous)
	}
}

// kubectlCp runs kubectl's own cp code (k8s.io/kubectl/pkg/cmd/cp) against
// the virtual apiserver, as `kubectl cp -c w SRC DST` in namespace ns.
// kubectl reports some errors from goroutines through its fatal handler:
// they are caught and returned too.
func kubectlCp(t *testing.T, ns, src, dst string) (string, error) {
	t.Helper()
	// kubectl's fatal handler is a global its tar pipe's goroutine reads,
	// maybe after Run returns: set once, never reset, it collects under a
	// lock, and this copy reads what came after its start.
	catchKubectlFatal.Do(func() {
		cmdutil.BehaviorOnFatal(func(msg string, code int) {
			kubectlFatal.mu.Lock()
			defer kubectlFatal.mu.Unlock()
			kubectlFatal.msgs = append(kubectlFatal.msgs, fmt.Sprintf("%s (exit %d)", strings.TrimSpace(msg), code))
		})
	})
	kubectlFatal.mu.Lock()
	seen := len(kubectlFatal.msgs)
	kubectlFatal.mu.Unlock()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = ptr.To(env.Virtual.Kubeconfig)
	flags.Namespace = ptr.To(ns)
	// As kubectl's root command builds its factory.
	f := cmdutil.NewFactory(cmdutil.NewMatchVersionFlags(flags))
	// kubectl's tar pipe may still write from its own goroutine when Run
	// returns: the buffers are read under the lock they are written under.
	var out, errOut lockedBuffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	o := cp.NewCopyOptions(streams)
	o.Container = "w"
	err := o.Complete(f, cp.NewCmdCp(f, streams), []string{src, dst})
	if err == nil {
		err = o.Validate()
	}
	if err == nil {
		err = o.Run()
	}
	kubectlFatal.mu.Lock()
	defer kubectlFatal.mu.Unlock()
	if fatal := kubectlFatal.msgs[seen:]; len(fatal) > 0 {
		err = errors.Join(err, fmt.Errorf("kubectl's fatal handler: %s", strings.Join(fatal, "; ")))
	}
	return out.String() + errOut.String(), err
}

// kubectlFatal collects what kubectl reports through its fatal handler
// (see kubectlCp); the suite runs serially.
var (
	catchKubectlFatal sync.Once
	kubectlFatal      struct {
		mu   sync.Mutex
		msgs []string
	}
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader in
// different goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeTree writes files (relative name → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree reads every regular file under dir.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// kubectl cp in both directions with kubectl's own code, over WebSocket
// (kubectl's default) and SPDY (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false):
// into the pod it runs `test -d` and `tar -xmf - -C DIR` with the archive
// on stdin, which must reach its end; out of the pod `tar cf - PATH`.
// What went in is read back in the container by exec, and what comes out
// includes a file the container itself wrote.
func TestKubectlCpOnRealNode(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "copied", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	random := make([]byte, 256<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"a.txt": "alpha\n", "sub/random.bin": string(random), "sub/deeper/empty": ""}
	for _, websocket := range []bool{true, false} {
		t.Run("websocket="+strconv.FormatBool(websocket), func(t *testing.T) {
			if !websocket {
				t.Setenv(string(cmdutil.RemoteCommandWebsockets), "false")
			}
			src := filepath.Join(t.TempDir(), "src")
			writeTree(t, src, files)
			remote := "/tmp/in-" + strconv.FormatBool(websocket)
			if out, err := kubectlCp(t, ns, src, pod.Name+":"+remote); err != nil {
				t.Fatalf("kubectl cp into the pod: %v (%s)", err, out)
			}
			for name, content := range files {
				path := remote + "/" + name
				if got, want := execWorkload(t, pod, "", "cat:"+path), "== "+path+"\n"+content+"\n== end\n"; got != want {
					t.Errorf("%s in the container: %d bytes, want %d", path, len(got), len(want))
				}
			}
			execWorkload(t, pod, "made in the pod\n", "write:"+remote+"/sub/made-in-pod")
			dst := filepath.Join(t.TempDir(), "out")
			if out, err := kubectlCp(t, ns, pod.Name+":"+remote, dst); err != nil {
				t.Fatalf("kubectl cp out of the pod: %v (%s)", err, out)
			}
			want := map[string]string{"sub/made-in-pod": "made in the pod\n"}
			for name, content := range files {
				want[name] = content
			}
			if got := readTree(t, dst); !reflect.DeepEqual(got, want) {
				names := []string{}
				for n, c := range got {
					names = append(names, fmt.Sprintf("%s (%d bytes)", n, len(c)))
				}
				t.Errorf("copied out %v; want %d files as sent plus the pod's", names, len(want))
			}
		})
	}
}

// kubectl run -i[t] --rm --restart=Never: a pod whose container keeps
// stdin open (stdinOnce) is attached to through the virtual apiserver,
// without and with a terminal, over SPDY and WebSocket; the container
// reads what was typed to its end (on a terminal, ^D), its output comes
// back, the attach ends as it exits, the exit code kubectl run -i reports
// is in the virtual pod's status, and removing the pod removes the real
// one.
func TestRunInteractiveOnRealNode(t *testing.T) {
	ns := namespace(t)
	for _, tc := range []struct {
		websocket, tty bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("websocket=%v,tty=%v", tc.websocket, tc.tty), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			exit := 5
			if tc.tty {
				exit = 6
			}
			pod := realPod(ns, fmt.Sprintf("run-%v-%v", tc.websocket, tc.tty), "cat:/dev/stdin", fmt.Sprintf("exit:%d", exit))
			pod.Spec.RestartPolicy = corev1.RestartPolicyNever
			w := &pod.Spec.Containers[0]
			w.Stdin, w.StdinOnce, w.TTY = true, true, tc.tty
			create(t, pod)
			// What kubectl run -i waits for before it attaches.
			eventually(t, 90*time.Second, "the container running", func(ctx context.Context) (bool, string) {
				p, err := virtualPod(ctx, pod)
				if err != nil {
					return false, err.Error()
				}
				return p.Status.Phase == corev1.PodRunning, string(p.Status.Phase)
			})
			// A terminal's input is typed, not closed: ^D ends it, and
			// stdin stays open until the attach ends, as kubectl's does.
			// (Closing stdin of a TTY attach at once ends the attach with
			// no output, directly on the host as through podbridge.)
			var stdin io.Reader = strings.NewReader("typed line\n")
			attached := make(chan struct{})
			if tc.tty {
				stdin = io.MultiReader(strings.NewReader("typed line\n\x04"), blockUntil(attached))
			}
			res, err := podstream.Attach(ctx, env.Virtual.Config, tc.websocket, tc.tty, ns, pod.Name, "w", stdin)
			close(attached)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("== /dev/stdin\ntyped line\n\n== end\nexiting=%d\n", exit)
			got := res.Stdout
			if tc.tty {
				// The terminal echoes the line and ends lines with \r\n.
				want = "typed line\n" + want
				got = strings.ReplaceAll(got, "\r\n", "\n")
			}
			if got != want || res.Err != nil {
				t.Fatalf("attach read %q (stderr %q), ended with %v; want %q and a clean end", res.Stdout, res.Stderr, res.Err, want)
			}
			eventually(t, time.Minute, "the exit code in the virtual pod's status", func(ctx context.Context) (bool, string) {
				p, err := virtualPod(ctx, pod)
				if err != nil || len(p.Status.ContainerStatuses) != 1 {
					return false, fmt.Sprint(err)
				}
				term := p.Status.ContainerStatuses[0].State.Terminated
				return p.Status.Phase == corev1.PodFailed && term != nil && term.ExitCode == int32(exit), fmt.Sprintf("%s %+v", p.Status.Phase, term)
			})
			// --rm.
			if err := virtualClient.Delete(ctx, pod); err != nil {
				t.Fatal(err)
			}
			eventually(t, time.Minute, "the virtual and the host pod gone", func(ctx context.Context) (bool, string) {
				_, verr := virtualPod(ctx, pod)
				herr := hostClient.Get(ctx, hostKey(pod), &corev1.Pod{})
				return apierrors.IsNotFound(verr) && apierrors.IsNotFound(herr), fmt.Sprintf("virtual %v, host %v", verr, herr)
			})
		})
	}
}

// blockUntil is a reader that blocks until done is closed, then ends.
func blockUntil(done <-chan struct{}) io.Reader {
	r, w := io.Pipe()
	go func() {
		<-done
		_ = w.Close()
	}()
	return r
}

// Every log option kubectl sends reaches the real kubelet: through the
// virtual apiserver each reads what the same request reads directly on the
// host pod.
func TestLogOptionsOnRealNodeMatchHost(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "logged", "cat:/etc/hostname", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	waitForLog(t, pod, 30*time.Second, "== end")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	virtual := virtualClientset(t, env.Virtual.Config)
	hostPod := hostKey(pod)
	whole := "== /etc/hostname\nlogged\n\n== end\n"
	cases := []struct {
		name string
		opts corev1.PodLogOptions
		want func(string) bool
	}{
		{"whole log", corev1.PodLogOptions{}, func(s string) bool { return s == whole }},
		{"tailLines", corev1.PodLogOptions{TailLines: ptr.To[int64](1)}, func(s string) bool { return s == "== end\n" }},
		{"limitBytes", corev1.PodLogOptions{LimitBytes: ptr.To[int64](5)}, func(s string) bool { return s == whole[:5] }},
		{"timestamps", corev1.PodLogOptions{Timestamps: true, TailLines: ptr.To[int64](1)}, func(s string) bool {
			stamp, line, ok := strings.Cut(s, " ")
			_, err := time.Parse(time.RFC3339Nano, stamp)
			return ok && err == nil && line == "== end\n"
		}},
		{"sinceSeconds", corev1.PodLogOptions{SinceSeconds: ptr.To[int64](3600)}, func(s string) bool { return s == whole }},
		{"sinceTime in the future", corev1.PodLogOptions{SinceTime: &metav1.Time{Time: time.Now().Add(time.Hour)}}, func(s string) bool { return s == "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Container = "w"
			got, err := virtual.CoreV1().Pods(ns).GetLogs(pod.Name, &opts).DoRaw(ctx)
			if err != nil {
				t.Fatalf("virtual: %v", err)
			}
			direct, err := hostSet.CoreV1().Pods(hostPod.Namespace).GetLogs(hostPod.Name, &opts).DoRaw(ctx)
			if err != nil {
				t.Fatalf("host: %v", err)
			}
			if !tc.want(string(got)) || string(got) != string(direct) {
				t.Errorf("virtual %q, host %q", got, direct)
			}
		})
	}
}
