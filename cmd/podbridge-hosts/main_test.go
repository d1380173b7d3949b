package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// kubeletFile is the file a host kubelet writes for a pod with a subdomain
// in host namespace podbridge-dev, with host aliases (one of them the pod's
// own IP: the tenant's line stays).
const kubeletFile = "# Kubernetes-managed hosts file.\n" +
	"127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"10.201.0.7\tweb-0.db.podbridge-dev.svc.cluster.local\tweb-0\n" +
	"fd00::7\tweb-0.db.podbridge-dev.svc.cluster.local\tweb-0\n" +
	"\n# Entries added by HostAliases.\n" +
	"10.201.0.7\tmine.example\n"

func TestRewrite(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("10.201.0.7"), netip.MustParseAddr("fd00::7")}
	for _, tc := range []struct {
		name, in, want string
		ips            []netip.Addr
	}{{
		name: "own lines rewritten, aliases kept",
		in:   kubeletFile, ips: ips,
		want: "# Kubernetes-managed hosts file.\n" +
			"127.0.0.1\tlocalhost\n" +
			"::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\n" +
			"10.201.0.7\tweb-0.db.shop.svc.cluster.local\tweb-0\n" +
			"fd00::7\tweb-0.db.shop.svc.cluster.local\tweb-0\n" +
			"\n# Entries added by HostAliases.\n" +
			"10.201.0.7\tmine.example\n",
	}, {
		name: "an IP without a line gets one before the aliases",
		in:   "127.0.0.1\tlocalhost\n# Entries added by HostAliases.\n1.2.3.4\tx\n", ips: ips[:1],
		want: "127.0.0.1\tlocalhost\n10.201.0.7\tweb-0.db.shop.svc.cluster.local\tweb-0\n# Entries added by HostAliases.\n1.2.3.4\tx\n",
	}, {
		name: "no final newline",
		in:   "127.0.0.1\tlocalhost", ips: ips[:1],
		want: "127.0.0.1\tlocalhost\n10.201.0.7\tweb-0.db.shop.svc.cluster.local\tweb-0\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(rewrite([]byte(tc.in), tc.ips, "web-0", "web-0.db.shop.svc.cluster.local")); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// run refuses what the pod's spec cannot have sent: no IP, a name that is
// not a DNS name (a line break would add lines of the sender's choosing).
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, []byte(kubeletFile), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hosts")
	for _, tc := range []struct{ name, hostname, fqdn, ips string }{
		{"no IP", "web-0", "web-0.db.shop.svc.cluster.local", ""},
		{"bad IP", "web-0", "web-0.db.shop.svc.cluster.local", "10.0.0.300"},
		{"line break in the name", "web-0\n6.6.6.6 evil", "web-0.db.shop.svc.cluster.local", "10.201.0.7"},
		{"space in the fqdn", "web-0", "web-0.db shop", "10.201.0.7"},
	} {
		if err := run(in, out, tc.hostname, tc.fqdn, tc.ips); err == nil {
			t.Errorf("%s: run accepted it", tc.name)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused run wrote %s: %v", out, err)
	}
	if err := run(in, out, "web-0", "web-0.db.shop.svc.cluster.local", "10.201.0.7,fd00::7"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("written file: %v %v", fi, err)
	}
}
