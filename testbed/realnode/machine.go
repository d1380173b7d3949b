package realnode

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/podbridge/podbridge/testbed/child"
)

// machineDir holds the lock and the record of what the running (or a
// killed) real node changed: a fixed path, so the next Start finds it
// whatever state dir the earlier run used.
const machineDir = "/run/podbridge-realnode"

// packages are what the node runs; each installs the files listed.
var packages = map[string][]string{
	"containerd":                  {"/usr/bin/containerd", "/usr/bin/ctr"},
	"runc":                        {"/usr/sbin/runc"},
	"containernetworking-plugins": {cniBinDir + "/bridge", cniBinDir + "/host-local", cniBinDir + "/loopback"},
	// The node's firewall (see firewall.go); a dependency of the CNI
	// plugins' package anyway.
	"iptables": {"/usr/sbin/iptables", "/usr/sbin/ip6tables"},
}

// cniBinDir is where Debian puts the CNI plugins.
const cniBinDir = "/usr/lib/cni"

// sysctls are what the kubelet (kernel tunables) and the CNI bridge plugin
// (forwarding) set; their values before are restored on Stop.
var sysctls = []string{
	"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
	// kube-proxy's: configured to leave them alone (no localhost NodePorts,
	// conntrack tunables 0), and restored all the same.
	"net/ipv4/conf/all/route_localnet", "net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established", "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

// fixedDirs are paths containerd, the CNI plugins and the kubelet use
// whatever they are configured with; each is removed on Stop when it did
// not exist before.
var fixedDirs = []string{"/run/containerd", "/var/run/netns", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet"}

// HostPathProvisionerDir is where kube-controller-manager's host-path
// provisioner (controlplane.HostControllers) makes each volume's folder,
// /tmp/hostpath_pv/<uid>: a path fixed in its code
// (k8s.io/kubernetes/pkg/volume/hostpath), which no flag moves, and whose
// deleter removes only folders under /tmp. While a node runs it is a
// symbolic link to the node's own folder (provisionedDir), so the volumes
// live in the run's state folder, and both go on Stop, or on the next
// Start after a killed run. The provisioner, the kubelet and runc all
// follow the link: the folder a volume names is the one they see.
const HostPathProvisionerDir = "/tmp/hostpath_pv"

// provisionedDir is the folder HostPathProvisionerDir links to.
func (n *Node) provisionedDir() string { return n.dir("hostpath_pv") }

// linkProvisionerDir records, then creates, the provisioner's folder in
// the node's state folder and HostPathProvisionerDir linking to it. It
// refuses when HostPathProvisionerDir exists already (a leftover of a
// killed run is undone before): volumes there would be another's.
func (n *Node) linkProvisionerDir() error {
	_, err := os.Lstat(HostPathProvisionerDir)
	if err == nil {
		return fmt.Errorf("%s exists: kube-controller-manager's host-path provisioner puts the real node's volumes there, so it must be the node's alone: remove it", HostPathProvisionerDir)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking the host-path provisioner's folder: %w", err)
	}
	n.rec.CreatedDirs = append(n.rec.CreatedDirs, HostPathProvisionerDir, n.provisionedDir())
	if err := n.rec.save(); err != nil {
		return err
	}
	if err := os.MkdirAll(n.provisionedDir(), 0o755); err != nil {
		return err
	}
	return os.Symlink(n.provisionedDir(), HostPathProvisionerDir)
}

// takeLock makes sure this is the machine's only real node: the kubelet's
// ports and fixed paths cannot be shared. The lock goes with the process,
// so a killed run does not hold it.
func (n *Node) takeLock() (err error) {
	n.lock, err = lockMachine()
	return err
}

func lockMachine() (*os.File, error) {
	if err := os.MkdirAll(machineDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(machineDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another real node runs on this machine (lock %s held): only one can run at a time: %w", f.Name(), err)
	}
	return f, nil
}

// SweepLeftovers undoes what a real node killed before its Stop left on
// this machine when its state folder was under stateDir, as Start does
// first: a caller about to remove a killed run's state folder calls it
// before, since the node's mounts are in there. Only root can have run a
// node; for anyone else there is nothing to undo.
func SweepLeftovers(log logr.Logger, stateDir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	r, err := readRecord()
	if r == nil || err != nil || !under(r.StateDir, stateDir) {
		return err
	}
	lock, err := lockMachine()
	if err != nil {
		return err
	}
	defer lock.Close() // releases the lock
	return sweepLeftovers(log)
}

// record is what a real node changed on the machine, saved before each
// change so a killed run can be undone by the next.
type record struct {
	StateDir string `json:"stateDir"`
	Bridge   string `json:"bridge,omitempty"`
	// Firewall says the node's chains were (being) added: see firewall.go.
	Firewall bool `json:"firewall,omitempty"`
	// ServiceRoute is the service range whose unreachable route was
	// (being) added; KubeProxy says kube-proxy was (being) started, so
	// every KUBE-* chain is the node's: see services.go.
	ServiceRoute      string            `json:"serviceRoute,omitempty"`
	KubeProxy         bool              `json:"kubeProxy,omitempty"`
	ContainerdAddress string            `json:"containerdAddress"`
	Processes         []recordedProcess `json:"processes,omitempty"`
	Sysctls           map[string]string `json:"sysctls"`
	CreatedDirs       []string          `json:"createdDirs,omitempty"`
}

type recordedProcess struct {
	PID int    `json:"pid"`
	Exe string `json:"exe"`
}

func recordPath() string { return filepath.Join(machineDir, "record.json") }

// newRecord notes the sysctls and fixed directories as they are now.
func newRecord(n *Node) *record {
	r := &record{StateDir: n.opts.StateDir, ContainerdAddress: n.containerdAddress(), Sysctls: map[string]string{}}
	for _, s := range sysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", s)); err == nil {
			r.Sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, d := range fixedDirs {
		if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
			r.CreatedDirs = append(r.CreatedDirs, d)
		}
	}
	return r
}

func (r *record) save() error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := recordPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("recording the real node's changes: %w", err)
	}
	return os.Rename(tmp, recordPath())
}

