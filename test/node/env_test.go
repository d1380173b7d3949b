//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The real kubelet injects the host `kubernetes` Service's variables into
// every container; podbridge's translation overrides the whole family, so
// no variable of an init or app container names the host apiserver (its
// Service's ClusterIP or its own address), KUBERNETES_PORT and every
// _ADDR point at the virtual apiserver's host Service, a tenant's own value
// of one of the names wins, and a tenant's $(VAR) expands to the virtual
// value.
func TestEnvNamesOnlyTheVirtualAPIServer(t *testing.T) {
	ctx := context.Background()
	svc := &corev1.Service{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, svc); err != nil {
		t.Fatal(err)
	}
	forbidden := append([]string{}, svc.Spec.ClusterIPs...)
	hostURL, err := url.Parse(env.Host.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	forbidden = append(forbidden, hostURL.Host)
	eps := &discoveryv1.EndpointSliceList{}
	if err := hostClient.List(ctx, eps, client.InNamespace("default"), client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				for _, p := range s.Ports {
					if p.Port != nil {
						forbidden = append(forbidden, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
					}
				}
				if a != env.RealNode.IP.String() && !net.ParseIP(a).IsLoopback() {
					forbidden = append(forbidden, a)
				}
			}
		}
	}
	hostPort := svc.Spec.Ports[0].Port

	ns := namespace(t)
	pod := realPod(ns, "env", "env", "pause")
	pod.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "API_ADDR", Value: fmt.Sprintf("$(KUBERNETES_PORT_%d_TCP_ADDR)", hostPort)},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "tenant"},
	}
	pod.Spec.InitContainers = []corev1.Container{{Name: "i", Image: pod.Spec.Containers[0].Image, ImagePullPolicy: corev1.PullIfNotPresent, Args: []string{"env"}}}
	create(t, pod)
	waitVirtualReady(t, pod)

	tc := env.Options.Translate
	ip, port := tc.APIServerHost, strconv.Itoa(int(tc.APIServerPort))
	virtualURL := "tcp://" + net.JoinHostPort(ip, port)
	family := func(named int32) map[string]string {
		p := fmt.Sprintf("KUBERNETES_PORT_%d_TCP", named)
		return map[string]string{p: virtualURL, p + "_PROTO": "tcp", p + "_PORT": port, p + "_ADDR": ip}
	}
	want := map[string]string{
		"KUBERNETES_SERVICE_HOST": ip, "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_PORT": virtualURL,
	}
	for _, named := range []int32{tc.APIServerPort, hostPort} {
		for k, v := range family(named) {
			want[k] = v
		}
	}
	for _, c := range []struct {
		name string
		want map[string]string
	}{
		{"i", map[string]string{"KUBERNETES_SERVICE_PORT_HTTPS": port}},
		{"w", map[string]string{"KUBERNETES_SERVICE_PORT_HTTPS": "tenant", "API_ADDR": ip}},
	} {
		k := hostKey(pod)
		var got map[string]string
		eventually(t, 30*time.Second, "the env of container "+c.name, func(ctx context.Context) (bool, string) {
			b, err := hostSet.CoreV1().Pods(k.Namespace).GetLogs(k.Name, &corev1.PodLogOptions{Container: c.name}).DoRaw(ctx)
			if err != nil {
				return false, err.Error()
			}
			got = map[string]string{}
			for _, line := range strings.Split(string(b), "\n") {
				if name, value, ok := strings.Cut(line, "="); ok {
					got[name] = value
				}
			}
			_, ok := got["KUBERNETES_SERVICE_HOST"]
			return ok, string(b)
		})
		t.Logf("container %s: %d variables, KUBERNETES_PORT=%s", c.name, len(got), got["KUBERNETES_PORT"])
		for name, value := range got {
			for _, f := range forbidden {
				if strings.Contains(value, f) {
					t.Errorf("container %s: %s=%s names the host apiserver (%s)", c.name, name, value, f)
				}
			}
		}
		for name, value := range want {
			if got[name] != value {
				t.Errorf("container %s: %s=%q, want %q", c.name, name, got[name], value)
			}
		}
		for name, value := range c.want {
			if got[name] != value {
				t.Errorf("container %s: %s=%q, want %q", c.name, name, got[name], value)
			}
		}
	}
	if len(forbidden) < 2 {
		t.Fatalf("found too little of the host apiserver to look for: %v", forbidden)
	}
	t.Logf("looked for the host apiserver as %v", forbidden)
}
