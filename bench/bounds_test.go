package bench

import (
	"strings"
	"testing"
)

func TestMachineBounds(t *testing.T) {
	busy := func(b float64, seconds map[string]float64) CPUUse { return CPUUse{Busy: b, Seconds: seconds} }
	run := func(directBusy float64) *Results {
		return &Results{
			Machine: Machine{CPUs: 2},
			Create: CreateResults{
				Ratios: []CreateRatio{{Concurrency: 1, OverheadP50Ms: 20, DirectP50Ms: 5}, {Concurrency: 32, Throughput: 0.16}},
				Series: []CreateSeries{
					{Way: WayDirect, Concurrency: 32, Created: 2000, CPU: busy(directBusy, map[string]float64{"host kube-apiserver": 8})},
					{Way: WayPodbridge, Concurrency: 32, Created: 2000, CPU: busy(0.99, map[string]float64{
						"host kube-apiserver": 30, "podbridge reflector": 6, "podbridge webhook": 4,
					})},
				},
			},
			Admission: AdmissionResults{Series: []AdmissionStage{
				{Concurrency: 1, Stage: "translate", Count: 10, MeanMs: 1},
				{Concurrency: 1, Stage: "host_create", Count: 10, MeanMs: 8},
				{Concurrency: 1, Stage: stageWebhookWhole, Count: 10, MeanMs: 9.5},
				{Concurrency: 1, Stage: stageAPIServerCall, Count: 10, MeanMs: 12},
				{Concurrency: 32, Stage: "host_create", Count: 10, MeanMs: 99},
			}},
			Reflection: ReflectionResults{Pods: 10000, Changes: 6000, TargetRate: 200, AchievedRate: 130, CPU: busy(0.99, map[string]float64{
				"host kube-apiserver": 48, "virtual kube-apiserver": 24, "virtual etcd": 6, "podbridge reflector": 12,
			})},
			ColdStart: ColdStartResults{Pods: 10000, ChangedInSyncSeconds: 37},
		}
	}
	for _, tc := range []struct {
		name string
		res  *Results
		want map[string][2]string // figure prefix → bound, without podbridge
	}{
		{"saturated", run(0.99), map[string][2]string{
			// 12 ms call / 5 ms direct; without the webhook's 1.5 ms of its own.
			"Admission overhead": {"≥ 2.40", "≥ 2.10"},
			// 4 ms direct / 20 ms podbridge per pod, of which 5 ms its own.
			"Throughput": {"≤ 0.20", "≤ 0.27"},
			// 2 cores / 15 ms per change, 2 ms of them the reflector's.
			"Status changes": {"≤ 133", "≤ 154"},
			// 10,000 × 5 ms virtual write / 2 cores, + 10,000 × 2 ms / 2.
			"Cold start": {"≥ 35.0", "≥ 25.0"},
		}},
		{"the direct series left the machine idle: no CPU bound on throughput", run(0.5), map[string][2]string{
			"Admission overhead": {"≥ 2.40", "≥ 2.10"},
			"Status changes":     {"≤ 133", "≤ 154"},
			"Cold start":         {"≥ 35.0", "≥ 25.0"},
		}},
		{"nothing measured", &Results{}, map[string][2]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := machineBounds(tc.res)
			if len(got) != len(tc.want) {
				t.Fatalf("%d bounds, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, b := range got {
				found := false
				for prefix, want := range tc.want {
					if strings.HasPrefix(b.Figure, prefix) {
						found = true
						if b.Bound != want[0] || b.WithoutPodbridge != want[1] {
							t.Errorf("%s: bound %q, without podbridge %q; want %q, %q", b.Figure, b.Bound, b.WithoutPodbridge, want[0], want[1])
						}
					}
				}
				if !found {
					t.Errorf("unexpected bound %q", b.Figure)
				}
			}
		})
	}
}
