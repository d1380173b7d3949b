package realnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The node's service network: kube-proxy, in iptables mode, turns the host
// Services' ClusterIPs into DNAT rules to their ready endpoints, so a pod
// on the bridge reaches a host Service in front of other pods.
//
// What keeps ClusterIPs inside the bridge:
//   - the service range is checked, like the pods' subnet, to be used by
//     no interface or route of this machine, and gets an `unreachable`
//     route of its own: a ClusterIP with no ready endpoint (no DNAT) is
//     refused on the machine, never routed to its default gateway, for a
//     pod and for this machine's own processes alike;
//   - pods get a route to the range through the bridge address, and still
//     no default route;
//   - the node's firewall chains stay first in INPUT and FORWARD (they are
//     moved above kube-proxy's jumps once kube-proxy has written them, and
//     kube-proxy only re-adds a jump that is missing): filtering happens
//     after the DNAT, so whatever an endpoint names, a pod's packet is
//     accepted only to another pod on the bridge or to the virtual
//     apiserver's port; an endpoint off the machine is dropped as any
//     other packet leaving the bridge, one on this machine's other
//     listeners refused. kube-proxy's own accepts (the masquerade mark,
//     established connections, health-check node ports) come after.
//   - NodePorts listen only on the bridge address (nodePortAddresses), not
//     on loopback (route_localnet stays as it was), and kube-proxy's
//     health and metrics servers on 127.0.0.1.
//
// Every chain kube-proxy adds is named KUBE-*, in the filter, nat and
// mangle tables of iptables and ip6tables (it runs both families when the
// machine has IPv6); the node refuses to start kube-proxy while any such
// chain exists (another kube-proxy's or kubelet's), records that it
// started one, and removes every KUBE-* chain and the jumps to them on
// Stop or on the next start after a killed run.

// DefaultServiceCIDR is the host's (and so the virtual cluster's) Service
// range with a real node: a /16 like controlplane.ServiceClusterIPRange,
// room for several tenants' Services, next to the pods' 10.201.0.0/24.
const DefaultServiceCIDR = "10.202.0.0/16"

// firstComment marks the node's jumps once moved above kube-proxy's (one
// word: removeFirewall reads `iptables -S` output by fields).
const firstComment = "podbridge-real-node-first"

// kubeProxyTables are the tables kube-proxy's iptables mode writes.
var kubeProxyTables = []string{"filter", "nat", "mangle"}

// kubeProxyChains lists the KUBE-* chains in tool's tables.
func kubeProxyChains(tool string) (map[string][]string, error) {
	chains := map[string][]string{}
	for _, table := range kubeProxyTables {
		out, err := exec.Command(tool, "-w", "-t", table, "-S").Output()
		if err != nil {
			return nil, fmt.Errorf("%s -t %s -S: %w", tool, table, err)
		}
		s := bufio.NewScanner(bytes.NewReader(out))
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) == 2 && fields[0] == "-N" && strings.HasPrefix(fields[1], "KUBE-") {
				chains[table] = append(chains[table], fields[1])
			}
		}
	}
	return chains, nil
}

// KubeProxyChains lists every KUBE-* chain in iptables and ip6tables, as
// "tool table chain": what a test checks is gone after Stop.
func KubeProxyChains() ([]string, error) {
	var all []string
	for _, tool := range firewallTools() {
		chains, err := kubeProxyChains(tool)
		if err != nil {
			return nil, err
		}
		for table, names := range chains {
			for _, c := range names {
				all = append(all, tool+" "+table+" "+c)
			}
		}
	}
	slices.Sort(all)
	return all, nil
}

