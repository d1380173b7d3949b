package controlplane

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/podbridge/podbridge/certs"
)

// KubeletClient is how a virtual apiserver talks to the kubelet API of its
// nodes (podbridge's): the client certificate it presents and the CA the
// kubelet API's serving certificate must chain to.
type KubeletClient struct {
	CertFile, KeyFile string
	CAFile            string
}

// maxNodes bounds the host's kwok nodes: node i has address 127.0.0.(10+i),
// which must stay a loopback address below the broadcast one.
const maxNodes = 245

// nodeAddress is kwok node index's address, on this machine.
func nodeAddress(index int) string {
	return fmt.Sprintf("127.0.0.%d", 10+index)
}

// kwokServer is kwok playing the host kubelet's API: kwok listens on the
// first node's address; relays on the other nodes' addresses forward to
// it, so the host apiserver reaches it at whichever node it dials.
type kwokServer struct {
	port   int
	dir    string
	relays []*relay
}

// prepareKwokServer chooses a port free on every node address, issues
// kwok's serving certificate for those addresses, and starts the relays.
func prepareKwokServer(dir string, nodes int) (s *kwokServer, err error) {
	if nodes < 1 || nodes > maxNodes {
		return nil, fmt.Errorf("the host has %d kwok nodes: between 1 and %d, so their addresses stay on loopback", nodes, maxNodes)
	}
	addresses := make([]string, nodes)
	for i := range addresses {
		addresses[i] = nodeAddress(i)
	}
	bundle, err := certs.NewSelfSigned(addresses, time.Now(), 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issuing kwok's serving certificate: %w", err)
	}
	if err := bundle.WriteDir(filepath.Join(dir, "serving")); err != nil {
		return nil, err
	}
	// A port free on every address: try a few the kernel picks on the
	// first one.
	for range 20 {
		probe, err := net.Listen("tcp", net.JoinHostPort(addresses[0], "0"))
		if err != nil {
			return nil, fmt.Errorf("choosing kwok's port: %w", err)
		}
		port := probe.Addr().(*net.TCPAddr).Port
		s := &kwokServer{port: port, dir: dir}
		target := net.JoinHostPort(addresses[0], strconv.Itoa(port))
		ok := true
		for _, address := range addresses[1:] {
			r, err := startRelay(net.JoinHostPort(address, strconv.Itoa(port)), target)
			if err != nil {
				ok = false
				break
			}
			s.relays = append(s.relays, r)
		}
		probe.Close() // kwok binds it when it starts.
		if ok {
			return s, nil
		}
		s.stop()
	}
	return nil, errors.New("choosing kwok's port: no port was free on every node address")
}

func (s *kwokServer) caFile() string { return filepath.Join(s.dir, "serving", certs.CAFile) }

func (s *kwokServer) args() []string {
	return []string{
		"--server-address=" + net.JoinHostPort(nodeAddress(0), strconv.Itoa(s.port)),
		"--node-port=" + strconv.Itoa(s.port),
		"--tls-cert-file=" + filepath.Join(s.dir, "serving", certs.CertFile),
		"--tls-private-key-file=" + filepath.Join(s.dir, "serving", certs.KeyFile),
	}
}

func (s *kwokServer) stop() {
	if s == nil {
		return
	}
	for _, r := range s.relays {
		r.stop()
	}
	s.relays = nil
}

// relay forwards every TCP connection it accepts to target, both ways,
// closing both halves when either ends.
type relay struct {
	listener net.Listener
	target   string
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	done     chan struct{}
}

func startRelay(address, target string) (*relay, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	r := &relay{listener: l, target: target, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	go r.serve()
	return r, nil
}

func (r *relay) serve() {
	defer close(r.done)
	for {
		conn, err := r.listener.Accept()
		if err != nil {
			return
		}
		go r.forward(conn)
	}
}

func (r *relay) forward(in net.Conn) {
	out, err := net.DialTimeout("tcp", r.target, 10*time.Second)
	if err != nil {
		in.Close()
		return
	}
	if !r.add(in, out) {
		in.Close()
		out.Close()
		return
	}
	defer r.remove(in, out)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
}

func (r *relay) add(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false // stopped
	}
	for _, c := range conns {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *relay) remove(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(r.conns, c)
	}
}

func (r *relay) stop() {
	r.listener.Close()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// defaultKwokRules let kwok answer logs, attach and port-forward for every
// host pod, so each verb has something to show in podbridge-dev: every
// container's log (and what attach follows) is dir/logs/pod.log in the
// CRI log format, and a forwarded port echoes what it is sent (a fixed
// `cat`, which runs no command a tenant chose).
//
// There is no exec rule, on purpose: kwok has no containers and would run
// the command on this machine, as the user running the test bed (root
// with the real node), so anyone allowed to exec in a virtual cluster
// would own the machine. Without a rule kwok answers every exec with an
// error ("no exec found") and runs nothing; exec is proved on the real
// node, in a real container.
func defaultKwokRules(dir string) (string, error) {
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return "", err
	}
	logFile := filepath.Join(logs, "pod.log")
	line := time.Now().UTC().Format(time.RFC3339Nano) + " stdout F kwok plays this container: its log is " + logFile + "\n"
	if err := os.WriteFile(logFile, []byte(line), 0o644); err != nil {
		return "", fmt.Errorf("writing kwok's pod log: %w", err)
	}
	return strings.NewReplacer("LOGFILE", strconv.Quote(logFile)).Replace(`---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata: {name: podbridge-default}
spec:
  logs:
  - {logsFile: LOGFILE, follow: true}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterAttach
metadata: {name: podbridge-default}
spec:
  attaches:
  - {logsFile: LOGFILE}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata: {name: podbridge-default}
spec:
  forwards:
  - command: [cat]
`), nil
}

// refuseKwokExec refuses a kwok configuration with an exec rule (Exec or
// ClusterExec, in defaultKwokRules or a caller's Options.KwokRules): kwok
// runs every exec it has a rule for on this machine, never in a container.
func refuseKwokExec(config []byte) error {
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(config)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading kwok's configuration: %w", err)
		}
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return fmt.Errorf("reading kwok's configuration: %w", err)
		}
		if meta.Kind == "Exec" || meta.Kind == "ClusterExec" {
			return fmt.Errorf("kwok configuration has a %s rule: kwok would run tenants' exec commands on this machine, so none is allowed (exec is proved on the real node)", meta.Kind)
		}
	}
}

// kubeletCABundle writes the CAs the host apiserver verifies kubelets'
// serving certificates against into one file in dir: kwok's and, when a
// real node joins, its kubelet's.
func kubeletCABundle(dir string, files ...string) (string, error) {
	var bundle []byte
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("reading a kubelet serving CA: %w", err)
		}
		bundle = append(bundle, b...)
	}
	path := filepath.Join(dir, "kubelet-ca.crt")
	if err := os.WriteFile(path, bundle, 0o644); err != nil {
		return "", fmt.Errorf("writing the kubelet CA bundle: %w", err)
	}
	return path, nil
}
