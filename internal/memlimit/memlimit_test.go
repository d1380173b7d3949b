package memlimit

import (
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name, value, cgroup, env string
		want                     int64
		err                      string
	}{
		{name: "cgroup v2 limit", value: Auto, cgroup: "536870912\n", want: 483183820},
		{name: "cgroup v1 limit", value: Auto, cgroup: "1073741824", want: 966367641},
		{name: "no limit, v2", value: Auto, cgroup: "max\n"},
		{name: "no limit, v1", value: Auto, cgroup: "9223372036854771712"},
		{name: "no cgroup file", value: Auto},
		{name: "unreadable limit", value: Auto, cgroup: "lots"},
		{name: "GOMEMLIMIT wins over auto", value: Auto, cgroup: "536870912", env: "100MiB"},
		{name: "off", value: "0", cgroup: "536870912"},
		{name: "explicit", value: "400Mi", cgroup: "536870912", env: "100MiB", want: 400 << 20},
		{name: "negative", value: "-1Mi", err: "--memory-limit must be"},
		{name: "garbage", value: "lots", err: "not \"lots\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why, err := Decide(tc.value, tc.cgroup, tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || why == "" {
				t.Errorf("Decide(%q, %q, %q) = %d, %q, %v; want %d and a reason", tc.value, tc.cgroup, tc.env, got, why, err, tc.want)
			}
		})
	}
}
