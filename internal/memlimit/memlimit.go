// Package memlimit sets the Go runtime's soft memory limit of podbridge's
// long-running commands from the memory limit of their container.
//
// Go's garbage collector lets the heap grow to twice what is live (GOGC
// 100) and knows nothing of a container's limit: a reflector whose live
// heap is half its limit is OOM-killed on its next burst of allocation.
// With the soft limit the collector works harder as the heap nears it.
package memlimit

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Auto is the flag value that derives the limit from the container's.
const Auto = "auto"

// Fraction is the share of the container's limit the soft limit is: the
// rest is room for what the runtime does not count (stacks it has not
// reclaimed, memory not yet returned to the system) and for cgroup
// accounting of page cache.
const Fraction = 0.9

// cgroupFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// unlimitedV1 is above any real limit: cgroup v1 reports no limit as the
// largest page-aligned int64.
const unlimitedV1 = int64(1) << 62

// Decide returns the soft limit in bytes for a --memory-limit value (0:
// none) and why. value is "auto", "0", or a quantity such as 400Mi;
// cgroupMax is the content of the container's limit file ("" when there
// is none); env is GOMEMLIMIT, which "auto" leaves in charge.
func Decide(value, cgroupMax, env string) (int64, string, error) {
	switch value {
	case Auto:
		if env != "" {
			return 0, "GOMEMLIMIT is set", nil
		}
		v := strings.TrimSpace(cgroupMax)
		if v == "" || v == "max" {
			return 0, "the container has no memory limit", nil
		}
		n, ok := bytesOf(v)
		if !ok {
			return 0, fmt.Sprintf("the container's memory limit %q is not a number of bytes", v), nil
		}
		if n >= unlimitedV1 {
			return 0, "the container has no memory limit", nil
		}
		return int64(float64(n) * Fraction), fmt.Sprintf("%.0f%% of the container's limit of %d bytes", Fraction*100, n), nil
	case "0":
		return 0, "--memory-limit is 0", nil
	}
	q, err := resource.ParseQuantity(value)
	if err != nil || q.Sign() <= 0 {
		return 0, "", fmt.Errorf("--memory-limit must be %q, 0 or a positive quantity of bytes such as 400Mi, not %q", Auto, value)
	}
	return q.Value(), "--memory-limit", nil
}

// bytesOf parses a cgroup limit file's number of bytes.
func bytesOf(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}

// Apply decides the limit for value in this process and sets it; it
// returns the limit set (0: none, the runtime's default) and why.
func Apply(value string) (int64, string, error) {
	cgroupMax := ""
	for _, f := range cgroupFiles {
		b, err := os.ReadFile(f)
		if err == nil {
			cgroupMax = string(b)
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return 0, "", fmt.Errorf("reading the container's memory limit: %w", err)
		}
	}
	limit, why, err := Decide(value, cgroupMax, os.Getenv("GOMEMLIMIT"))
	if err != nil || limit == 0 {
		return 0, why, err
	}
	debug.SetMemoryLimit(limit)
	return limit, why, nil
}