// removeKubeProxyRules removes the jumps from the built-in chains to
// KUBE-* chains, then flushes and deletes those chains (flushed first,
// as they jump to each other), in tool's filter, nat and mangle tables.
func removeKubeProxyRules(tool string) error {
	chains, err := kubeProxyChains(tool)
	if err != nil {
		return err
	}
	var errs []error
	for _, table := range kubeProxyTables {
		names := chains[table]
		if len(names) == 0 {
			continue
		}
		out, err := exec.Command(tool, "-w", "-t", table, "-S").Output()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s := bufio.NewScanner(bytes.NewReader(out))
		for s.Scan() {
			line := s.Text()
			fields := strings.Fields(line)
			// A rule of a built-in chain (upper case, not KUBE-*) that
			// jumps to a KUBE-* chain. kube-proxy's jumps carry a quoted
			// comment: delete them by their position, read again each time.
			if len(fields) < 3 || fields[0] != "-A" || strings.HasPrefix(fields[1], "KUBE-") || !jumpsToKube(fields) {
				continue
			}
			errs = append(errs, deleteRule(tool, table, fields[1], line))
		}
		for _, c := range names {
			errs = append(errs, run(tool, "-w", "-t", table, "-F", c))
		}
		for _, c := range names {
			errs = append(errs, run(tool, "-w", "-t", table, "-X", c))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing kube-proxy's %s rules: %w", tool, err)
	}
	return nil
}

func jumpsToKube(fields []string) bool {
	for i, f := range fields[:len(fields)-1] {
		if (f == "-j" || f == "-g") && strings.HasPrefix(fields[i+1], "KUBE-") {
			return true
		}
	}
	return false
}

// deleteRule deletes the rule of chain whose `-S` line is line, by its
// number in the chain now.
func deleteRule(tool, table, chain, line string) error {
	out, err := exec.Command(tool, "-w", "-t", table, "-S", chain).Output()
	if err != nil {
		return fmt.Errorf("%s -t %s -S %s: %w", tool, table, chain, err)
	}
	n := 0
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		if !strings.HasPrefix(s.Text(), "-A ") {
			continue
		}
		n++
		if s.Text() == line {
			return run(tool, "-w", "-t", table, "-D", chain, strconv.Itoa(n))
		}
	}
	return nil // gone already
}

// checkServiceCIDR refuses a service range that an interface or route of
// this machine uses (its ClusterIPs would shadow them).
func checkServiceCIDR(cidr *net.IPNet) error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && (cidr.Contains(ipn.IP) || ipn.Contains(cidr.IP)) {
			return fmt.Errorf("the real node's service range %s overlaps %s on this machine: choose another", cidr, ipn)
		}
	}
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return fmt.Errorf("reading this machine's routes: %w", err)
	}
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		dst := fields[0]
		if slices.Contains([]string{"unreachable", "blackhole", "prohibit", "local", "broadcast", "unicast"}, dst) && len(fields) > 1 {
			dst = fields[1]
		}
		if dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		_, ipn, err := net.ParseCIDR(dst)
		if err != nil {
			continue
		}
		if cidr.Contains(ipn.IP) || ipn.Contains(cidr.IP) {
			return fmt.Errorf("the real node's service range %s overlaps the route %q on this machine: choose another", cidr, s.Text())
		}
	}
	return nil
}

// routeServices adds the `unreachable` route of the service range,
// recorded first.
func (n *Node) routeServices() error {
	n.rec.ServiceRoute = n.serviceCIDR.String()
	if err := n.rec.save(); err != nil {
		return err
	}
	if err := run("ip", "route", "add", "unreachable", n.serviceCIDR.String()); err != nil {
		return fmt.Errorf("routing the real node's service range: %w", err)
	}
	return nil
}

// removeServiceRoute removes the service range's route if it is the one
// the node added.
func removeServiceRoute(cidr string) error {
	out, err := exec.Command("ip", "route", "show", "type", "unreachable", cidr).Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return nil //nolint:nilerr // no such route: nothing to remove.
	}
	return run("ip", "route", "del", "unreachable", cidr)
}

