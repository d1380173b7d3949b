package bench

import "fmt"

// Bound is the best one figure could be on this machine, worked out from
// the run's own figures: on two cores that everything shares, a target can
// be out of reach because of what the apiservers spend, before podbridge's
// own processes spend anything.
type Bound struct {
	Figure   string `json:"figure"`
	Measured string `json:"measured"`
	// Bound is what the machine allows at the CPU the run measured;
	// WithoutPodbridge the same with podbridge's own processes (webhook,
	// reflector) costing nothing, its requests still made: what the
	// apiservers and the rest of the run allow podbridge at best.
	Bound            string `json:"bound"`
	WithoutPodbridge string `json:"withoutPodbridge"`
	How              string `json:"how"`
}

// podbridgeProcesses are the processes whose CPU is podbridge's own (as
// nameProcesses names them).
var podbridgeProcesses = []string{"podbridge webhook", "podbridge reflector"}

// saturated is the machine busy share above which a series' rate is taken
// to be bound by CPU.
const saturated = 0.9

func podbridgeSeconds(u CPUUse) float64 {
	own := 0.0
	for _, p := range podbridgeProcesses {
		own += u.Seconds[p]
	}
	return own
}

// machineBounds works out the best this run's machine allows of the
// figures it bounds: those CPU bounds, and the admission overhead from its
// parts; a figure whose inputs were not measured is left out.
func machineBounds(res *Results) []Bound {
	var out []Bound
	cores := float64(res.Machine.CPUs)

	if len(res.Create.Ratios) > 0 {
		first := res.Create.Ratios[0]
		stage := map[string]AdmissionStage{}
		for _, st := range res.Admission.Series {
			if st.Concurrency == first.Concurrency && st.Count > 0 {
				stage[st.Stage] = st
			}
		}
		call, whole, create := stage[stageAPIServerCall], stage[stageWebhookWhole], stage["host_create"]
		if call.Count > 0 && whole.Count > 0 && create.Count > 0 && first.DirectP50Ms > 0 {
			// The overhead holds the virtual apiserver's call to the
			// webhook, and that call the host create the mission makes
			// synchronous; podbridge's own part is the rest of the
			// webhook's time.
			own := whole.MeanMs - create.MeanMs
			out = append(out, Bound{
				Figure:           fmt.Sprintf("Admission overhead p50, concurrency %d, × direct p50", first.Concurrency),
				Measured:         fmt.Sprintf("%.2f", ratio(first.OverheadP50Ms, first.DirectP50Ms)),
				Bound:            fmt.Sprintf("≥ %.2f", ratio(call.MeanMs, first.DirectP50Ms)),
				WithoutPodbridge: fmt.Sprintf("≥ %.2f", ratio(call.MeanMs-own, first.DirectP50Ms)),
				How: fmt.Sprintf("the overhead holds the virtual apiserver's call to the webhook, %.2f ms mean, of which the host create %.2f ms and the webhook's own work %.2f ms; direct p50 %.2f ms",
					call.MeanMs, create.MeanMs, own, first.DirectP50Ms),
			})
		}

		last := res.Create.Ratios[len(res.Create.Ratios)-1]
		direct := findSeries(res.Create.Series, WayDirect, last.Concurrency)
		pb := findSeries(res.Create.Series, WayPodbridge, last.Concurrency)
		if direct.Created > 0 && pb.Created > 0 && direct.CPU.Busy >= saturated && pb.CPU.Busy >= saturated {
			directPerPod := direct.CPU.Total() / float64(direct.Created)
			perPod := pb.CPU.Total() / float64(pb.Created)
			own := podbridgeSeconds(pb.CPU) / float64(pb.Created)
			out = append(out, Bound{
				Figure:           fmt.Sprintf("Throughput at concurrency %d, podbridge / direct", last.Concurrency),
				Measured:         fmt.Sprintf("%.2f", last.Throughput),
				Bound:            fmt.Sprintf("≤ %.2f", ratio(directPerPod, perPod)),
				WithoutPodbridge: fmt.Sprintf("≤ %.2f", ratio(directPerPod, perPod-own)),
				How: fmt.Sprintf("both series keep the machine busy (%.0f%%, %.0f%%), so pods/s is the cores over the CPU per pod: %.1f ms direct, %.1f ms through podbridge, of which %.1f ms in podbridge's processes",
					direct.CPU.Busy*100, pb.CPU.Busy*100, directPerPod*1000, perPod*1000, own*1000),
			})
		}
	}

	r := res.Reflection
	if r.Changes > 0 && r.CPU.Total() > 0 && cores > 0 {
		perChange := r.CPU.Total() / float64(r.Changes)
		own := podbridgeSeconds(r.CPU) / float64(r.Changes)
		out = append(out, Bound{
			Figure:           fmt.Sprintf("Status changes a second reflected at %d pods (lag stays bounded only below this rate)", r.Pods),
			Measured:         fmt.Sprintf("%.1f reached of %.0f asked", r.AchievedRate, r.TargetRate),
			Bound:            fmt.Sprintf("≤ %.0f", cores/perChange),
			WithoutPodbridge: fmt.Sprintf("≤ %.0f", cores/(perChange-own)),
			How: fmt.Sprintf("%.0f cores over %.1f CPU ms per change (%.1f ms in podbridge's processes); above that rate the changes queue and the lag grows with the run",
				cores, perChange*1000, own*1000),
		})
		virtualWrite := (r.CPU.Seconds["virtual kube-apiserver"] + r.CPU.Seconds["virtual etcd"]) / float64(r.Changes)
		if cs := res.ColdStart; cs.Pods > 0 && virtualWrite > 0 {
			floor := float64(cs.Pods) * virtualWrite / cores
			out = append(out, Bound{
				Figure:           fmt.Sprintf("Cold start at %d pods, every host status changed while down, s", cs.Pods),
				Measured:         fmt.Sprintf("%.1f", cs.ChangedInSyncSeconds),
				Bound:            fmt.Sprintf("≥ %.1f", floor+float64(cs.Pods)*own/cores),
				WithoutPodbridge: fmt.Sprintf("≥ %.1f", floor),
				How: fmt.Sprintf("one virtual status write per pod, %.1f CPU ms each in the virtual kube-apiserver and its etcd (scenario 4's figure per change), on %.0f cores",
					virtualWrite*1000, cores),
			})
		}
	}
	return out
}
