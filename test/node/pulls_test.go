//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/realnode"
)

// An image named on this machine's loopback would make containerd call
// whatever listens there (Go sends no loopback request through the pull
// refuser) and report what answered. The test listens on loopback itself
// and names that port as a registry, in three spellings: each pull is
// refused by the node before containerd dials (ErrImagePull, the Failed
// event giving the node's reason), and the listener never sees a
// connection. (containerd 1.6 itself cannot parse the [::1] spelling; the
// other two reached the listener before the gate.)
func TestImagesOnLoopbackAreNeverPulled(t *testing.T) {
	var accepted atomic.Int64
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	ns := namespace(t)
	for i, registry := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port} {
		image := registry + "/none:1"
		t.Run(registry, func(t *testing.T) {
			pod := realPod(ns, fmt.Sprintf("loopback-%d", i))
			pod.Spec.Containers[0].Image = image
			pod.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
			create(t, pod)
			var message string
			eventually(t, 90*time.Second, "the pull's Failed event on the virtual pod", func(ctx context.Context) (bool, string) {
				events := &corev1.EventList{}
				if err := virtualClient.List(ctx, events, client.InNamespace(ns)); err != nil {
					return false, err.Error()
				}
				var seen []string
				for _, e := range events.Items {
					if e.InvolvedObject.Name == pod.Name && e.Reason == "Failed" && strings.Contains(e.Message, image) {
						message = e.Message
						return true, ""
					}
					seen = append(seen, e.InvolvedObject.Name+" "+e.Reason+": "+e.Message)
				}
				return false, strings.Join(seen, "\n")
			})
			t.Logf("pull failure: %s", message)
			if want := realnode.LoopbackPullRefusal(image, registry); !strings.Contains(message, want) {
				t.Errorf("the pull failed for another reason than the node's refusal %q: %s", want, message)
			}
			if !slices.Contains(env.RealNode.RefusedLoopbackPulls(), image) {
				t.Errorf("the node refused %v, want %s among them", env.RealNode.RefusedLoopbackPulls(), image)
			}
		})
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the loopback listener named as a registry accepted %d connections", n)
	}
}