// sweepLeftovers undoes what a real node killed before its Stop left,
// from its record.
func sweepLeftovers(log logr.Logger) error {
	r, err := readRecord()
	if r == nil || err != nil {
		return err
	}
	log.Info("Undoing what an earlier real node left", "stateDir", r.StateDir)
	return r.undo(log)
}

// readRecord reads the record a real node left, or returns nil if there is
// none.
func readRecord() (*record, error) {
	b, err := os.ReadFile(recordPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &record{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", recordPath(), err)
	}
	return r, nil
}

// undo kills what is left of the node's processes (its own, containerd's
// shims and every container), unmounts what they mounted, deletes the
// bridge, the firewall's chains and the pods' cgroups, restores the
// sysctls and removes the fixed directories that were created (the
// provisioner's link and folder among them: os.RemoveAll removes a link,
// not what it names); then the record.
func (r *record) undo(log logr.Logger) error {
	var errs []error
	var pids []int
	for _, p := range r.Processes {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); err == nil && exe == p.Exe {
			pids = append(pids, p.PID)
		}
	}
	pids = append(pids, shimPIDs(r.ContainerdAddress)...)
	pids = append(pids, cgroupPIDs()...)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	errs = append(errs, waitGone(pids, 15*time.Second))
	errs = append(errs, unmountAll(r.mountRoots()))
	if r.Bridge != "" {
		if _, err := os.Stat(filepath.Join("/sys/class/net", r.Bridge)); err == nil {
			errs = append(errs, run("ip", "link", "del", r.Bridge))
		}
	}
	if r.Firewall {
		for _, tool := range firewallTools() {
			errs = append(errs, removeFirewall(tool))
		}
	}
	if r.KubeProxy {
		for _, tool := range firewallTools() {
			errs = append(errs, removeKubeProxyRules(tool))
		}
	}
	if r.ServiceRoute != "" {
		errs = append(errs, removeServiceRoute(r.ServiceRoute))
	}
	errs = append(errs, removeCgroups())
	for s, v := range r.Sysctls {
		path := filepath.Join("/proc/sys", s)
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != v {
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring sysctl %s=%s: %w", s, v, err))
			}
		}
	}
	for _, d := range r.CreatedDirs {
		errs = append(errs, os.RemoveAll(d))
	}
	if err := errors.Join(errs...); err != nil {
		log.Error(err, "Failed to undo every change of the real node; the record is kept for the next start", "record", recordPath())
		return err
	}
	return os.Remove(recordPath())
}

