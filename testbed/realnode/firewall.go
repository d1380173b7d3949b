package realnode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The real node's firewall: two chains in the filter table of iptables and
// ip6tables, jumped to first from INPUT and FORWARD. Pods on the bridge
// reach this machine only at the virtual apiserver's port on the bridge
// address (a listener bound to all addresses is not theirs to reach, nor
// is the kubelet), reach each other on the bridge, and nothing they send
// is forwarded anywhere else: the kernel forwards (the bridge plugin turns
// net.ipv4.ip_forward on) and a pod with CAP_NET_RAW, which containerd
// grants by default, can send a frame with any destination to the
// gateway.
const (
	// InputChain and ForwardChain are the node's chains, in iptables and
	// ip6tables alike.
	InputChain   = "PODBRIDGE-RN-INPUT"
	ForwardChain = "PODBRIDGE-RN-FORWARD"

	// OffMachineComment marks the rule dropping what pods send beyond the
	// bridge: its packet counter is what a test reads.
	OffMachineComment = "podbridge real node: nothing pods send leaves the bridge"
	inputComment      = "podbridge real node: pods reach only the virtual apiserver on this machine"
	inboundComment    = "podbridge real node: nothing from elsewhere is forwarded to pods"
	apiServerComment  = "podbridge real node: the virtual apiserver"
)

// firewallTools are the commands of each address family this machine
// has: without IPv6 there is no IPv6 table to add to, nor any IPv6 path.
func firewallTools() []string {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return []string{"iptables"}
	}
	return []string{"iptables", "ip6tables"}
}

// createFirewall adds the node's chains, recorded first so a killed run's
// are removed by the next start. Until allowAPIServer, pods reach nothing
// on this machine.
func (n *Node) createFirewall() error {
	n.rec.Firewall = true
	if err := n.rec.save(); err != nil {
		return err
	}
	bridge := n.opts.Bridge
	for _, tool := range firewallTools() {
		// Chains of this name are the test bed's own, left by a run that
		// died before its record was written.
		if err := removeFirewall(tool); err != nil {
			return err
		}
		for _, rule := range [][]string{
			{"-N", InputChain},
			// Control-plane pods' narrow exception (controlplanes.go),
			// empty until AllowControlPlanes fills it.
			{"-N", ControlPlaneChain},
			// Replies to what this machine opened to pods (the kubelet's
			// probes).
			{"-A", InputChain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"-A", InputChain, "-j", ControlPlaneChain},
			{"-A", InputChain, "-m", "comment", "--comment", inputComment, "-j", "REJECT"},
			{"-N", ForwardChain},
			// Pod to pod: bridged frames pass FORWARD when
			// bridge-nf-call-iptables is on.
			{"-A", ForwardChain, "-i", bridge, "-o", bridge, "-j", "ACCEPT"},
			{"-A", ForwardChain, "-i", bridge, "-m", "comment", "--comment", OffMachineComment, "-j", "DROP"},
			{"-A", ForwardChain, "-o", bridge, "-m", "comment", "--comment", inboundComment, "-j", "DROP"},
			{"-I", "INPUT", "1", "-i", bridge, "-j", InputChain},
			{"-I", "FORWARD", "1", "-j", ForwardChain},
		} {
			if err := run(tool, append([]string{"-w"}, rule...)...); err != nil {
				return fmt.Errorf("creating the real node's firewall: %w", err)
			}
		}
	}
	return nil
}

// allowAPIServer lets pods reach port on the bridge address, the virtual
// apiserver's: the one listener of this machine they may use.
func (n *Node) allowAPIServer(port int) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("the virtual apiserver's port %d: pods would reach nothing", port)
	}
	err := run("iptables", "-w", "-I", InputChain, "2", "-p", "tcp", "-d", n.IP.String(), "--dport", strconv.Itoa(port),
		"-m", "comment", "--comment", apiServerComment, "-j", "ACCEPT")
	if err != nil {
		return fmt.Errorf("letting pods reach the virtual apiserver: %w", err)
	}
	return nil
}

// removeFirewall removes the node's jumps and chains from tool's filter
// table; what is not there is skipped.
func removeFirewall(tool string) error {
	var errs []error
	for _, builtin := range []string{"INPUT", "FORWARD"} {
		out, err := exec.Command(tool, "-w", "-S", builtin).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s -S %s: %w", tool, builtin, err))
			continue
		}
		s := bufio.NewScanner(bytes.NewReader(out))
		for s.Scan() {
			fields := strings.Fields(s.Text())
			// "-A INPUT -i pbr0 -j PODBRIDGE-RN-INPUT": no quoted words in
			// a jump of ours.
			if len(fields) < 4 || fields[0] != "-A" || !isNodeChain(fields[len(fields)-1]) || fields[len(fields)-2] != "-j" {
				continue
			}
			errs = append(errs, run(tool, append([]string{"-w", "-D"}, fields[1:]...)...))
		}
	}
	// Flushed first, all of them: InputChain jumps to ControlPlaneChain.
	var present []string
	for _, chain := range []string{InputChain, ForwardChain, ControlPlaneChain} {
		if exec.Command(tool, "-w", "-S", chain).Run() != nil {
			continue // no such chain
		}
		present = append(present, chain)
		errs = append(errs, run(tool, "-w", "-F", chain))
	}
	for _, chain := range present {
		errs = append(errs, run(tool, "-w", "-X", chain))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing the real node's firewall: %w", err)
	}
	return nil
}

func isNodeChain(name string) bool { return name == InputChain || name == ForwardChain }

// DroppedOffMachine counts the IPv4 packets pods sent beyond the bridge
// that the node's firewall dropped.
func DroppedOffMachine() (uint64, error) {
	out, err := exec.Command("iptables", "-w", "-L", ForwardChain, "-v", "-x", "-n").Output()
	if err != nil {
		return 0, fmt.Errorf("reading the real node's firewall: %w", err)
	}
	return commentCounter(out, OffMachineComment)
}

// RefusedIPv6 counts the IPv6 packets pods sent to this machine that the
// node's firewall refused.
func RefusedIPv6() (uint64, error) {
	out, err := exec.Command("ip6tables", "-w", "-L", InputChain, "-v", "-x", "-n").Output()
	if err != nil {
		return 0, fmt.Errorf("reading the real node's IPv6 firewall: %w", err)
	}
	return commentCounter(out, inputComment)
}

// commentCounter reads the packet counter of the rule with comment from
// `iptables -L -v -x -n` output.
func commentCounter(listing []byte, comment string) (uint64, error) {
	s := bufio.NewScanner(bytes.NewReader(listing))
	for s.Scan() {
		line := s.Text()
		if !strings.Contains(line, "/* "+comment+" */") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			break
		}
		return strconv.ParseUint(fields[0], 10, 64)
	}
	return 0, fmt.Errorf("no rule %q in the real node's firewall", comment)
}
