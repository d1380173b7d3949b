// Command podbridge-hosts is the init container podbridge adds to host pods
// with a subdomain (translate.HostsFile): it copies the host kubelet's
// /etc/hosts, with the line of each of the pod's IPs rewritten to name the
// pod's fully qualified name in its VIRTUAL namespace, into the file the
// pod's other containers mount at /etc/hosts. The kubelet's own line names
// the host namespace every tenant shares.
//
// Usage: podbridge-hosts --hostname=NAME --fqdn=NAME --out=FILE, with the
// pod's IPs in POD_IPS (the downward API's status.podIPs, comma-separated).
// A static binary with no shell and no other input: it reads /etc/hosts
// and writes FILE, nothing else.
//
// podbridge-hosts --print-fqdn prints what `hostname -f` prints: the
// canonical name of the kernel hostname, /etc/hosts first (the image has no
// nsswitch.conf: files, then DNS), for tests and operators in a container
// of the image that mounts the file.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

func main() {
	hostname := flag.String("hostname", "", "the pod's hostname")
	fqdn := flag.String("fqdn", "", "the pod's fully qualified name in its virtual namespace")
	out := flag.String("out", "", "the hosts file to write")
	in := flag.String("in", "/etc/hosts", "the kubelet's hosts file")
	printFQDN := flag.Bool("print-fqdn", false, "print what hostname -f prints, and write nothing")
	flag.Parse()
	if *printFQDN {
		name, err := canonicalHostname()
		if err != nil {
			fmt.Fprintln(os.Stderr, "podbridge-hosts:", err)
			os.Exit(1)
		}
		fmt.Println(name)
		return
	}
	if err := run(*in, *out, *hostname, *fqdn, os.Getenv("POD_IPS")); err != nil {
		fmt.Fprintln(os.Stderr, "podbridge-hosts:", err)
		os.Exit(1)
	}
}

// canonicalHostname is `hostname -f`: the kernel hostname's canonical
// name, from the first /etc/hosts line that names it (its first name).
func canonicalHostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cname, err := net.DefaultResolver.LookupCNAME(ctx, h)
	if err != nil {
		return "", fmt.Errorf("the canonical name of %s: %w", h, err)
	}
	return strings.TrimSuffix(cname, "."), nil
}

func run(in, out, hostname, fqdn, podIPs string) error {
	if out == "" {
		return fmt.Errorf("--out is required")
	}
	ips, err := parseIPs(podIPs)
	if err != nil {
		return err
	}
	for _, name := range []string{hostname, fqdn} {
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			return fmt.Errorf("name %q: %s", name, strings.Join(msgs, "; "))
		}
	}
	kubelet, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("reading the kubelet's hosts file: %w", err)
	}
	// Written beside the target and renamed, so no container ever mounts
	// half a file (the init container runs again after a sandbox restart).
	tmp, err := os.CreateTemp(filepath.Dir(out), ".hosts-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename
	if _, err := tmp.Write(rewrite(kubelet, ips, hostname, fqdn)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

func parseIPs(s string) ([]netip.Addr, error) {
	var ips []netip.Addr
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		ip, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("POD_IPS: %w", err)
		}
		ips = append(ips, ip)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("POD_IPS is empty: the pod has no IP yet")
	}
	return ips, nil
}

// hostAliasesMarker starts the lines the kubelet adds for spec.hostAliases
// (kubelet_pods.go, hostsEntriesFromHostAliases): they are the tenant's
// and stay as written.
const hostAliasesMarker = "# Entries added by HostAliases."

// rewrite returns the kubelet's hosts file with each line of the pod's own
// IPs (before the host aliases) naming fqdn and hostname, as the kubelet
// writes it on a cluster whose namespace is the pod's; a pod IP the file
// has no line for gets one after the kubelet's lines.
func rewrite(kubelet []byte, ips []netip.Addr, hostname, fqdn string) []byte {
	lines := strings.SplitAfter(string(kubelet), "\n")
	own := func(ip netip.Addr) string { return ip.String() + "\t" + fqdn + "\t" + hostname + "\n" }
	written := map[netip.Addr]bool{}
	var b strings.Builder
	aliases := len(lines)
	for i, line := range lines {
		if strings.TrimSpace(line) == hostAliasesMarker {
			aliases = i
			break
		}
	}
	for _, line := range lines[:aliases] {
		fields := strings.Fields(line)
		if len(fields) > 0 {
			if ip, err := netip.ParseAddr(fields[0]); err == nil && contains(ips, ip) {
				if !written[ip] {
					b.WriteString(own(ip))
					written[ip] = true
				}
				continue
			}
		}
		b.WriteString(line)
	}
	if s := b.String(); s != "" && !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
	for _, ip := range ips {
		if !written[ip] {
			b.WriteString(own(ip))
		}
	}
	for _, line := range lines[aliases:] {
		b.WriteString(line)
	}
	return []byte(b.String())
}

func contains(ips []netip.Addr, ip netip.Addr) bool {
	for _, x := range ips {
		if x == ip.Unmap() || x == ip {
			return true
		}
	}
	return false
}
