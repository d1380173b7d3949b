package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/podstream"
	"github.com/podbridge/podbridge/translate"
)

// Requests sent straight to podbridge's kubelet API with the virtual
// apiserver's own client certificate, as a virtual apiserver gone hostile
// (or a tenant's nodes/proxy request) could send them: every path part is
// an attack on the host namespace, another virtual cluster's pod or a
// container the tenant's spec does not have. Only the stored virtual
// pod's host pod, and its own containers, are ever reached.
func TestKubeletAPIAttacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := accessPod(t, "target", "app")
	// A host-only container (a host operator's debug session, or a
	// container podbridge might inject), which the virtual spec does not have.
	addHostOnlyContainer(ctx, t, pod)
	// Another virtual cluster's pod in the same host namespace, under the
	// name this cluster's pod "victim" would have there were it theirs.
	cfg := env.Options.Translate
	other := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: translate.HostName("victim", accessNamespace, "other"), Namespace: cfg.HostNamespace,
			Labels:      map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "other"},
			Annotations: map[string]string{translate.AnnotationName: "victim", translate.AnnotationNamespace: accessNamespace, translate.AnnotationVCluster: "other", translate.AnnotationSyncID: "other-sync"},
		},
		// The account host pods run as: the host's ServiceAccount
		// admission refuses a pod whose account does not exist.
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "busybox"}}, ServiceAccountName: cfg.HostServiceAccount,
			AutomountServiceAccountToken: ptr.To(false),
		},
	}
	if err := hostClient.Create(ctx, other); err != nil {
		t.Fatalf("creating the other virtual cluster's pod: %v", err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), other, client.GracePeriodSeconds(0)) })

	apiserver := keyPair(t, env.WebhookClient.Bundle)
	c := kubeletClient(&apiserver)
	hostPod := hostKey(pod).Name
	cases := []struct {
		name, path string
		wantCode   int
		upgrade    bool
	}{
		{"the pod's own container", "/containerLogs/access/target/app", http.StatusOK, false},
		{"a host-only container", "/containerLogs/access/target/host-only", http.StatusBadRequest, false},
		{"a container no spec has", "/containerLogs/access/target/istio-proxy", http.StatusBadRequest, false},
		{"the host namespace and host pod name", "/containerLogs/" + cfg.HostNamespace + "/" + hostPod + "/app", http.StatusNotFound, false},
		{"the other virtual cluster's pod by its virtual name", "/containerLogs/access/victim/app", http.StatusNotFound, false},
		{"the other virtual cluster's host pod by its host name", "/containerLogs/access/" + other.Name + "/app", http.StatusNotFound, false},
		{"an encoded path traversal into the host namespace", "/containerLogs/access%2F..%2F" + cfg.HostNamespace + "/" + hostPod + "/app", http.StatusUnprocessableEntity, false},
		{"an encoded slash in the container", "/containerLogs/access/target/app%2F..%2Fhost-only", http.StatusUnprocessableEntity, false},
		{"another UID for the pod", "/exec/access/target/0000-not-the-uid/app?command=true&output=1", http.StatusNotFound, true},
		{"exec into a host-only container", "/exec/access/target/host-only?command=true&output=1", http.StatusBadRequest, true},
		{"exec into the other virtual cluster's pod", "/exec/access/" + other.Name + "/app?command=true&output=1", http.StatusNotFound, true},
		{"port-forward to the host pod by its host name", "/portForward/" + cfg.HostNamespace + "/" + hostPod, http.StatusNotFound, true},
		{"a kubelet path podbridge does not serve", "/pods", http.StatusNotFound, false},
		{"node proxy's configz", "/configz", http.StatusNotFound, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, kubeletURL(tc.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "SPDY/3.1")
				req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
			} else {
				req.Method = http.MethodGet
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tc.wantCode)
			}
			if tc.wantCode != http.StatusOK && strings.Contains(string(body), "line 1") {
				t.Fatalf("a refusal carried log content: %s", body)
			}
		})
	}

	// Through the virtual apiserver the tenant cannot even name it.
	if _, err := readLogs(ctx, clientset(t, env.Virtual.Config), accessNamespace, "target", &corev1.PodLogOptions{Container: "host-only"}); err == nil {
		t.Error("the virtual apiserver served the host-only container's log")
	}
}

// Time to the first log byte and a port-forward round trip (a stream
// opened, one byte echoed by kwok's fixed cat: kwok runs no exec) through
// the virtual cluster against the same request made directly on the host,
// in one run, interleaved so both see the same machine load. It reports
// figures; it fails only if a request fails.
func TestAccessLatencyAgainstHost(t *testing.T) {
	pod := accessPod(t, "bench", "bench")
	hostPod := hostKey(pod)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	virtual, host := clientset(t, env.Virtual.Config), clientset(t, env.Host.Config)
	const rounds = 15
	measure := func(what string, run func(virtualSide bool) error) {
		var v, h []time.Duration
		for i := range rounds {
			for _, side := range []bool{i%2 == 0, i%2 != 0} {
				start := time.Now()
				if err := run(side); err != nil {
					t.Fatalf("%s (virtual=%v): %v", what, side, err)
				}
				if side {
					v = append(v, time.Since(start))
				} else {
					h = append(h, time.Since(start))
				}
			}
		}
		mv, mh := median(v), median(h)
		t.Logf("%s: median through the virtual cluster %s, directly on the host %s, ratio %.2f (%d rounds each)", what, mv.Round(10*time.Microsecond), mh.Round(10*time.Microsecond), float64(mv)/float64(mh), rounds)
		fmt.Printf("ACCESS-LATENCY %s virtual=%s host=%s ratio=%.2f rounds=%d\n", what, mv.Round(10*time.Microsecond), mh.Round(10*time.Microsecond), float64(mv)/float64(mh), rounds)
	}
	measure("time to first log byte", func(virtualSide bool) error {
		c, ns, name := host, hostPod.Namespace, hostPod.Name
		if virtualSide {
			c, ns, name = virtual, pod.Namespace, pod.Name
		}
		stream, err := c.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: "bench"}).Stream(ctx)
		if err != nil {
			return err
		}
		defer stream.Close()
		_, err = stream.Read(make([]byte, 1))
		return err
	})
	measure("port-forward round trip (SPDY, one byte)", func(virtualSide bool) error {
		cfg, ns, name := env.Host.Config, hostPod.Namespace, hostPod.Name
		if virtualSide {
			cfg, ns, name = env.Virtual.Config, pod.Namespace, pod.Name
		}
		fwCtx, stop := context.WithCancel(ctx)
		defer stop()
		port, err := podstream.Forward(fwCtx, cfg, false, ns, name, 80)
		if err != nil {
			return err
		}
		got, err := roundTrip(port, "x", 1)
		if err == nil && got != "x" {
			err = fmt.Errorf("echoed %q, want %q", got, "x")
		}
		return err
	})
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
