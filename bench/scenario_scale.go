package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/translate"
)

const reflectionMethod = "a strategic-merge patch of the host pod's status adds a condition " +
	"(type bench.podbridge.io/probe, message = change number); lag runs from the patch's response " +
	"to the bench's watch event of the virtual pod carrying that message"

// scaleMemory is what scenario 4 reads about memory at scale.
type scaleMemory struct {
	reflectorPeak, webhookPeak uint64
}

// probeRecorder pairs host status writes with their arrival on virtual pods.
type probeRecorder struct {
	mu       sync.Mutex
	prefix   string
	written  []time.Time
	observed []time.Time
	seen     int
}

func newProbeRecorder(prefix string, n int) *probeRecorder {
	return &probeRecorder{prefix: prefix, written: make([]time.Time, n), observed: make([]time.Time, n)}
}

func (r *probeRecorder) wrote(i int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.written[i] = at
}

// observe is the watcher's callback: message is prefix + change number.
func (r *probeRecorder) observe(_, message string, at time.Time) {
	rest, ok := strings.CutPrefix(message, r.prefix)
	if !ok {
		return
	}
	i, err := strconv.Atoi(rest)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || i < 0 || i >= len(r.observed) || !r.observed[i].IsZero() {
		return
	}
	r.observed[i] = at
	r.seen++
}

func (r *probeRecorder) seenCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen
}

// lags returns the lag of every change seen and how many were not.
func (r *probeRecorder) lags() (lags []time.Duration, lost int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.written {
		switch {
		case r.written[i].IsZero():
			// the write failed: counted as a write error, not a loss.
		case r.observed[i].IsZero():
			lost++
		default:
			// The watch event can be handled before the patch's response
			// is: that is no lag at all.
			lags = append(lags, max(0, r.observed[i].Sub(r.written[i])))
		}
	}
	return lags, lost
}

