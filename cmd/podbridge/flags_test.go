package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
)

// Two virtual clusters started with the same flags but their names run
// their host pods as different accounts; an account given by flag is kept.
func TestHostServiceAccountDefaultsPerVirtualCluster(t *testing.T) {
	account := func(args ...string) string {
		t.Helper()
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		var cf clusterFlags
		cf.bind(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cf.applyDefaults()
		return cf.translate.HostServiceAccount
	}
	one, two := account("--vcluster-name=one", "--host-namespace=shared"), account("--vcluster-name=two", "--host-namespace=shared")
	if one == two {
		t.Errorf("virtual clusters one and two in one namespace both run host pods as %q", one)
	}
	if one != "podbridge-workloads-one" {
		t.Errorf("default account of one: %q", one)
	}
	if got := account("--vcluster-name=one", "--host-service-account=platform-given"); got != "platform-given" {
		t.Errorf("--host-service-account=platform-given gave %q", got)
	}
}

// --allowed-endpoint-cidrs takes CIDRs written as their network address,
// and a bad entry stops the command with an error naming the flag.
func TestAllowedEndpointCIDRsFlag(t *testing.T) {
	parse := func(v string) (clusterFlags, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var cf clusterFlags
		cf.bind(fs)
		return cf, fs.Parse([]string{"--allowed-endpoint-cidrs=" + v})
	}
	cf, err := parse("192.0.2.0/24,2001:db8::/64")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cf.translate.EndpointCIDRs); got != "[192.0.2.0/24 2001:db8::/64]" {
		t.Errorf("parsed %s", got)
	}
	for _, bad := range []string{"192.0.2.1", "192.0.2.1/24", "::ffff:10.0.0.0/104", "ten/8"} {
		_, err := parse(bad)
		if err == nil || !strings.Contains(err.Error(), "allowed-endpoint-cidrs") {
			t.Errorf("%q: error %v, want one naming the flag", bad, err)
		}
	}
}
