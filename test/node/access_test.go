//go:build node

package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/podbridge/podbridge/testbed/podstream"
)

// A tenant's logs, exec and port-forward reach the real container through
// the virtual apiserver: it dials podbridge's kubelet API (the virtual
// node's endpoint), which carries each request through the host apiserver
// to the real kubelet. Exec and port-forward over SPDY and WebSocket.
func TestTenantVerbsReachTheRealContainer(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "verbs", "serve::8080")
	create(t, pod)
	waitVirtualReady(t, pod)
	virtualSet, err := kubernetes.NewForConfig(env.Virtual.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the container's output through the virtual apiserver", func(ctx context.Context) (bool, string) {
		out, err := virtualSet.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "w"}).DoRaw(ctx)
		return err == nil && strings.HasPrefix(string(out), "serving="), fmt.Sprintf("%q %v", out, err)
	})
	for _, websocket := range []bool{false, true} {
		t.Run("websocket="+strconv.FormatBool(websocket), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got, err := podstream.Exec(ctx, env.Virtual.Config, websocket, ns, pod.Name, "w", "hello\n", "/podbridge-workload", "cat:/dev/stdin")
			if err != nil {
				t.Fatal(err)
			}
			if want := "== /dev/stdin\nhello\n\n== end\n"; got.Err != nil || got.Stdout != want {
				t.Errorf("exec reading stdin: stdout %q, err %v; want %q", got.Stdout, got.Err, want)
			}
			got, err = podstream.Exec(ctx, env.Virtual.Config, websocket, ns, pod.Name, "w", "", "/podbridge-workload", "exit:3")
			if err != nil {
				t.Fatal(err)
			}
			var exit utilexec.ExitError
			if !errors.As(got.Err, &exit) || exit.ExitStatus() != 3 {
				t.Errorf("exec exiting 3 reported %v", got.Err)
			}
			port, err := podstream.Forward(ctx, env.Virtual.Config, websocket, ns, pod.Name, 8080)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(body) != "hostname=verbs\n" {
				t.Errorf("port-forward answered %q (%v), want the pod's own hostname", body, err)
			}
		})
	}
}
