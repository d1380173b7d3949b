package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat. It is 100 on
// every Linux ABI Go supports; reading it needs sysconf(_SC_CLK_TCK), which
// needs cgo.
const userHZ = 100

// procSample is a process' cost so far.
type procSample struct {
	// CPU is user plus system time.
	CPU time.Duration
	// RSS and PeakRSS (VmHWM, since start or the last resetPeakRSS) in bytes.
	RSS, PeakRSS uint64
}

// sampleProc reads pid's CPU time from /proc/PID/stat and its resident set
// from /proc/PID/status.
func sampleProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("reading CPU time of %d: %w", pid, err)
	}
	// The command name in parentheses may hold spaces: fields count from
	// the last ')'. After it, field 3 (state) is index 0, so utime (14) and
	// stime (15) are 11 and 12.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return procSample{}, fmt.Errorf("reading CPU time of %d: short /proc stat line", pid)
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return procSample{}, fmt.Errorf("reading CPU time of %d: %w", pid, err)
		}
		ticks += n
	}
	s := procSample{CPU: time.Duration(ticks) * time.Second / userHZ}

	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("reading memory of %d: %w", pid, err)
	}
	defer status.Close()
	scanner := bufio.NewScanner(status)
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		kib, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return procSample{}, fmt.Errorf("reading %s of %d: %w", key, pid, err)
		}
		if key == "VmRSS" {
			s.RSS = kib * 1024
		} else {
			s.PeakRSS = kib * 1024
		}
	}
	return s, scanner.Err()
}

// resetPeakRSS sets pid's VmHWM back to its current RSS (clear_refs "5",
// Linux ≥ 4.0), so a phase's peak can be read on its own.
func resetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting peak RSS of %d: %w", pid, err)
	}
	return nil
}

// mib converts bytes to MiB.
func mib(bytes uint64) float64 { return float64(bytes) / (1 << 20) }

// memTotalGiB reads the machine's memory from /proc/meminfo.
func memTotalGiB() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kib / (1 << 20)
		}
	}
	return 0
}

// loadAverage is /proc/loadavg's first three fields: other work on the
// machine changes the figures, so the report states it.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(data))
	return strings.Join(fields[:min(3, len(fields))], " ")
}