// mountRoots are the folders whose mounts are the node's.
func (r *record) mountRoots() []string {
	return []string{r.StateDir, "/run/containerd", "/run/netns/cni-", "/var/run/netns/cni-", "/var/lib/kubelet"}
}

// shimPIDs are containerd shims serving the node's containerd: they outlive
// containerd by design.
func shimPIDs(address string) []int {
	return child.Find(func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			return false
		}
		args := strings.Split(string(b), "\x00")
		return strings.Contains(args[0], "containerd-shim") && slices.Contains(args, address)
	})
}

// cgroupRoot is the cgroup (v1 or v2) the kubelet puts every pod under.
const cgroupRoot = "kubepods"

// cgroupDirs are the node's pod cgroups in every hierarchy, deepest first.
func cgroupDirs() []string {
	var dirs []string
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroupRoot)
	if _, err := os.Stat("/sys/fs/cgroup/" + cgroupRoot); err == nil {
		hierarchies = append(hierarchies, "/sys/fs/cgroup/"+cgroupRoot)
	}
	for _, h := range hierarchies {
		_ = filepath.WalkDir(h, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

// cgroupPIDs are the processes of every container the node ran.
func cgroupPIDs() []int {
	var pids []int
	for _, d := range cgroupDirs() {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeCgroups removes the pod cgroups, retrying while they are busy: a
// killed container holds its cgroup until its parent (the shim, killed
// too, so init) has reaped it.
func removeCgroups() error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var errs []error
		for _, d := range cgroupDirs() {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
			}
		}
		if len(errs) == 0 || time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitGone waits until none of pids exists (zombies of our own children
// are reaped by their waiters).
func waitGone(pids []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range pids {
			if child.Running(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive after SIGKILL", alive)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Mounts returns the mount points under the real node's folders now, for
// Stop's callers and tests to check nothing is left.
func Mounts(stateDir string) ([]string, error) {
	r := &record{StateDir: stateDir}
	return mountsUnder(r.mountRoots())
}

func mountsUnder(roots []string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		point := unescapeMount(fields[4])
		for _, root := range roots {
			if under(point, root) {
				points = append(points, point)
				break
			}
		}
	}
	return points, s.Err()
}

// under reports whether mount point is root or inside it; a root ending
// in "-" is a name prefix (/run/netns/cni- matches every CNI namespace).
func under(point, root string) bool {
	switch {
	case root == "":
		return false
	case strings.HasSuffix(root, "-"):
		return strings.HasPrefix(point, root)
	default:
		root = strings.TrimSuffix(root, "/")
		return point == root || strings.HasPrefix(point, root+"/")
	}
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts every mount under roots, deepest first, until none
// is left (a mount may hide another).
func unmountAll(roots []string) error {
	for range 10 {
		points, err := mountsUnder(roots)
		if err != nil {
			return err
		}
		if len(points) == 0 {
			return nil
		}
		slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	points, _ := mountsUnder(roots)
	return fmt.Errorf("mounts left after unmounting: %v", points)
}

// ensurePackages installs containerd, runc and the CNI plugins with apt
// when a file they provide is missing.
func ensurePackages(ctx context.Context, log logr.Logger) error {
	var missing []string
	for pkg, files := range packages {
		for _, f := range files {
			if _, err := os.Stat(f); err != nil {
				missing = append(missing, pkg)
				break
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	log.Info("Installing packages for the real node", "packages", missing)
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		// A fresh machine may have no package lists yet.
		if upd, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return fmt.Errorf("apt-get update: %w\n%s", uerr, upd)
		}
		if out, err := install(); err != nil {
			return fmt.Errorf("installing %v with apt-get: %w\n%s", missing, err, out)
		}
	}
	return nil
}

// run runs a command, its output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
