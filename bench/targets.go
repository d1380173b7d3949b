package bench

import "fmt"

// Thresholds of issue 6's targets.
const (
	maxOverheadToDirect   = 1.2   // admission overhead p50 ≤ 1.2 × direct p50
	minThroughputRatio    = 0.5   // podbridge pods/s ≥ 0.5 × direct at the highest concurrency
	maxLagP99Ms           = 100.0 // reflection lag p99
	maxReflectorKiBPerPod = 10.0
	maxWebhookRSSGrowth   = 1.25 // webhook peak RSS at scale ≤ 1.25 × at CostPods: "flat"
	maxColdStartSeconds   = 5.0
)

// evaluateTargets judges this run against issue 6's targets; a figure that
// was not measured (a scenario failed first) is not met.
func evaluateTargets(res *Results) []Target {
	var out []Target
	add := func(t Target, measured bool) {
		if !measured {
			t.Measured, t.Met, t.Gap = "not measured", false, ""
		}
		out = append(out, t)
	}

	if len(res.Create.Ratios) > 0 {
		r := res.Create.Ratios[0]
		limit := maxOverheadToDirect * r.DirectP50Ms
		t := Target{
			Name:      fmt.Sprintf("Admission overhead p50 (podbridge − no webhook), concurrency %d", r.Concurrency),
			Threshold: fmt.Sprintf("≤ %.1f × direct p50 = %.2f ms", maxOverheadToDirect, limit),
			Measured:  fmt.Sprintf("%.2f ms (%.2f × direct p50)", r.OverheadP50Ms, ratio(r.OverheadP50Ms, r.DirectP50Ms)),
			Met:       r.OverheadP50Ms <= limit,
		}
		if !t.Met {
			t.Gap = fmt.Sprintf("+%.2f ms over", r.OverheadP50Ms-limit)
		}
		add(t, r.DirectP50Ms > 0)

		r = res.Create.Ratios[len(res.Create.Ratios)-1]
		direct := findSeries(res.Create.Series, WayDirect, r.Concurrency)
		t = Target{
			Name:      fmt.Sprintf("Throughput at concurrency %d, podbridge / direct", r.Concurrency),
			Threshold: fmt.Sprintf("≥ %.2f", minThroughputRatio),
			Measured:  fmt.Sprintf("%.2f (%.0f vs %.0f pods/s)", r.Throughput, r.Throughput*direct.PodsPerSecond, direct.PodsPerSecond),
			Met:       r.Throughput >= minThroughputRatio,
		}
		if !t.Met {
			t.Gap = fmt.Sprintf("%.2f short (%.0f pods/s)", minThroughputRatio-r.Throughput, (minThroughputRatio-r.Throughput)*direct.PodsPerSecond)
		}
		add(t, r.Throughput > 0)
	} else {
		add(Target{Name: "Admission overhead p50", Threshold: fmt.Sprintf("≤ %.1f × direct p50", maxOverheadToDirect)}, false)
		add(Target{Name: "Throughput, podbridge / direct", Threshold: fmt.Sprintf("≥ %.2f", minThroughputRatio)}, false)
	}

	refl := res.Reflection
	t := Target{
		Name:      fmt.Sprintf("Reflection lag p99 at %d pods, %.0f changes/s", refl.Pods, refl.TargetRate),
		Threshold: fmt.Sprintf("≤ %.0f ms, none lost", maxLagP99Ms),
		Measured:  fmt.Sprintf("%.1f ms (p50 %.1f, max %.1f; %d lost)", refl.Lag.P99, refl.Lag.P50, refl.Lag.Max, refl.Lost),
		Met:       refl.Lag.P99 <= maxLagP99Ms && refl.Lost == 0,
	}
	if !t.Met {
		t.Gap = fmt.Sprintf("+%.1f ms", max(0, refl.Lag.P99-maxLagP99Ms))
	}
	add(t, refl.Lag.Count > 0)

	cost := res.Cost
	t = Target{
		Name:      fmt.Sprintf("Reflector peak RSS per pod at %d pods", refl.Pods),
		Threshold: fmt.Sprintf("≤ %.0f KiB", maxReflectorKiBPerPod),
		Measured:  fmt.Sprintf("%.1f KiB ((%.0f − %.0f idle) MiB / pods)", cost.ReflectorKiBPerPod, cost.ReflectorPeakRSSMiBAtN, cost.ReflectorIdleRSSMiB),
		Met:       cost.ReflectorKiBPerPod <= maxReflectorKiBPerPod,
	}
	if !t.Met {
		t.Gap = fmt.Sprintf("+%.1f KiB/pod", cost.ReflectorKiBPerPod-maxReflectorKiBPerPod)
	}
	add(t, cost.ReflectorPeakRSSMiBAtN > 0)

	growth := ratio(cost.WebhookPeakRSSMiBAtN, cost.WebhookPeakRSSMiBAtCost)
	t = Target{
		Name:      fmt.Sprintf("Webhook RSS flat in pods: peak at %d / peak at %d", refl.Pods, cost.Pods),
		Threshold: fmt.Sprintf("≤ %.2f", maxWebhookRSSGrowth),
		Measured:  fmt.Sprintf("%.2f (%.0f vs %.0f MiB)", growth, cost.WebhookPeakRSSMiBAtN, cost.WebhookPeakRSSMiBAtCost),
		Met:       growth <= maxWebhookRSSGrowth,
	}
	if !t.Met {
		t.Gap = fmt.Sprintf("+%.0f MiB", cost.WebhookPeakRSSMiBAtN-maxWebhookRSSGrowth*cost.WebhookPeakRSSMiBAtCost)
	}
	add(t, growth > 0)

	cold := res.ColdStart
	for _, c := range []struct {
		what    string
		seconds float64
	}{
		{"nothing changed while down (every pair reconciled)", cold.UnchangedInSyncSeconds},
		{"every host status changed while down (every virtual pod shows it)", cold.ChangedInSyncSeconds},
	} {
		t = Target{
			Name:      fmt.Sprintf("Cold start at %d pods, %s", cold.Pods, c.what),
			Threshold: fmt.Sprintf("≤ %.0f s", maxColdStartSeconds),
			Measured:  fmt.Sprintf("%.1f s", c.seconds),
			Met:       c.seconds <= maxColdStartSeconds,
		}
		if !t.Met {
			t.Gap = fmt.Sprintf("+%.1f s", c.seconds-maxColdStartSeconds)
		}
		add(t, c.seconds > 0)
	}

	t = Target{
		Name:      "apiserver requests podbridge makes per pod (create → Ready → delete)",
		Threshold: fmt.Sprintf("≤ the design's minimum, %.0f", cost.MinimumPerPod),
		Measured:  fmt.Sprintf("%.2f", cost.PerPod),
		Met:       cost.PerPod <= cost.MinimumPerPod,
	}
	if !t.Met {
		t.Gap = fmt.Sprintf("+%.2f per pod", cost.PerPod-cost.MinimumPerPod)
	}
	add(t, cost.PerPod > 0)

	churn := res.Churn
	t = Target{
		Name:      fmt.Sprintf("No orphan after churn of %d pods", churn.Pods),
		Threshold: "0 host pods, 0 virtual pods left",
		Measured:  fmt.Sprintf("%d host, %d virtual", churn.HostPodsLeft, churn.VirtualPodsLeft),
		Met:       churn.HostPodsLeft == 0 && churn.VirtualPodsLeft == 0,
	}
	add(t, churn.WallSeconds > 0)
	return out
}
