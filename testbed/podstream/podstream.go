// Package podstream opens a pod's streaming subresources (exec, attach and
// port-forward) the way kubectl does, over SPDY or WebSocket, for the
// integration and real-node suites, which check them through both
// apiservers.
package podstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream" //nolint:staticcheck // client-go portforward.NewOnAddresses still takes this package's Dialer
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// ExecResult is what an exec returned: its output and how the command
// ended (nil, or an error naming the exit status).
type ExecResult struct {
	Stdout, Stderr string
	Err            error
}

// Exec runs command in container of pod through cfg's apiserver, over SPDY
// or WebSocket (v5.channel.k8s.io, what kubectl 1.31+ uses), with stdin
// when it is not empty. The error is about opening the stream; how the
// command ended is in the result.
func Exec(ctx context.Context, cfg *rest.Config, websocket bool, namespace, pod, container, stdin string, command ...string) (ExecResult, error) {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return ExecResult{}, err
	}
	req := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdin: stdin != "", Stdout: true, Stderr: true}, scheme.ParameterCodec)
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	return stream(ctx, cfg, websocket, false, req.URL(), in)
}

// stream runs an exec or attach request as kubectl's executors do.
func stream(ctx context.Context, cfg *rest.Config, websocket, tty bool, u *url.URL, stdin io.Reader) (ExecResult, error) {
	executor, err := Executor(cfg, websocket, u)
	if err != nil {
		return ExecResult{}, err
	}
	var stdout, stderr bytes.Buffer
	opts := remotecommand.StreamOptions{Stdin: stdin, Stdout: &stdout, Tty: tty}
	if !tty {
		opts.Stderr = &stderr
	}
	err = executor.StreamWithContext(ctx, opts)
	return ExecResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}, nil
}

// Attach attaches to container of pod through cfg's apiserver, over SPDY
// or WebSocket, as kubectl attach (and run -i, debug -i) does: stdin when
// it is not nil (its end is sent: a container with stdinOnce then sees
// its end), stdout, and stderr or, with tty, the container's terminal
// (whose output comes as stdout). It returns when the container's streams
// end, that is when the container exits; ctx bounds the wait.
func Attach(ctx context.Context, cfg *rest.Config, websocket, tty bool, namespace, pod, container string, stdin io.Reader) (ExecResult, error) {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return ExecResult{}, err
	}
	req := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: container, Stdin: stdin != nil, Stdout: true, Stderr: !tty, TTY: tty}, scheme.ParameterCodec)
	return stream(ctx, cfg, websocket, tty, req.URL(), stdin)
}

// Forward opens a port-forward from a free local port to port of pod
// through cfg's apiserver, over SPDY or WebSocket, and returns the local
// port once it is ready; the forward stops when ctx is done.
func Forward(ctx context.Context, cfg *rest.Config, websocket bool, namespace, pod string, port int) (int, error) {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	u := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	dialer, err := forwardDialer(cfg, u, websocket)
	if err != nil {
		return 0, err
	}
	stop, ready := make(chan struct{}), make(chan struct{})
	var out, errOut bytes.Buffer
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, &out, &errOut)
	if err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	go func() { <-ctx.Done(); close(stop) }()
	select {
	case <-ready:
	case err := <-done:
		return 0, fmt.Errorf("port-forward to %s ended before it was ready: %w (%s)", pod, err, errOut.String())
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("port-forward to %s not ready within 30s", pod)
	}
	ports, err := fw.GetPorts()
	if err == nil && len(ports) != 1 {
		err = errors.New("not one port")
	}
	if err != nil {
		return 0, fmt.Errorf("forwarded ports of %s: %v: %w", pod, ports, err)
	}
	return int(ports[0].Local), nil
}

func forwardDialer(cfg *rest.Config, u *url.URL, websocket bool) (httpstream.Dialer, error) {
	if websocket {
		return portforward.NewSPDYOverWebsocketDialer(u, cfg)
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	return spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u), nil
}

// Executor opens the exec or attach stream at u as kubectl does: over
// WebSocket (v5.channel.k8s.io) or SPDY.
func Executor(cfg *rest.Config, websocket bool, u *url.URL) (remotecommand.Executor, error) {
	if websocket {
		return remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	}
	return remotecommand.NewSPDYExecutor(cfg, "POST", u)
}
