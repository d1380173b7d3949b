package bench

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPUUse is the CPU time of every process of the run over one stretch of
// it: both control planes' components, podbridge's webhook and reflector,
// and the bench itself. On a machine they all share, it says where the time
// of a slow figure went.
type CPUUse struct {
	WallSeconds float64 `json:"wallSeconds"`
	// Seconds is CPU seconds by process: "host kube-apiserver",
	// "virtual etcd", "podbridge reflector", "bench", ...
	Seconds map[string]float64 `json:"cpuSeconds"`
	// Busy is the share of the machine's cores the processes used together.
	Busy float64 `json:"busy"`
}

// Total is the CPU seconds of all processes.
func (u CPUUse) Total() float64 {
	total := 0.0
	for _, s := range u.Seconds {
		total += s
	}
	return total
}

// cpuSnapshot is the CPU time so far of the bench and each of its child
// processes, by PID.
type cpuSnapshot struct {
	at   time.Time
	pids map[int]namedCPU
}

type namedCPU struct {
	name string
	cpu  time.Duration
}

// takeCPUSnapshot reads the bench's children from /proc: envtest, the
// control planes and the bench start every process of the run directly.
func takeCPUSnapshot() cpuSnapshot {
	self := os.Getpid()
	snap := cpuSnapshot{at: time.Now(), pids: map[int]namedCPU{}}
	if s, err := sampleProc(self); err == nil {
		snap.pids[self] = namedCPU{name: "bench", cpu: s.CPU}
	}
	entries, _ := os.ReadDir("/proc")
	var children []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentOf(pid) != self {
			continue
		}
		children = append(children, pid)
	}
	names := nameProcesses(children)
	for _, pid := range children {
		if s, err := sampleProc(pid); err == nil {
			snap.pids[pid] = namedCPU{name: names[pid], cpu: s.CPU}
		}
	}
	return snap
}

// since is the CPU each process used between before and s. A process that
// started in between counts whole; one that ended in between is not seen.
func (s cpuSnapshot) since(before cpuSnapshot) CPUUse {
	use := CPUUse{WallSeconds: s.at.Sub(before.at).Seconds(), Seconds: map[string]float64{}}
	for pid, now := range s.pids {
		used := now.cpu
		if was, ok := before.pids[pid]; ok && was.name == now.name {
			used -= was.cpu
		}
		use.Seconds[now.name] += used.Seconds()
	}
	use.Busy = ratio(use.Total(), use.WallSeconds*float64(runtime.NumCPU()))
	return use
}

// parentOf reads a process' parent PID, or -1.
func parentOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// After the command name's closing parenthesis: state, then ppid.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return -1
	}
	return ppid
}

// nameProcesses names each process by its cluster and command: an
// apiserver by its certificate folder, an etcd by the apiserver that uses
// its client port, kwok and the others by the kubeconfig they use, and
// podbridge by its subcommand.
func nameProcesses(pids []int) map[int]string {
	args := map[int][]string{}
	etcdCluster := map[string]string{} // etcd client port → cluster
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(raw) == 0 {
			continue
		}
		a := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		args[pid] = a
		if filepath.Base(a[0]) == "kube-apiserver" {
			if port := portOf(flagValue(a, "--etcd-servers")); port != "" {
				etcdCluster[port] = clusterOf(flagValue(a, "--cert-dir"), "-apiserver")
			}
		}
	}
	names := map[int]string{}
	for pid, a := range args {
		command := filepath.Base(a[0])
		var cluster string
		switch command {
		case "kube-apiserver":
			cluster = clusterOf(flagValue(a, "--cert-dir"), "-apiserver")
		case "etcd":
			cluster = etcdCluster[portOf(flagValue(a, "--listen-client-urls"))]
		case "podbridge":
			if len(a) > 1 {
				command += " " + a[1]
			}
		default:
			cluster = clusterOf(flagValue(a, "--kubeconfig"), ".kubeconfig")
		}
		names[pid] = strings.TrimSpace(cluster + " " + command)
	}
	return names
}

// flagValue is the value of --name=value in args, or "".
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// clusterOf reads "host" or "virtual" off a path named <cluster><suffix>.
func clusterOf(path, suffix string) string {
	for _, c := range []string{"host", "virtual"} {
		if filepath.Base(strings.TrimRight(path, "/")) == c+suffix {
			return c
		}
	}
	return ""
}

// portOf is the port of the first URL in a comma-separated list.
func portOf(urls string) string {
	first, _, _ := strings.Cut(urls, ",")
	if i := strings.LastIndexByte(first, ':'); i >= 0 {
		return first[i+1:]
	}
	return ""
}

// topCPU lists the n processes that used the most CPU, as "name 1.2 s".
func topCPU(u CPUUse, n int) string {
	names := slices.SortedFunc(maps.Keys(u.Seconds), func(a, b string) int {
		if u.Seconds[a] != u.Seconds[b] {
			if u.Seconds[a] > u.Seconds[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, name := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.1f", name, u.Seconds[name]))
	}
	return strings.Join(parts, ", ")
}
