package translate

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// hostKubeletEnv is what the host kubelet injects into every container for
// the host's `kubernetes` Service (envvars.FromServices: one TCP port named
// https), whatever enableServiceLinks says.
func hostKubeletEnv(clusterIP string, port int32) map[string]string {
	p := fmt.Sprint(port)
	url := fmt.Sprintf("tcp://%s:%d", clusterIP, port)
	prefix := fmt.Sprintf("KUBERNETES_PORT_%d_TCP", port)
	return map[string]string{
		"KUBERNETES_SERVICE_HOST": clusterIP, "KUBERNETES_SERVICE_PORT": p, "KUBERNETES_SERVICE_PORT_HTTPS": p,
		"KUBERNETES_PORT": url, prefix: url, prefix + "_PROTO": "tcp", prefix + "_PORT": p, prefix + "_ADDR": clusterIP,
	}
}

// Every variable the host kubelet injects for its `kubernetes` Service is
// overridden with the virtual apiserver's value, also when the host port
// that names some of them differs from the virtual port, and the virtual
// port's own names are there as a virtual kubelet would inject them.
func TestAPIServerEnvOverridesTheHostFamily(t *testing.T) {
	cases := []struct {
		name               string
		host               string
		port, hostPort     int32
		wantURL, wantNames string
	}{
		{name: "same port", host: "10.201.0.1", port: 443, wantURL: "tcp://10.201.0.1:443", wantNames: "443"},
		{name: "virtual port differs", host: "10.201.0.1", port: 6443, wantURL: "tcp://10.201.0.1:6443", wantNames: "6443,443"},
		{name: "host service on another port", host: "10.201.0.1", port: 6443, hostPort: 8443, wantURL: "tcp://10.201.0.1:6443", wantNames: "6443,8443"},
		{name: "ipv6", host: "fd00::1", port: 6443, wantURL: "tcp://[fd00::1]:6443", wantNames: "6443,443"},
		{name: "hostname", host: "api.vc1.example", port: 6443, wantURL: "tcp://api.vc1.example:6443", wantNames: "6443,443"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{APIServerHost: tc.host, APIServerPort: tc.port, HostAPIServicePort: tc.hostPort}
			env := apiServerEnv(cfg)
			got := map[string]string{}
			for _, e := range env {
				if _, dup := got[e.Name]; dup {
					t.Errorf("%s set twice", e.Name)
				}
				got[e.Name] = e.Value
			}
			port := fmt.Sprint(tc.port)
			want := map[string]string{
				"KUBERNETES_SERVICE_HOST": tc.host, "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": tc.wantURL,
			}
			for _, named := range strings.Split(tc.wantNames, ",") {
				prefix := "KUBERNETES_PORT_" + named + "_TCP"
				want[prefix], want[prefix+"_PROTO"], want[prefix+"_PORT"], want[prefix+"_ADDR"] = tc.wantURL, "tcp", port, tc.host
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("env:\n got %v\nwant %v", got, want)
			}
			hostPort := tc.hostPort
			if hostPort == 0 {
				hostPort = 443
			}
			for name := range hostKubeletEnv("10.0.0.1", hostPort) {
				if _, ok := got[name]; !ok {
					t.Errorf("%s keeps the host kubelet's value", name)
				}
			}
		})
	}
	if env := apiServerEnv(Config{}); env != nil {
		t.Errorf("no virtual apiserver configured: env %v, want none (the host's left alone)", env)
	}
}

// In every kind of container the family comes first, so the tenant's own
// entries follow it: one of the same name wins (the kubelet keeps the last
// definition), and a $(VAR) reference in an earlier tenant entry expands
// to the virtual value, not the host kubelet's. A container with no env of
// its own gets the family too.
func TestContainersGetAPIServerEnvFirst(t *testing.T) {
	cfg := goldenConfig
	family := apiServerEnv(cfg)
	tenant := []corev1.EnvVar{
		{Name: "API", Value: "$(KUBERNETES_SERVICE_HOST)"},
		{Name: "KUBERNETES_SERVICE_HOST", Value: "tenant.example"},
	}
	virtual := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers:      []corev1.Container{{Name: "init", Env: tenant}},
		Containers:          []corev1.Container{{Name: "app", Env: tenant}, {Name: "bare"}},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Env: tenant}}},
	}}
	virtual.Name, virtual.Namespace = "p", "ns"
	host, _, errs := HostPod(virtual, cfg, "sync")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	check := func(name string, env, tenant []corev1.EnvVar) {
		t.Helper()
		want := append(append([]corev1.EnvVar{}, family...), tenant...)
		if fmt.Sprint(env) != fmt.Sprint(want) {
			t.Errorf("%s env:\n got %v\nwant %v", name, env, want)
		}
	}
	check("init", host.Spec.InitContainers[0].Env, tenant)
	check("app", host.Spec.Containers[0].Env, tenant)
	check("bare", host.Spec.Containers[1].Env, nil)
	check("debug", host.Spec.EphemeralContainers[0].Env, tenant)
	ephemeral, errs := HostEphemeralContainers(virtual, cfg)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	check("debug (pods/ephemeralcontainers)", ephemeral[0].Env, tenant)
	if virtual.Spec.Containers[0].Env[0].Name != "API" || len(virtual.Spec.Containers[0].Env) != 2 {
		t.Errorf("the virtual pod's env was changed: %v", virtual.Spec.Containers[0].Env)
	}
}
