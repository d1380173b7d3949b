package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/translate"
)

// createWay is one way of creating pods in scenario 1.
type createWay struct {
	name string
	// target receives the creates; alsoEmpty must be empty too before the
	// next series (the host namespace, for podbridge pods).
	target    nsRef
	alsoEmpty []nsRef
}

const noWebhookMethod = "same virtual apiserver with the webhook stopped and podbridge's MutatingWebhookConfiguration deleted for the series " +
	"(the apiserver then admits pods without calling podbridge); the webhook is started again afterwards and registers itself; " +
	"dry-run probes confirm each switch before the series starts"

// runCreate is scenarios 1 and 2: each way at each concurrency, the same
// pods, one series after the other on the same control planes.
func (e *env) runCreate(ctx context.Context) (CreateResults, AdmissionResults, error) {
	res := CreateResults{NoWebhookMethod: noWebhookMethod}
	adm := AdmissionResults{Source: "podbridge_webhook_admission_stage_seconds on the webhook's /metrics, delta over each measured podbridge series (warm-up excluded)"}
	ways := []createWay{
		{name: WayDirect, target: nsRef{e.host, nsDirect}},
		{name: WayNoWebhook, target: nsRef{e.virtual, nsNoWebhook}},
		{name: WayPodbridge, target: nsRef{e.virtual, nsCreate}, alsoEmpty: []nsRef{{e.host, hostNamespace}}},
	}
	for _, way := range ways {
		var restore func(context.Context) error
		if way.name == WayNoWebhook {
			var err error
			if restore, err = e.pb.suspendRegistration(ctx); err != nil {
				return res, adm, err
			}
		}
		for _, c := range e.cfg.Concurrency {
			series, stages, err := e.createSeries(ctx, way, c)
			res.Series = append(res.Series, series)
			adm.Series = append(adm.Series, stages...)
			if err != nil {
				if restore != nil {
					err = errors.Join(err, restore(ctx))
				}
				return res, adm, err
			}
		}
		if restore != nil {
			if err := restore(ctx); err != nil {
				return res, adm, err
			}
		}
	}
	for _, c := range e.cfg.Concurrency {
		direct, noWebhook, pb := findSeries(res.Series, WayDirect, c), findSeries(res.Series, WayNoWebhook, c), findSeries(res.Series, WayPodbridge, c)
		res.Ratios = append(res.Ratios, CreateRatio{
			Concurrency:   c,
			P50:           ratio(pb.Latency.P50, direct.Latency.P50),
			P99:           ratio(pb.Latency.P99, direct.Latency.P99),
			Throughput:    ratio(pb.PodsPerSecond, direct.PodsPerSecond),
			OverheadP50Ms: pb.Latency.P50 - noWebhook.Latency.P50,
			DirectP50Ms:   direct.Latency.P50,
		})
	}
	return res, adm, nil
}

func findSeries(all []CreateSeries, way string, concurrency int) CreateSeries {
	for _, s := range all {
		if s.Way == way && s.Concurrency == concurrency {
			return s
		}
	}
	return CreateSeries{}
}

// createSeries warms up, creates the measured pods, reads the webhook's
// stage histogram around them (podbridge only), and empties the namespaces.
func (e *env) createSeries(ctx context.Context, way createWay, concurrency int) (CreateSeries, []AdmissionStage, error) {
	log := e.log.WithValues("way", way.name, "concurrency", concurrency)
	pods := way.target.c.client.CoreV1().Pods(way.target.namespace)
	prefix := fmt.Sprintf("c%d", concurrency)
	n := e.cfg.CreatePods
	// At concurrency 1 the series is n round trips in a row: a generous
	// bound, as other work on the machine slows them.
	deadline := 2*time.Minute + time.Duration(n)*250*time.Millisecond
	sctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	warm := createPods(sctx, pods, podNames(prefix+"-warm", e.cfg.CreateWarmup), way.name, concurrency)
	if warm.Errors > 0 {
		return CreateSeries{Way: way.name, Concurrency: concurrency}, nil, fmt.Errorf("%s warm-up: %d errors, first: %s", way.name, warm.Errors, warm.FirstError)
	}
	var before admissionMetrics
	if way.name == WayPodbridge {
		var err error
		if before, err = e.scrapeAdmission(sctx); err != nil {
			return CreateSeries{}, nil, err
		}
	}
	requestsBefore, err := e.snapshot(sctx)
	if err != nil {
		return CreateSeries{Way: way.name, Concurrency: concurrency}, nil, err
	}
	// With -profile, both apiservers' CPU profiles cover the series at the
	// first concurrency (1 by default: the admission overhead's figure).
	stopProfiles := func(int) []APIServerProfile { return nil }
	if e.prof != nil && concurrency == e.cfg.Concurrency[0] {
		if stopProfiles, err = e.profileAPIServers(sctx, way.name, concurrency); err != nil {
			return CreateSeries{Way: way.name, Concurrency: concurrency}, nil, err
		}
	}
	log.Info("Creating pods", "pods", n)
	cpuBefore := takeCPUSnapshot()
	run := createPods(sctx, pods, podNames(prefix, n), way.name, concurrency)
	series := seriesOf(way.name, concurrency, n, run)
	series.CPU = takeCPUSnapshot().since(cpuBefore)
	// The profile window under way ends at most apiserverWindow later; the
	// request counts are read after it, so both cover the same stretch.
	series.APIServerProfiles = stopProfiles(series.Created)
	requestsAfter, err := e.snapshot(sctx)
	if err != nil {
		return series, nil, err
	}
	series.Requests = seriesRequests(way.name, concurrency, series.Created, requestsBefore, requestsAfter)
	log.Info("Created pods", "created", series.Created, "errors", series.Errors, "p50Ms", series.Latency.P50, "p99Ms", series.Latency.P99, "podsPerSecond", series.PodsPerSecond)

	var stages []AdmissionStage
	if way.name == WayPodbridge {
		after, err := e.scrapeAdmission(sctx)
		if err != nil {
			return series, nil, err
		}
		stages = admissionStages(before, after, concurrency)
	}
	// Failed creates are reported with the series, not a failure of the
	// harness: they are how the way behaves under this load.
	return series, stages, e.emptyNamespaces(ctx, e.cleanupTimeout(n), way.target, way.alsoEmpty...)
}

