package translate

import (
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
