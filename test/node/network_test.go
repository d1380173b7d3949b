//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podbridge/podbridge/testbed/realnode"
)

// A pod on the real node reaches, on this machine, only the virtual
// apiserver (at the bridge address) and the other pods on the bridge: a
// server the test opens on every address of the machine (0.0.0.0, as many
// a developer's tools listen) is refused at the bridge address and never
// sees the connection, while the same pod reads another pod's server and
// authenticates against the virtual apiserver.
func TestPodsReachOnlyTheVirtualAPIServerAndEachOther(t *testing.T) {
	port, accepted := machineListener(t, "tcp4", "0.0.0.0:0")
	machine := net.JoinHostPort(env.RealNode.IP.String(), port)

	ns := namespace(t)
	server := realPod(ns, "peer", "serve::8080")
	create(t, server)
	waitVirtualReady(t, server)
	peer := net.JoinHostPort(hostPodIP(t, server), "8080")
	client := realPod(ns, "prober", "get:http://"+machine+"/", "get:http://"+peer+"/", "whoami", "pause")
	create(t, client)
	waitVirtualReady(t, client)
	var out string
	eventually(t, 60*time.Second, "the prober's three answers", func(ctx context.Context) (bool, string) {
		var err error
		out, err = logs(ctx, client, false)
		if err != nil {
			return false, err.Error()
		}
		return len(strings.Split(strings.TrimSpace(out), "\n")) >= 3, out
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "get-error=") || !strings.Contains(lines[0], "connection refused") {
		t.Errorf("the machine's listener on 0.0.0.0, at %s: %q, want the connection refused", machine, lines[0])
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the machine's listener accepted %d connections from the pod", n)
	}
	if lines[1] != "get=200" {
		t.Errorf("the other pod's server at %s: %q, want get=200", peer, lines[1])
	}
	if want := "whoami=system:serviceaccount:" + ns + ":default"; lines[2] != want {
		t.Errorf("the virtual apiserver: %q, want %q", lines[2], want)
	}
}

// IPv6 is no way round the firewall. A pod has a link-local address on
// the bridge's link whatever its CNI configures, and so does the bridge: a
// listener of this machine on [::] is never reached there. The node's IPv6
// rule counts the pod's packets, so the test sees it was that rule, not a
// missing path, that stopped them.
func TestPodsReachNoListenerOverIPv6(t *testing.T) {
	port, accepted := machineListener(t, "tcp6", "[::]:0")
	ns := namespace(t)
	// The bridge gets its link-local address once a port is up on it.
	anchor := realPod(ns, "anchor6", "pause")
	create(t, anchor)
	waitVirtualReady(t, anchor)
	var linkLocal net.IP
	eventually(t, 20*time.Second, "the bridge's IPv6 link-local address", func(context.Context) (bool, string) {
		bridge, err := net.InterfaceByName(env.RealNode.Bridge())
		if err != nil {
			return false, err.Error()
		}
		addrs, err := bridge.Addrs()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range addrs {
			if ip, _, err := net.ParseCIDR(a.String()); err == nil && ip.To4() == nil && ip.IsLinkLocalUnicast() {
				linkLocal = ip
				return true, ""
			}
		}
		return false, fmt.Sprint(addrs)
	})
	before, err := realnode.RefusedIPv6()
	if err != nil {
		t.Fatalf("no IPv6 rule (%v): not probing", err)
	}
	// Seen from the pod, the bridge is on the link of its eth0.
	target := "http://[" + linkLocal.String() + "%25eth0]:" + port + "/"
	client := realPod(ns, "prober6", "get:"+target, "pause")
	create(t, client)
	waitVirtualReady(t, client)
	var out string
	eventually(t, 60*time.Second, "the prober's answer", func(ctx context.Context) (bool, string) {
		var err error
		out, err = logs(ctx, client, false)
		if err != nil {
			return false, err.Error()
		}
		return strings.TrimSpace(out) != "", out
	})
	if !strings.HasPrefix(out, "get-error=") {
		t.Errorf("the machine's listener on [::], at %s: %q, want no answer", target, out)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the machine's listener accepted %d connections from the pod", n)
	}
	after, err := realnode.RefusedIPv6()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("the node's IPv6 rule refused no packet (%d before, %d after): something else stopped the pod, and this test proves nothing", before, after)
	}
}

