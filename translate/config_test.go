package translate

import (
	"net/netip"
	"strings"
	"testing"
)

// The annotation allow-list takes valid annotation keys only, and never
// podbridge's own keys or translated tenant keys: allowing those would let
// a tenant write them verbatim.
func TestConfigValidateHostAnnotations(t *testing.T) {
	base := Config{VCluster: "vc", HostNamespace: "ns", HostServiceAccount: "sa"}
	cases := []struct {
		keys []string
		want string // substring of the error; "" for valid
	}{
		{keys: nil},
		{keys: []string{"example.com/team", "Example.COM/Mixed", "note"}},
		{keys: []string{"bad key"}, want: "hostAnnotations[0]"},
		{keys: []string{"ok", "/x"}, want: "hostAnnotations[1]"},
		{keys: []string{AnnotationSyncID}, want: "podbridge's own keys"},
		{keys: []string{TenantKey("team")}, want: "podbridge's own keys"},
		{keys: []string{TenantKey(strings.Repeat("a", 250) + "/n")}, want: "podbridge's own keys"},
	}
	for _, tc := range cases {
		cfg := base
		cfg.HostAnnotations = tc.keys
		err := cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.keys, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one naming %q", tc.keys, err, tc.want)
		}
	}
}

// The host `kubernetes` Service's port is a port number; 0 means 443.
func TestConfigValidateHostAPIServicePort(t *testing.T) {
	base := Config{VCluster: "vc", HostNamespace: "ns", HostServiceAccount: "sa"}
	for port, valid := range map[int32]bool{0: true, 443: true, 65535: true, -1: false, 65536: false} {
		cfg := base
		cfg.HostAPIServicePort = port
		err := cfg.Validate()
		if valid != (err == nil) || (err != nil && !strings.Contains(err.Error(), "hostAPIServicePort")) {
			t.Errorf("port %d: error %v, want valid %v", port, err, valid)
		}
	}
}

// The kubernetes Service's address and host pods' variables name one
// Service, so a pod's client and kubernetes.default.svc reach the same
// apiserver.
func TestConfigValidateKubernetesServiceIP(t *testing.T) {
	base := Config{VCluster: "vc", HostNamespace: "ns", HostServiceAccount: "sa"}
	for _, tc := range []struct {
		ip, host string
		port     int32
		valid    bool
	}{
		{"", "", 0, true},
		{"10.0.0.2", "10.0.0.2", 443, true},
		{"10.0.0.2", "", 0, false},
		{"10.0.0.2", "10.0.0.3", 443, false},
		{"10.0.0.2", "10.0.0.2", 6443, false},
		{"apiserver", "apiserver", 443, false},
	} {
		cfg := base
		cfg.KubernetesServiceIP, cfg.APIServerHost, cfg.APIServerPort = tc.ip, tc.host, tc.port
		err := cfg.Validate()
		if tc.valid != (err == nil) || (err != nil && !strings.Contains(err.Error(), "kubernetesServiceIP")) {
			t.Errorf("%+v: error %v, want valid %v", tc, err, tc.valid)
		}
	}
}

// Toleration keys are taint keys (qualified names), and CSI attributes are
// allowed only for drivers that are allowed themselves.
func TestConfigValidatePlacementAndCSIAttributes(t *testing.T) {
	base := Config{VCluster: "vc", HostNamespace: "ns", HostServiceAccount: "sa", CSIDrivers: []string{"secrets-store.csi.k8s.io"}}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" for valid
	}{
		{"taint keys", func(c *Config) { c.TolerationKeys = []string{"example.com/gpu", "dedicated"} }, ""},
		{"a taint key that is no key", func(c *Config) { c.TolerationKeys = []string{"ok", "bad key"} }, "tolerationKeys[1]"},
		{"attributes of an allowed driver", func(c *Config) {
			c.CSIVolumeAttributes = map[string][]string{"secrets-store.csi.k8s.io": {"usePodIdentity"}}
		}, ""},
		{"attributes of a driver not allowed", func(c *Config) {
			c.CSIVolumeAttributes = map[string][]string{"hostpath.csi.k8s.io": {"path"}}
		}, "csiVolumeAttributes[hostpath.csi.k8s.io]"},
		{"an empty attribute key", func(c *Config) {
			c.CSIVolumeAttributes = map[string][]string{"secrets-store.csi.k8s.io": {""}}
		}, "csiVolumeAttributes[secrets-store.csi.k8s.io][0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mutate(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// Allowed endpoint ranges are CIDRs written as their network address, and
// never IPv4-mapped IPv6 ranges.
func TestConfigValidateEndpointCIDRs(t *testing.T) {
	base := Config{VCluster: "vc", HostNamespace: "ns", HostServiceAccount: "sa"}
	for cidr, valid := range map[string]bool{"192.0.2.0/24": true, "2001:db8::/64": true, "192.0.2.1/24": false, "::ffff:192.0.2.0/120": false} {
		cfg := base
		cfg.EndpointCIDRs = []netip.Prefix{netip.MustParsePrefix(cidr)}
		err := cfg.Validate()
		if valid != (err == nil) || (err != nil && !strings.Contains(err.Error(), "endpointCIDRs[0]")) {
			t.Errorf("%s: error %v, want valid %v", cidr, err, valid)
		}
	}
	cfg := base
	cfg.EndpointCIDRs = []netip.Prefix{{}}
	if err := cfg.Validate(); err == nil {
		t.Error("the zero prefix is valid")
	}
}