// seriesOf summarizes one batch of creates.
func seriesOf(way string, concurrency, requested int, run loadResult) CreateSeries {
	samples := millis(run.Latencies)
	return CreateSeries{
		Way:           way,
		Concurrency:   concurrency,
		Requested:     requested,
		Created:       len(run.Latencies),
		Errors:        run.Errors,
		FirstError:    run.FirstError,
		WallSeconds:   run.Wall.Seconds(),
		PodsPerSecond: ratio(float64(len(run.Latencies)), run.Wall.Seconds()),
		Latency:       summarize(samples),
		SamplesMs:     samples,
	}
}

// admissionMetrics are the webhook's and the virtual apiserver's metrics.
type admissionMetrics struct{ webhook, apiserver promscrape.Families }

func (e *env) scrapeAdmission(ctx context.Context) (admissionMetrics, error) {
	webhook, err := e.pb.webhook.Scrape(ctx)
	if err != nil {
		return admissionMetrics{}, err
	}
	apiserver, err := promscrape.ScrapeAPIServer(ctx, e.virtual.plane.Config)
	return admissionMetrics{webhook: webhook, apiserver: apiserver}, err
}

// The admission stages measured outside podbridge's own histogram.
const (
	stageWebhookWhole  = "webhook server, whole request"
	stageAPIServerCall = "virtual apiserver's call to the webhook"
)

// admissionStages are the webhook's stages between two scrapes, then the
// whole request as the webhook server timed it and as the virtual
// apiserver timed its call: the differences are the server's own handling
// (decoding, encoding) and the way there and back.
func admissionStages(before, after admissionMetrics, concurrency int) []AdmissionStage {
	type source struct {
		stage  string
		fams   func(admissionMetrics) promscrape.Families
		metric string
		labels map[string]string
	}
	webhook := func(m admissionMetrics) promscrape.Families { return m.webhook }
	apiserver := func(m admissionMetrics) promscrape.Families { return m.apiserver }
	var sources []source
	for _, stage := range []string{"translate", "dependencies", "host_create"} {
		sources = append(sources, source{stage, webhook, "podbridge_webhook_admission_stage_seconds", map[string]string{"stage": stage}})
	}
	sources = append(sources,
		source{stageWebhookWhole, webhook, "controller_runtime_webhook_latency_seconds", map[string]string{"webhook": translate.WebhookPath}},
		source{stageAPIServerCall, apiserver, "apiserver_admission_webhook_admission_duration_seconds",
			map[string]string{"name": "pods." + registrationName + ".podbridge.io", "operation": "CREATE", "rejected": "false", "type": "admit"}},
	)
	var out []AdmissionStage
	for _, src := range sources {
		stage := src.stage
		h := src.fams(after).Histogram(src.metric, src.labels).Minus(src.fams(before).Histogram(src.metric, src.labels))
		out = append(out, AdmissionStage{
			Concurrency: concurrency,
			Stage:       stage,
			Count:       int(h.Count),
			MeanMs:      ratio(h.Sum, h.Count) * 1000,
			P50Ms:       h.Quantile(0.5) * 1000,
			P99Ms:       h.Quantile(0.99) * 1000,
		})
	}
	return out
}
