//go:build node

package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/podbridge/podbridge/testbed/podstream"
)

// Exec with a terminal through the virtual apiserver, over SPDY and
// WebSocket: the size the client sends first, and a resize after it
// (kubectl's resize stream), reach the real container's terminal. The
// terminal is read from this machine's side (TIOCGWINSZ on the exec'd
// process's stdin), so the workload needs no terminal step of its own.
// kwok runs no exec, so this is the only proof of resizes.
func TestExecTTYResizeReachesTheRealTerminal(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "tty", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	c := virtualClientset(t, env.Virtual.Config)
	for i, websocket := range []bool{false, true} {
		t.Run("websocket="+strconv.FormatBool(websocket), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// A duration no other process on the machine sleeps: the
			// exec'd process is found by its command line.
			step := fmt.Sprintf("sleep:%ds", 3600+i)
			sizes := &sizeQueue{sizes: make(chan remotecommand.TerminalSize, 2), done: ctx.Done()}
			sizes.sizes <- remotecommand.TerminalSize{Width: 123, Height: 45}
			stdin, feed := io.Pipe()
			defer func() { _ = feed.Close() }()
			streamCtx, closeStream := context.WithCancel(ctx)
			defer closeStream()
			done := make(chan error, 1)
			go func() {
				done <- execStream(streamCtx, c, websocket, pod, true, []string{"/podbridge-workload", step}, remotecommand.StreamOptions{
					Stdin: stdin, Stdout: io.Discard, Tty: true, TerminalSizeQueue: sizes,
				})
			}()
			pid := waitProcess(t, done, "/podbridge-workload", step)
			waitTerminalSize(t, pid, 45, 123)
			sizes.sizes <- remotecommand.TerminalSize{Width: 130, Height: 50}
			waitTerminalSize(t, pid, 50, 130)
			closeStream()
			select {
			case err := <-done:
				t.Logf("the exec returned: %v", err) // canceled: the test closed it
			case <-ctx.Done():
				t.Fatal("the exec did not return after its stream was closed")
			}
		})
	}
}

// Closing either end of an exec stream frees both: the tenant going away
// ends podbridge's connection to the host (the open-streams gauge falls
// back while the command still runs), and so does the command ending (it
// is killed from this machine's side, as a container's process may die).
func TestExecStreamClosedByEitherEndIsFreed(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "streams", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	c := virtualClientset(t, env.Virtual.Config)
	before := openStreams(t, "exec")
	for i, side := range []string{"the tenant", "the container"} {
		t.Run("closed by "+side, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			streamCtx, closeStream := context.WithCancel(ctx)
			defer closeStream()
			step := fmt.Sprintf("sleep:%ds", 3700+i)
			stdin, feed := io.Pipe()
			defer func() { _ = feed.Close() }()
			done := make(chan error, 1)
			go func() {
				done <- execStream(streamCtx, c, false, pod, false, []string{"/podbridge-workload", step}, remotecommand.StreamOptions{
					Stdin: stdin, Stdout: io.Discard, Stderr: io.Discard,
				})
			}()
			pid := waitProcess(t, done, "/podbridge-workload", step)
			eventually(t, 30*time.Second, "the exec stream open", func(context.Context) (bool, string) {
				v := openStreams(t, "exec")
				return v == before+1, fmt.Sprintf("%v open", v)
			})
			if side == "the tenant" {
				closeStream()
			} else if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the stream freed on both sides", func(context.Context) (bool, string) {
				v := openStreams(t, "exec")
				return v == before, fmt.Sprintf("%v open", v)
			})
			select {
			case err := <-done:
				if side == "the container" && (err == nil || !strings.Contains(err.Error(), "137")) {
					t.Errorf("the killed command ended the exec with %v, want exit code 137", err)
				}
			case <-ctx.Done():
				t.Fatal("the client's exec did not return")
			}
			if side == "the tenant" {
				// The command outlived its stream; it goes with the pod.
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
}

// execStream runs command in container w of pod through the virtual
// apiserver, over SPDY or WebSocket, with opts.
func execStream(ctx context.Context, c kubernetes.Interface, websocket bool, pod *corev1.Pod, tty bool, command []string, opts remotecommand.StreamOptions) error {
	req := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "w", Command: command, Stdin: opts.Stdin != nil, Stdout: opts.Stdout != nil, Stderr: opts.Stderr != nil, TTY: tty}, scheme.ParameterCodec)
	executor, err := podstream.Executor(env.Virtual.Config, websocket, req.URL())
	if err != nil {
		return err
	}
	return executor.StreamWithContext(ctx, opts)
}

// sizeQueue hands the client's terminal sizes to the executor, one at a
// time as the test sends them, until done.
type sizeQueue struct {
	sizes chan remotecommand.TerminalSize
	done  <-chan struct{}
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case s := <-q.sizes:
		return &s
	case <-q.done:
		return nil
	}
}

// waitProcess waits until a process of this machine runs exactly args
// (a container's process, seen from the machine) and returns its PID; an
// exec that ends first fails the test.
func waitProcess(t *testing.T, done <-chan error, args ...string) int {
	t.Helper()
	var pid int
	eventually(t, 30*time.Second, fmt.Sprintf("a process running %q", args), func(context.Context) (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("the exec ended before its process was seen: %v", err)
		default:
		}
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			p, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && slices.Equal(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), args) {
				pid = p
				return true, ""
			}
		}
		return false, "none yet"
	})
	return pid
}

// waitTerminalSize waits until the terminal on pid's stdin has rows and
// cols.
func waitTerminalSize(t *testing.T, pid int, rows, cols uint16) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("the container's terminal at %d rows, %d columns", rows, cols), func(context.Context) (bool, string) {
		r, c, err := terminalSize(pid)
		if err != nil {
			return false, err.Error()
		}
		return r == rows && c == cols, fmt.Sprintf("%d rows, %d columns", r, c)
	})
}

// terminalSize reads the size of the terminal on pid's stdin.
func terminalSize(pid int) (rows, cols uint16, err error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/0", pid), os.O_RDONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0, fmt.Errorf("TIOCGWINSZ on the process's stdin: %w", err)
	}
	return ws.Row, ws.Col, nil
}

// openStreams reads podbridge's open-streams gauge for subresource from
// the reflector's process, which serves the kubelet API.
func openStreams(t *testing.T, subresource string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open, err := env.MetricSum(ctx, "podbridge_kubelet_open_streams", map[string]string{"subresource": subresource})
	if err != nil {
		t.Fatalf("reading podbridge's metrics: %v", err)
	}
	return open
}
