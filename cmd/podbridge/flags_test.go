package main

import (
	"flag"
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
