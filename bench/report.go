package bench

import (
	"fmt"
	"slices"
	"strings"
)

// Markdown renders the results as the report `make bench` prints and
// writes to results.md.
func Markdown(res *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	s := res.Sizes
	p("# podbridge benchmark\n\n")
	p("Run %s, %.0f s wall; %d CPUs, %.1f GiB, %s; load average %s at start, %s at end; the load generator used %.0f CPU s. ",
		res.Started.Format("2006-01-02 15:04 MST"), res.WallSeconds, res.Machine.CPUs, res.Machine.MemoryGiB,
		res.Machine.GoVersion, res.Machine.LoadAtStart, res.Machine.LoadAtEnd, res.Machine.BenchCPUSeconds)
	p("Seed %d; host: %d kwok nodes × %d pods. Everything (both control planes, podbridge, the load generator) shares this machine: "+
		"compare figures within the run, not with other machines.\n\n", s.Seed, s.Nodes, s.PodsPerNode)
	if len(s.PodbridgeFlags) > 0 {
		p("**podbridge ran with more flags:** `%s`.\n\n", strings.Join(s.PodbridgeFlags, " "))
	}
	if res.Error != "" {
		p("**The run failed:** %s\n\n", res.Error)
	}

	p("## Targets\n\n| target | threshold | measured | met | gap |\n|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		met := "not met"
		if t.Met {
			met = "met"
		}
		p("| %s | %s | %s | %s | %s |\n", t.Name, t.Threshold, t.Measured, met, t.Gap)
	}

	if len(res.Bounds) > 0 {
		p("\n### What this machine allows\n\nWorked out from this run's own figures (below): the best each figure could be at the CPU and latencies the run measured, " +
			"and the same if podbridge's own processes (webhook, reflector) cost nothing while its requests were still made, which is what the apiservers and the rest of the run leave.\n\n")
		p("| figure | measured | bound | without podbridge's processes | how |\n|---|---|---|---|---|\n")
		for _, bd := range res.Bounds {
			p("| %s | %s | %s | %s | %s |\n", bd.Figure, bd.Measured, bd.Bound, bd.WithoutPodbridge, bd.How)
		}
	}

	p("\n## 1. Create latency and throughput (%d pods per series, %d warm-up pods excluded)\n\n", s.CreatePods, s.CreateWarmup)
	p("Without the webhook: %s.\n\n", res.Create.NoWebhookMethod)
	p("| way | concurrency | created | errors | p50 ms | p90 ms | p99 ms | max ms | pods/s |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, ser := range res.Create.Series {
		l := ser.Latency
		p("| %s | %d | %d/%d | %d | %.2f | %.2f | %.2f | %.2f | %.0f |\n", ser.Way, ser.Concurrency, ser.Created, ser.Requested, ser.Errors, l.P50, l.P90, l.P99, l.Max, ser.PodsPerSecond)
	}
	for _, ser := range res.Create.Series {
		if ser.FirstError != "" {
			p("\nFirst error of %s at concurrency %d: %s\n", ser.Way, ser.Concurrency, ser.FirstError)
		}
	}
	p("\n| concurrency | p50 podbridge/direct | p99 podbridge/direct | pods/s podbridge/direct | overhead p50 (podbridge − no webhook) |\n|---|---|---|---|---|\n")
	for _, r := range res.Create.Ratios {
		p("| %d | %.2f | %.2f | %.2f | %.2f ms |\n", r.Concurrency, r.P50, r.P99, r.Throughput, r.OverheadP50Ms)
	}
	p("\nCPU while each series ran, every process of the run (the pods' follow-up work, such as the reflector's, counts while it overlaps):\n\n")
	p("| way | concurrency | machine busy | CPU ms per pod | most CPU (s) |\n|---|---|---|---|---|\n")
	for _, ser := range res.Create.Series {
		p("| %s | %d | %.0f%% | %.1f | %s |\n", ser.Way, ser.Concurrency, ser.CPU.Busy*100, ratio(ser.CPU.Total()*1000, float64(ser.Created)), topCPU(ser.CPU, 5))
	}

	p("\nRequests per created pod during each series that the bench did not make (apiserver_request_total deltas minus the bench's own; WATCH left out): " +
		"what the way makes each apiserver do per pod while the creates run.\n\n")
	p("| way | concurrency | apiserver | per pod | by verb and resource |\n|---|---|---|---|---|\n")
	for _, ser := range res.Create.Series {
		for _, r := range ser.Requests {
			p("| %s | %d | %s | %.2f | %s |\n", ser.Way, ser.Concurrency, r.Cluster, r.Total, formatMap(r.PerPod))
		}
	}
	profiled := false
	for _, ser := range res.Create.Series {
		profiled = profiled || len(ser.APIServerProfiles) > 0
	}
	if profiled {
		p("\nWhere each apiserver's CPU went per created pod, from its own CPU profiles (/debug/pprof/profile, %s windows back to back over the series; raw files in the profile folder). "+
			"By category each sample counts once, by the leaf-most frame that names one; inclusive counts it in every category on its stack.\n\n", apiserverWindow)
		p("| way | concurrency | apiserver | windows | CPU ms per pod | by request served (ms per pod) | by category (ms per pod) | inclusive (ms per pod) |\n|---|---|---|---|---|---|---|---|\n")
		for _, ser := range res.Create.Series {
			for _, pr := range ser.APIServerProfiles {
				p("| %s | %d | %s | %d | %.2f | %s | %s | %s |\n", pr.Way, pr.Concurrency, pr.Cluster, pr.Windows, pr.CPUMsPerPod,
					formatMap(pr.ByRequest), formatMap(pr.Categories), formatMap(pr.Inclusive))
			}
		}
		p("\nTop functions by their own CPU (flat; cumulative in brackets), ms per pod:\n\n| way | concurrency | apiserver | functions |\n|---|---|---|---|\n")
		for _, ser := range res.Create.Series {
			for _, pr := range ser.APIServerProfiles {
				var fns []string
				for _, f := range pr.Top {
					fns = append(fns, fmt.Sprintf("`%s` %.2f (%.2f)", f.Function, f.FlatMs, f.CumMs))
				}
				p("| %s | %d | %s | %s |\n", pr.Way, pr.Concurrency, pr.Cluster, strings.Join(fns, ", "))
			}
		}
	}

	p("\n## 2. Admission stages inside the webhook\n\nSource: %s.\n\n", res.Admission.Source)
	p("| concurrency | stage | count | mean ms | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n")
	for _, st := range res.Admission.Series {
		p("| %d | %s | %d | %.2f | %.2f | %.2f |\n", st.Concurrency, st.Stage, st.Count, st.MeanMs, st.P50Ms, st.P99Ms)
	}

	d := res.Deployment
	p("\n## 3. Deployment of %d replicas: time to Ready\n\nHost: %s.\n\n", d.Replicas, d.HostMethod)
	p("| cluster | all pods exist s | all Ready s |\n|---|---|---|\n")
	p("| host | %.1f | %.1f |\n| virtual (podbridge) | %.1f | %.1f |\n", d.Host.AllCreatedSeconds, d.Host.ReadySeconds, d.Virtual.AllCreatedSeconds, d.Virtual.ReadySeconds)
	p("\nvirtual / host time to Ready: %.2f\n", d.Ratio)

	r := res.Reflection
	p("\n## 4. Reflection lag with %d podbridge pods in place\n\n", r.Pods)
	p("Set-up: %d pods created through podbridge at concurrency %d in %.1f s (%.0f pods/s, p50 %.2f ms, p99 %.2f ms); all Ready %.1f s after the first create; removed in %.1f s afterwards.\n\n",
		r.Create.Created, r.Create.Concurrency, r.Create.WallSeconds, r.Create.PodsPerSecond, r.Create.Latency.P50, r.Create.Latency.P99, r.ReadySeconds, r.DeleteSeconds)
	p("Method: %s.\n\n", r.Method)
	p("| changes | target /s | achieved /s | write errors | lost | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|---|\n")
	p("| %d | %.0f | %.1f | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", r.Changes, r.TargetRate, r.AchievedRate, r.WriteErrors, r.Lost, r.Lag.P50, r.Lag.P90, r.Lag.P99, r.Lag.Max)
	p("\nCPU while the changes ran: machine %.0f%% busy, %.1f CPU ms per change; most CPU (s): %s.\n",
		r.CPU.Busy*100, ratio(r.CPU.Total()*1000, float64(r.Changes)), topCPU(r.CPU, 6))

	c := res.Cost
	p("\n## 5. Cost per pod through its life (%d pods: create → Ready → delete)\n\n", c.Pods)
	p("| process | CPU s | CPU s per 1,000 pods | peak RSS MiB |\n|---|---|---|---|\n")
	p("| webhook | %.2f | %.2f | %.0f |\n| reflector | %.2f | %.2f | %.0f |\n", c.Webhook.CPUSeconds, c.Webhook.CPUSecondsPer1000, c.Webhook.PeakRSSMiB, c.Reflector.CPUSeconds, c.Reflector.CPUSecondsPer1000, c.Reflector.PeakRSSMiB)
	p("\nMemory at scale (scenario 4, %d pods): reflector peak %.0f MiB over %.0f MiB idle = %.1f KiB/pod; webhook peak %.0f MiB (%.0f MiB at %d pods).\n",
		r.Pods, c.ReflectorPeakRSSMiBAtN, c.ReflectorIdleRSSMiB, c.ReflectorKiBPerPod, c.WebhookPeakRSSMiBAtN, c.WebhookPeakRSSMiBAtCost, c.Pods)
	p("\nApiserver requests podbridge makes per pod. Method: %s.\n\n", c.RequestsMethod)
	p("| cluster | verb | resource | per pod | design minimum | why the minimum |\n|---|---|---|---|---|---|\n")
	for _, row := range c.Requests {
		p("| %s | %s | %s | %.2f | %.0f | %s |\n", row.Cluster, row.Verb, row.Resource, row.PerPod, row.Minimum, row.Why)
	}
	p("| **total** | | | **%.2f** | **%.0f** | |\n", c.PerPod, c.MinimumPerPod)
	p("\nCross-check, podbridge's own client (rest_client_requests_total) per pod: %s.\n", formatMap(c.ClientPerPod))
	p("Reflector writes by kind (podbridge_reflector_actions_total) per pod: %s.\n", formatMap(c.ReflectorActionsPerPod))

	cs := res.ColdStart
	p("\n## 6. Reflector cold start with %d pods in place (from process start)\n\n", cs.Pods)
	p("| restart | metrics up s | in sync s | not in sync at the deadline |\n|---|---|---|---|\n")
	p("| nothing changed while down (every pair reconciled, queue empty) | %.2f | %.2f | |\n", cs.UnchangedMetricsUpSeconds, cs.UnchangedInSyncSeconds)
	p("| every host pod's status changed while down (every virtual pod shows it) | | %.2f | %d |\n", cs.ChangedInSyncSeconds, cs.ChangedLost)
	p("\nPeak RSS of the restarted reflector: %.0f MiB.\n", cs.PeakRSSMiB)

	ch := res.Churn
	p("\n## 7. Churn: %d pods in %d waves, each deleted while the next is created\n\n", ch.Pods, ch.Waves)
	p("| create errors | delete errors | waves s | converge s | orphan-path deletes | host pods left | virtual pods left | host Secrets left |\n|---|---|---|---|---|---|---|---|\n")
	p("| %d | %d | %.1f | %.1f | %.0f | %d | %d | %d |\n", ch.CreateErrors, ch.DeleteErrors, ch.WallSeconds, ch.ConvergeSeconds, ch.OrphanDeletes, ch.HostPodsLeft, ch.VirtualPodsLeft, ch.HostSecretsLeft)
	if ch.FirstError != "" {
		p("\nFirst error: %s\n", ch.FirstError)
	}
	p("\nHost Secrets left counts every Secret in the host namespace at the end of the run, after all scenarios' pods are gone.\n")
	p("\nThe latency distributions are plotted in %s; raw figures are in %s.\n", LatencyPlot, ResultsJSON)
	return b.String()
}

func formatMap(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.2f", k, m[k])
	}
	return strings.Join(parts, ", ")
}