// machineListener serves HTTP on address, a listener of this machine's
// that no pod may reach, and counts the connections it accepts.
func machineListener(t *testing.T, network, address string) (port string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "the machine's listener") }),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), accepted
}

// offMachine is where the test sends a pod's packet: a documentation
// address (TEST-NET-2; this machine's own network may be TEST-NET-1),
// which the node's firewall drops. Only after the test saw that rule in
// place does it send, and a rule of its own at the end of POSTROUTING drops
// the packet too, should it ever get past the node's.
const offMachine = "198.51.100.7"

// Nothing a pod sends leaves the machine: the kernel forwards (the bridge
// plugin turned ip_forward on) and a pod with CAP_NET_RAW, containerd's
// default, can send a frame to any address through the gateway. The test
// plays such a pod by giving its network namespace a route through the
// gateway, sends one UDP packet from inside it, and reads the node's drop
// counter: the packet was dropped in FORWARD, and the test's own backstop
// never saw it.
func TestNothingPodsSendLeavesTheMachine(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "sender", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	netns := podNetns(t, hostPodIP(t, pod))

	// The node's rule first (above kube-proxy's jumps): without it,
	// nothing is sent.
	if err := realnode.FirewallFirst(); err != nil {
		t.Fatalf("%v: not sending anything", err)
	}
	before, err := realnode.DroppedOffMachine()
	if err != nil {
		t.Fatalf("no drop rule (%v): not sending anything", err)
	}
	backstop := []string{"-t", "mangle", "POSTROUTING", "-d", offMachine + "/32", "-m", "comment", "--comment", "podbridge test backstop", "-j", "DROP"}
	iptables := func(op string, rule []string) error {
		args := append([]string{"-w", rule[0], rule[1], op}, rule[2:]...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := iptables("-I", backstop); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := iptables("-D", backstop); err != nil {
			t.Error(err)
		}
	})
	if out, err := exec.Command("ip", "-n", filepath.Base(netns), "route", "add", offMachine+"/32", "via", env.RealNode.IP.String()).CombinedOutput(); err != nil {
		t.Fatalf("routing the pod's packet through the gateway: %v: %s", err, out)
	}
	// From a process of its own in the pod's namespace: a thread of this
	// one moved there would have to end with it, and the kubelet, started
	// with a parent-death signal, dies with the thread that forked it.
	send := exec.Command("ip", "netns", "exec", filepath.Base(netns), "bash", "-c", "printf 'must not leave' > /dev/udp/"+offMachine+"/9")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("sending from the pod's network namespace: %v: %s", err, out)
	}
	eventually(t, 10*time.Second, "the packet counted by the node's drop rule", func(context.Context) (bool, string) {
		n, err := realnode.DroppedOffMachine()
		if err != nil {
			return false, err.Error()
		}
		return n > before, fmt.Sprintf("%d dropped (before: %d)", n, before)
	})
	out, err := exec.Command("iptables", "-w", "-t", "mangle", "-L", "POSTROUTING", "-v", "-x", "-n").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "podbridge test backstop") && strings.Fields(line)[0] != "0" {
			t.Errorf("the packet got past the node's firewall to the test's backstop: %s", line)
		}
	}
}

// hostPodIP is the IP of pod's host pod on the bridge.
func hostPodIP(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	var ip string
	eventually(t, 30*time.Second, "the host pod's IP", func(ctx context.Context) (bool, string) {
		p := &corev1.Pod{}
		if err := hostClient.Get(ctx, hostKey(pod), p); err != nil {
			return false, err.Error()
		}
		ip = p.Status.PodIP
		return ip != "", "no IP yet"
	})
	return ip
}

// podNetns finds the network namespace (under /var/run/netns, where
// containerd's CNI puts them) holding ip.
func podNetns(t *testing.T, ip string) string {
	t.Helper()
	paths, _ := filepath.Glob("/var/run/netns/cni-*")
	for _, p := range paths {
		out, err := exec.Command("ip", "-n", filepath.Base(p), "-4", "-o", "addr", "show").Output()
		if err == nil && strings.Contains(string(out), " "+ip+"/") {
			return p
		}
	}
	t.Fatalf("no network namespace in %v holds %s", paths, ip)
	return ""
}
