package podbridgeproc

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// The command lines are the ones a user types: every process is told the
// clusters and names, serves metrics over TLS when given a certificate
// (plain HTTP otherwise, as older binaries do) and health on ports of its
// own; a webhook registers at its own port unless told otherwise.
func TestCommandLines(t *testing.T) {
	c := Cluster{
		Binary: "/bin/podbridge", HostKubeconfig: "host.kubeconfig", VirtualKubeconfig: "virtual.kubeconfig",
		HostNamespace: "ns", VCluster: "vc", HostServiceAccount: "sa", LogDir: "logs",
	}
	tls := c
	tls.MetricsCertDir, tls.Pprof = "metrics-certs", true
	webhook := func(c Cluster, o WebhookOptions) *Process {
		t.Helper()
		p, err := c.Webhook(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	reflector := func(c Cluster, args ...string) *Process {
		t.Helper()
		p, err := c.Reflector("reflector", args...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	shared := []string{"--host-kubeconfig=host.kubeconfig", "--virtual-kubeconfig=virtual.kubeconfig", "--host-namespace=ns", "--vcluster-name=vc", "--host-service-account=sa"}
	tests := []struct {
		name        string
		p           *Process
		command     string
		want        []string
		wantMissing []string
		metrics     string
		ready       string
		pprof       bool
	}{
		{
			name: "webhook on a port of its own", p: webhook(c, WebhookOptions{Name: "webhook", Port: 9443, Args: []string{"--cert-mode=files"}}),
			command: "webhook",
			want:    append(slices.Clone(shared), "--bind-address=127.0.0.1", "--port=9443", "--register-url=https://127.0.0.1:9443/mutate-v1-pod", "--cert-mode=files"),
			metrics: "http://", ready: "/readyz", wantMissing: []string{"--metrics-cert-dir", "--pprof-bind-address"},
		},
		{
			name: "webhook replica behind a load balancer, through a proxy", p: webhook(tls, WebhookOptions{Name: "webhook-1", Port: 9444, RegisterURL: "https://127.0.0.1:7000/mutate-v1-pod", HostKubeconfig: "proxy.kubeconfig"}),
			command: "webhook",
			want:    []string{"--host-kubeconfig=proxy.kubeconfig", "--port=9444", "--register-url=https://127.0.0.1:7000/mutate-v1-pod", "--metrics-cert-dir=metrics-certs"},
			metrics: "https://", ready: "/readyz", pprof: true, wantMissing: []string{"--host-kubeconfig=host.kubeconfig"},
		},
		{
			name: "reflector", p: reflector(tls, "--leader-elect=false"),
			command: "reflector",
			want:    append(slices.Clone(shared), "--leader-elect=false", "--metrics-cert-dir=metrics-certs"),
			metrics: "https://", ready: "/readyz", pprof: true, wantMissing: []string{"--port=", "--register-url="},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.p.Args()
			if args[0] != tt.command {
				t.Errorf("command %q, want %q", args[0], tt.command)
			}
			for _, w := range tt.want {
				if !slices.Contains(args, w) {
					t.Errorf("missing %s in %v", w, args)
				}
			}
			for _, m := range tt.wantMissing {
				if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, m) }) {
					t.Errorf("unexpected %s in %v", m, args)
				}
			}
			if !strings.HasPrefix(tt.p.MetricsURL, tt.metrics+"127.0.0.1:") || !slices.Contains(args, "--metrics-bind-address="+strings.TrimSuffix(strings.TrimPrefix(tt.p.MetricsURL, tt.metrics), "/metrics")) {
				t.Errorf("metrics at %s, flags %v", tt.p.MetricsURL, args)
			}
			if !strings.HasSuffix(tt.p.ReadyURL, tt.ready) || !slices.Contains(args, "--health-probe-bind-address="+strings.TrimSuffix(strings.TrimPrefix(tt.p.ReadyURL, "http://"), tt.ready)) {
				t.Errorf("ready at %s, flags %v", tt.p.ReadyURL, args)
			}
			if (tt.p.PprofURL != "") != tt.pprof || (tt.pprof && !slices.Contains(args, "--pprof-bind-address="+strings.TrimPrefix(tt.p.PprofURL, "http://"))) {
				t.Errorf("pprof at %q, flags %v", tt.p.PprofURL, args)
			}
		})
	}
}

// A process never started reports so, and stopping or killing it does
// nothing: a test's clean-up may meet one whose start failed.
func TestNotStarted(t *testing.T) {
	p, err := Cluster{Binary: "/bin/podbridge"}.Reflector("reflector")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Exited(); !errors.Is(err, errNotStarted) {
		t.Errorf("Exited: %v, want %v", err, errNotStarted)
	}
	if err := errors.Join(p.Stop(context.Background()), p.Kill()); err != nil {
		t.Errorf("stopping a process never started: %v", err)
	}
}