// patchProbe writes the probe condition with message on a host pod's status.
func (e *env) patchProbe(ctx context.Context, virtualName, message string) error {
	host := translate.HostName(virtualName, nsScale, vclusterName)
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"True","reason":"Bench","message":%q,"lastTransitionTime":%q}]}}`,
		probeCondition, message, time.Now().UTC().Format(time.RFC3339))
	_, err := e.host.client.CoreV1().Pods(hostNamespace).Patch(ctx, host, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("patching status of host pod %s: %w", host, err)
	}
	return nil
}

// runScale is scenarios 4 and 6 with ScalePods podbridge pods in place: the
// reflection lag of status changes at a steady rate, the reflector's
// memory, and two reflector restarts.
func (e *env) runScale(ctx context.Context) (ReflectionResults, ColdStartResults, scaleMemory, error) {
	n := e.cfg.ScalePods
	refl := ReflectionResults{Pods: n, Method: reflectionMethod, TargetRate: e.cfg.LagRate}
	cold := ColdStartResults{Pods: n}
	var mem scaleMemory
	for _, p := range []*podbridgeproc.Process{e.pb.webhook, e.pb.reflector} {
		if err := resetPeakRSS(p.PID()); err != nil {
			return refl, cold, mem, err
		}
	}
	w, err := watchPods(ctx, e.virtual, nsScale, nil)
	if err != nil {
		return refl, cold, mem, err
	}
	defer w.stop()

	concurrency := e.cfg.Concurrency[len(e.cfg.Concurrency)-1]
	timeout := 5*time.Minute + time.Duration(n)*50*time.Millisecond
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	e.log.Info("Creating pods through podbridge", "pods", n, "concurrency", concurrency)
	start := time.Now()
	names := podNames("scale", n)
	run := createPods(cctx, e.virtual.client.CoreV1().Pods(nsScale), names, "scale", concurrency)
	refl.Create = seriesOf(WayPodbridge, concurrency, n, run)
	if run.Errors > 0 {
		return refl, cold, mem, fmt.Errorf("creating %d pods: %d failed, first: %s", n, run.Errors, run.FirstError)
	}
	err = w.waitUntil(cctx, timeout, fmt.Sprintf("%d Ready virtual pods", n), e.checkAlive, func(_, ready int) bool { return ready >= n })
	if err != nil {
		return refl, cold, mem, err
	}
	refl.ReadySeconds = time.Since(start).Seconds()
	e.log.Info("All pods Ready", "pods", n, "seconds", refl.ReadySeconds)

	if err := e.measureLag(ctx, w, names, &refl); err != nil {
		return refl, cold, mem, err
	}
	e.prof.heap(ctx, fmt.Sprintf("at-%d-pods", n))
	for _, p := range []*podbridgeproc.Process{e.pb.webhook, e.pb.reflector} {
		s, err := sampleProc(p.PID())
		if err != nil {
			return refl, cold, mem, err
		}
		if p == e.pb.webhook {
			mem.webhookPeak = s.PeakRSS
		} else {
			mem.reflectorPeak = s.PeakRSS
		}
	}

	if err := e.coldStart(ctx, w, names, &cold); err != nil {
		return refl, cold, mem, err
	}
	e.prof.scenario("4 deleting the pods")

	e.log.Info("Deleting pods", "pods", n)
	start = time.Now()
	if err := e.emptyNamespaces(ctx, e.cleanupTimeout(n), nsRef{e.virtual, nsScale}, nsRef{e.host, hostNamespace}); err != nil {
		return refl, cold, mem, err
	}
	refl.DeleteSeconds = time.Since(start).Seconds()
	return refl, cold, mem, nil
}

// measureLag is scenario 4: LagRate host status changes per second for
// LagSeconds, each on a different pod in a seeded order.
func (e *env) measureLag(ctx context.Context, w *podWatcher, names []string, refl *ReflectionResults) error {
	changes := int(e.cfg.LagRate * e.cfg.LagSeconds)
	refl.Changes = changes
	order := rand.New(rand.NewPCG(uint64(e.cfg.Seed), 4)).Perm(len(names))
	rec := newProbeRecorder("lag-", changes)
	w.setOnProbe(rec.observe)
	defer w.setOnProbe(nil)

	e.log.Info("Changing host pod status at a steady rate", "perSecond", e.cfg.LagRate, "changes", changes)
	var mu sync.Mutex
	lctx, cancel := context.WithTimeout(ctx, time.Duration(e.cfg.LagSeconds*float64(time.Second))+time.Minute)
	defer cancel()
	// One worker per change a second keeps the rate even when a host
	// write takes a second; fewer would turn a slow apiserver into a lower
	// rate rather than into lag.
	workers := max(16, int(e.cfg.LagRate))
	cpuBefore := takeCPUSnapshot()
	defer func() { refl.CPU = takeCPUSnapshot().since(cpuBefore) }()
	refl.AchievedRate = paced(lctx, e.cfg.LagRate, changes, workers, func(ctx context.Context, i int) {
		// With more changes than pods, a pod changes again only after
		// every other pod has: its previous change has long arrived.
		if err := e.patchProbe(ctx, names[order[i%len(order)]], fmt.Sprintf("lag-%d", i)); err != nil {
			mu.Lock()
			refl.WriteErrors++
			mu.Unlock()
			return
		}
		rec.wrote(i, time.Now())
	})
	// Wait for the stragglers, bounded.
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return rec.seenCount() >= changes-refl.WriteErrors, nil
	})
	lags, lost := rec.lags()
	refl.Lost = lost
	refl.SamplesMs = millis(lags)
	refl.Lag = summarize(refl.SamplesMs)
	e.log.Info("Measured reflection lag", "changes", changes, "lost", lost, "writeErrors", refl.WriteErrors,
		"achievedRate", refl.AchievedRate, "p50Ms", refl.Lag.P50, "p99Ms", refl.Lag.P99)
	if refl.WriteErrors > 0 {
		return fmt.Errorf("reflection lag: %d of %d host status writes failed", refl.WriteErrors, changes)
	}
	return nil
}

// coldStart is scenario 6: the reflector restarted twice with every pod in
// place, first with nothing changed meanwhile, then with every host pod's
// status changed while it was down.
func (e *env) coldStart(ctx context.Context, w *podWatcher, names []string, cold *ColdStartResults) error {
	n := len(names)
	timeout := 5*time.Minute + time.Duration(n)*20*time.Millisecond

	// Their own profile names: the restarted reflector's first windows are
	// what the cold start spends.
	e.prof.scenario("6 cold start, nothing changed")
	e.log.Info("Restarting the reflector, nothing changed while it is down", "pods", n)
	if err := e.pb.restartReflector(ctx, nil); err != nil {
		return err
	}
	started := e.pb.reflector.Started()
	cold.UnchangedMetricsUpSeconds = time.Since(started).Seconds()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := e.pb.reflector.Exited(); err != nil {
			return false, err
		}
		f, err := e.pb.reflector.Scrape(ctx)
		if err != nil {
			return false, err
		}
		reconciled := f.Sum("controller_runtime_reconcile_total", map[string]string{"controller": "pods"})
		queued := f.Sum("workqueue_depth", map[string]string{"name": "pods"})
		return reconciled >= float64(n) && queued == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the restarted reflector to reconcile every pod: %w", err)
	}
	cold.UnchangedInSyncSeconds = time.Since(started).Seconds()
	e.log.Info("Restarted reflector reconciled every pod", "seconds", cold.UnchangedInSyncSeconds)

	e.prof.scenario("6 cold start, every status changed")
	e.log.Info("Restarting the reflector, every host pod's status changed while it is down", "pods", n)
	rec := newProbeRecorder("cold-", n)
	w.setOnProbe(rec.observe)
	defer w.setOnProbe(nil)
	concurrency := e.cfg.Concurrency[len(e.cfg.Concurrency)-1]
	err = e.pb.restartReflector(ctx, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		run := runConcurrently(cctx, n, concurrency, func(ctx context.Context, i int) error {
			return e.patchProbe(ctx, names[i], fmt.Sprintf("cold-%d", i))
		})
		if run.Errors > 0 {
			return fmt.Errorf("changing host status while the reflector is down: %d errors, first: %s", run.Errors, run.FirstError)
		}
		return nil
	})
	if err != nil {
		return err
	}
	started = e.pb.reflector.Started()
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return rec.seenCount() >= n, e.pb.reflector.Exited()
	})
	cold.ChangedInSyncSeconds = time.Since(started).Seconds()
	cold.ChangedLost = n - rec.seenCount()
	if err != nil {
		return fmt.Errorf("waiting for every virtual pod to show the change made while the reflector was down: %w", err)
	}
	s, err := sampleProc(e.pb.reflector.PID())
	if err != nil {
		return err
	}
	cold.PeakRSSMiB = mib(s.PeakRSS)
	e.log.Info("Restarted reflector brought every virtual pod in sync", "seconds", cold.ChangedInSyncSeconds)
	return nil
}