// startKubeProxy starts kube-proxy against the host apiserver once the
// node is registered (it reads its IP from the Node), waits for its first
// sync and moves the node's firewall jumps above kube-proxy's.
func (n *Node) startKubeProxy(ctx context.Context, kubeconfig []byte) error {
	if left, err := KubeProxyChains(); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("this machine has kube-proxy chains the real node did not add (%s): another kube-proxy or kubelet manages them; the node's kube-proxy would change them", strings.Join(left, ", "))
	}
	n.rec.KubeProxy = true
	if err := n.rec.save(); err != nil {
		return err
	}
	dir := n.dir("kube-proxy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return err
	}
	healthz, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	metrics, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	zero := "0s"
	config := map[string]any{
		"apiVersion":       "kubeproxy.config.k8s.io/v1alpha1",
		"kind":             "KubeProxyConfiguration",
		"clientConnection": map[string]any{"kubeconfig": kubeconfigPath},
		"hostnameOverride": n.opts.NodeName,
		"bindAddress":      n.IP.String(),
		"mode":             "iptables",
		// Traffic from outside the pods' subnet to a Service is
		// masqueraded; the pods' own is not.
		"clusterCIDR":     n.subnet.String(),
		"detectLocalMode": "ClusterCIDR",
		// NodePorts on the bridge address only: not on loopback, so
		// route_localnet stays off, and not on the machine's other
		// addresses.
		"nodePortAddresses":  []string{n.IP.String() + "/32"},
		"healthzBindAddress": "127.0.0.1:" + strconv.Itoa(healthz),
		"metricsBindAddress": "127.0.0.1:" + strconv.Itoa(metrics),
		"iptables":           map[string]any{"localhostNodePorts": false, "masqueradeAll": false, "syncPeriod": "30s", "minSyncPeriod": "0s"},
		// The machine's conntrack tunables stay as they are (0: leave).
		"conntrack": map[string]any{"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": zero, "tcpCloseWaitTimeout": zero, "udpTimeout": zero, "udpStreamTimeout": zero},
		// Lowering its OOM score needs CAP_SYS_RESOURCE, which root here
		// may lack.
		"oomScoreAdj": 0,
	}
	b, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	configPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(configPath, b, 0o600); err != nil {
		return err
	}
	if err := n.start("kube-proxy", n.opts.KubeProxy, nil, "--config="+configPath); err != nil {
		return err
	}
	// kube-proxy writes its jumps on its first sync of each IP family
	// (IPv6 too when ip6tables has a nat table, as kube-proxy checks); its
	// metrics say when each one last synced (its health is good before
	// any sync).
	families := []string{"IPv4"}
	if exec.Command("ip6tables", "-w", "-t", "nat", "-S", "POSTROUTING").Run() == nil {
		families = append(families, "IPv6")
	}
	url := "http://127.0.0.1:" + strconv.Itoa(metrics) + "/metrics"
	err = n.poll(ctx, fmt.Sprintf("kube-proxy's first sync of %v", families), time.Minute, func(ctx context.Context) (bool, error) {
		synced, err := kubeProxySynced(ctx, url)
		if err != nil {
			return false, nil //nolint:nilerr // not serving yet.
		}
		for _, f := range families {
			if !synced[f] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return n.firewallFirst()
}

// kubeProxySynced reads which IP families kube-proxy's metrics say have
// synced their rules at least once.
func kubeProxySynced(ctx context.Context, url string) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	synced := map[string]bool{}
	const metric = "kubeproxy_sync_proxy_rules_last_timestamp_seconds{"
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(metric):], "} ")
		_, family, found := strings.Cut(labels, `ip_family="`)
		family, _, _ = strings.Cut(family, `"`)
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); ok && found && err == nil && v > 0 {
			synced[family] = true
		}
	}
	return synced, s.Err()
}

// firewallFirst moves the node's jumps from INPUT and FORWARD to the top
// of those chains, above the ones kube-proxy prepended: each is inserted
// again at the top, marked, before the one below is deleted, so pods'
// packets pass the node's chains all along.
func (n *Node) firewallFirst() error {
	for _, tool := range firewallTools() {
		for _, jump := range [][]string{
			{"INPUT", "-i", n.opts.Bridge, "-j", InputChain},
			{"FORWARD", "-j", ForwardChain},
		} {
			first := slices.Concat([]string{"-w", "-I", jump[0], "1"}, jump[1:len(jump)-2], []string{"-m", "comment", "--comment", firstComment}, jump[len(jump)-2:])
			if err := run(tool, first...); err != nil {
				return fmt.Errorf("keeping the real node's firewall first: %w", err)
			}
			if err := run(tool, append([]string{"-w", "-D"}, jump...)...); err != nil {
				return fmt.Errorf("keeping the real node's firewall first: %w", err)
			}
		}
	}
	return nil
}

// FirewallFirst reports whether the first rule of INPUT and of FORWARD,
// in iptables and ip6tables, jumps to the node's chains.
func FirewallFirst() error {
	for _, tool := range firewallTools() {
		for chain, target := range map[string]string{"INPUT": InputChain, "FORWARD": ForwardChain} {
			out, err := exec.Command(tool, "-w", "-S", chain).Output()
			if err != nil {
				return fmt.Errorf("%s -S %s: %w", tool, chain, err)
			}
			var rules []string
			s := bufio.NewScanner(bytes.NewReader(out))
			for s.Scan() {
				if strings.HasPrefix(s.Text(), "-A ") {
					rules = append(rules, s.Text())
				}
			}
			if len(rules) == 0 || !strings.HasSuffix(rules[0], "-j "+target) {
				return fmt.Errorf("%s %s: the first rule is not the real node's jump to %s: %q", tool, chain, target, rules)
			}
		}
	}
	return nil
}

// freeLoopbackPort is a TCP port free on 127.0.0.1 now.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
