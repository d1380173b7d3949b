package realnode

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestJumpsToKube(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want bool
	}{
		{`-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS`, true},
		{`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`, true},
		{`-A FORWARD -g KUBE-FORWARD`, true},
		{`-A INPUT -i pbr0 -m comment --comment podbridge-real-node-first -j PODBRIDGE-RN-INPUT`, false},
		{`-A INPUT -m comment --comment KUBE-LOOKALIKE -j ACCEPT`, false},
		{`-A INPUT -j ACCEPT`, false},
	} {
		if got := jumpsToKube(strings.Fields(tc.rule)); got != tc.want {
			t.Errorf("jumpsToKube(%q) = %v, want %v", tc.rule, got, tc.want)
		}
	}
}

func TestKubeProxySynced(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds [ALPHA] The last time proxy rules were successfully synced
# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge
kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 1.7813e+09
kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv6"} 0
kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv6"} 3
`))
	}))
	defer srv.Close()
	got, err := kubeProxySynced(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !got["IPv4"] || got["IPv6"] || len(got) != 1 {
		t.Errorf("synced = %v, want IPv4 only", got)
	}
}
