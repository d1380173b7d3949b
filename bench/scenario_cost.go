package bench

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/testbed/promscrape"
)

// minimumRequests is what the design needs per pod through its life, by
// cluster, verb and resource: the floor podbridge's measured requests are
// compared with.
var minimumRequests = []RequestRow{
	{Cluster: "host", Verb: "POST", Resource: "pods", Minimum: 1, Why: "webhook: the host pod"},
	{Cluster: "host", Verb: "POST", Resource: "secrets", Minimum: 1, Why: "reflector: host Secret of the token bound to the virtual pod"},
	{Cluster: "host", Verb: "PUT", Resource: "pods", Minimum: 1, Why: "reflector: release the host pod once its token is bound"},
	{Cluster: "host", Verb: "DELETE", Resource: "pods", Minimum: 1, Why: "reflector: carry the tenant's delete"},
	{Cluster: "host", Verb: "DELETE", Resource: "secrets", Minimum: 1, Why: "reflector: remove the token Secret with its pod"},
	{Cluster: "virtual", Verb: "POST", Resource: "serviceaccounts/token", Minimum: 1, Why: "reflector: a token bound to the virtual pod"},
	{Cluster: "virtual", Verb: "POST", Resource: "pods/binding", Minimum: 1, Why: "reflector: bind to the mirrored node"},
	{Cluster: "virtual", Verb: "POST", Resource: "events.events.k8s.io", Minimum: 1, Why: "reflector: the Scheduled event issue 4 asks for (a scheduler emits one per pod too)"},
	{Cluster: "virtual", Verb: "PUT", Resource: "pods/status", Minimum: 1, Why: "reflector: Running and Ready in one write"},
	{Cluster: "virtual", Verb: "DELETE", Resource: "pods", Minimum: 1, Why: "reflector: remove the virtual pod once the host pod is gone"},
}

const requestsMethod = "apiserver_request_total deltas on both apiservers over the podbridge lifecycle phase " +
	"(create at the highest concurrency → all Ready → delete → both sides empty) minus the bench's own requests " +
	"(counted client-side with the apiserver's labels). Where the host's own components make the same verb on the " +
	"same resource (measured in the same lifecycle run directly on the host: kwok's DELETE pods), podbridge's share is " +
	"its own rest_client_requests_total for that cluster and HTTP method minus its other resources' counts. WATCH not shown"

// snapshot is the state of every counter the cost scenario differences.
type snapshot struct {
	hostAPI, virtualAPI     requestCounts
	hostBench, virtualBench requestCounts
}

func (e *env) snapshot(ctx context.Context) (snapshot, error) {
	hostFams, err := promscrape.ScrapeAPIServer(ctx, e.host.plane.Config)
	if err != nil {
		return snapshot{}, err
	}
	virtualFams, err := promscrape.ScrapeAPIServer(ctx, e.virtual.plane.Config)
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{
		hostAPI: apiserverRequests(hostFams), virtualAPI: apiserverRequests(virtualFams),
		hostBench: e.host.counter.snapshot(), virtualBench: e.virtual.counter.snapshot(),
	}, nil
}

// others are the requests between two snapshots that the bench did not make.
func others(before, after snapshot) (host, virtual requestCounts) {
	host = after.hostAPI.minus(before.hostAPI).minus(after.hostBench.minus(before.hostBench))
	virtual = after.virtualAPI.minus(before.virtualAPI).minus(after.virtualBench.minus(before.virtualBench))
	return host, virtual
}

// runCost is scenario 5: the same lifecycle of CostPods pods directly on
// the host, then through podbridge.
func (e *env) runCost(ctx context.Context) (CostResults, error) {
	n := e.cfg.CostPods
	res := CostResults{Pods: n, RequestsMethod: requestsMethod}
	concurrency := e.cfg.Concurrency[len(e.cfg.Concurrency)-1]
	timeout := e.cleanupTimeout(n) + time.Duration(n)*50*time.Millisecond

	// The baseline: the host's own components on the same lifecycle.
	e.log.Info("Running the pod lifecycle directly on the host", "pods", n)
	baseBefore, baseAfter, err := e.lifecycle(ctx, nsRef{e.host, nsCostDirect}, nil, n, concurrency, timeout)
	if err != nil {
		return res, err
	}
	baseHost, baseVirtual := others(baseBefore, baseAfter)

	e.log.Info("Running the pod lifecycle through podbridge", "pods", n)
	procs := map[string]*podbridgeproc.Process{"webhook": e.pb.webhook, "reflector": e.pb.reflector}
	startCost := map[string]procSample{}
	for name, p := range procs {
		if err := resetPeakRSS(p.PID()); err != nil {
			return res, err
		}
		s, err := sampleProc(p.PID())
		if err != nil {
			return res, err
		}
		startCost[name] = s
	}
	webhookBefore, err := e.pb.webhook.Scrape(ctx)
	if err != nil {
		return res, err
	}
	reflectorBefore, err := e.pb.reflector.Scrape(ctx)
	if err != nil {
		return res, err
	}
	before, after, err := e.lifecycle(ctx, nsRef{e.virtual, nsCost}, []nsRef{{e.host, hostNamespace}}, n, concurrency, timeout)
	if err != nil {
		return res, err
	}
	for name, p := range procs {
		s, err := sampleProc(p.PID())
		if err != nil {
			return res, err
		}
		cost := ProcessCost{
			CPUSeconds: (s.CPU - startCost[name].CPU).Seconds(),
			PeakRSSMiB: mib(s.PeakRSS),
		}
		cost.CPUSecondsPer1000 = cost.CPUSeconds * 1000 / float64(n)
		if name == "webhook" {
			res.Webhook = cost
		} else {
			res.Reflector = cost
		}
	}
	res.WebhookPeakRSSMiBAtCost = res.Webhook.PeakRSSMiB
	webhookAfter, err := e.pb.webhook.Scrape(ctx)
	if err != nil {
		return res, err
	}
	reflectorAfter, err := e.pb.reflector.Scrape(ctx)
	if err != nil {
		return res, err
	}

	clientCounts := e.clientRequests(map[string][2]promscrape.Families{
		"webhook":   {webhookBefore, webhookAfter},
		"reflector": {reflectorBefore, reflectorAfter},
	})
	res.ClientPerPod = map[string]float64{}
	clientTotals := map[string]float64{} // by "cluster METHOD"
	for key, v := range clientCounts {
		res.ClientPerPod[key] = round2(v / float64(n))
		_, clusterMethod, _ := strings.Cut(key, " ")
		clientTotals[clusterMethod] += v
	}
	pbHost, pbVirtual := others(before, after)
	res.Requests = requestRows(map[string]requestCounts{
		"host":    attribute(pbHost, baseHost, clientTotals, "host"),
		"virtual": attribute(pbVirtual, baseVirtual, clientTotals, "virtual"),
	}, n)
	for _, r := range res.Requests {
		res.PerPod += r.PerPod
		res.MinimumPerPod += r.Minimum
	}
	res.ReflectorActionsPerPod = map[string]float64{}
	actionsBefore := reflectorBefore.SumBy("podbridge_reflector_actions_total", "action")
	for action, v := range reflectorAfter.SumBy("podbridge_reflector_actions_total", "action") {
		if perPod := round2((v - actionsBefore[action]) / float64(n)); perPod > 0 {
			res.ReflectorActionsPerPod[action] = perPod
		}
	}
	return res, nil
}

// lifecycle creates n pods in target, waits until all are Ready, deletes
// them and waits until target and alsoEmpty are empty, with a snapshot of
// the request counters on either side.
func (e *env) lifecycle(ctx context.Context, target nsRef, alsoEmpty []nsRef, n, concurrency int, timeout time.Duration) (before, after snapshot, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w, err := watchPods(ctx, target.c, target.namespace, nil)
	if err != nil {
		return before, after, err
	}
	defer w.stop()
	if before, err = e.snapshot(ctx); err != nil {
		return before, after, err
	}
	run := createPods(ctx, target.c.client.CoreV1().Pods(target.namespace), podNames("life", n), "cost", concurrency)
	if run.Errors > 0 {
		return before, after, fmt.Errorf("lifecycle in %s %s: %d creates failed, first: %s", target.c.name, target.namespace, run.Errors, run.FirstError)
	}
	err = w.waitUntil(ctx, timeout, fmt.Sprintf("%d Ready pods in %s %s", n, target.c.name, target.namespace), e.checkAlive,
		func(_, ready int) bool { return ready >= n })
	if err != nil {
		return before, after, err
	}
	if err := e.emptyNamespaces(ctx, timeout, target, alsoEmpty...); err != nil {
		return before, after, err
	}
	after, err = e.snapshot(ctx)
	return before, after, err
}

// requestRows turns podbridge's requests by cluster into per-pod rows,
// next to the minimum. Negative remainders (noise in the baseline) and
// WATCH are left out.
func requestRows(byCluster map[string]requestCounts, pods int) []RequestRow {
	var rows []RequestRow
	seen := map[string]bool{}
	for _, clusterName := range []string{"host", "virtual"} {
		counts := byCluster[clusterName]
		for _, key := range counts.sortedKeys() {
			perPod := round2(counts[key] / float64(pods))
			if key.Verb == "WATCH" || perPod <= 0 {
				continue
			}
			row := RequestRow{Cluster: clusterName, Verb: key.Verb, Resource: key.Resource, PerPod: perPod}
			for _, m := range minimumRequests {
				if m.Cluster == clusterName && m.Verb == key.Verb && m.Resource == key.Resource {
					row.Minimum, row.Why = m.Minimum, m.Why
				}
			}
			seen[clusterName+key.Verb+key.Resource] = true
			rows = append(rows, row)
		}
	}
	for _, m := range minimumRequests {
		if !seen[m.Cluster+m.Verb+m.Resource] {
			rows = append(rows, m) // needed, but not made: measured 0.
		}
	}
	return rows
}

// clientRequests is podbridge's own rest_client_requests_total between two
// scrapes, by "process cluster METHOD".
func (e *env) clientRequests(scrapes map[string][2]promscrape.Families) map[string]float64 {
	clusterOf := map[string]string{}
	for _, c := range []*cluster{e.host, e.virtual} {
		if u, err := url.Parse(c.plane.Config.Host); err == nil {
			clusterOf[u.Host] = c.name
		}
	}
	out := map[string]float64{}
	for process, s := range scrapes {
		before := s[0].SumBy("rest_client_requests_total", "host", "method")
		for key, v := range s[1].SumBy("rest_client_requests_total", "host", "method") {
			host, method, _ := strings.Cut(key, " ")
			if d := v - before[key]; d > 0 && clusterOf[host] != "" {
				out[process+" "+clusterOf[host]+" "+method] += d
			}
		}
	}
	return out
}

// httpMethod is the HTTP method of an apiserver verb label.
func httpMethod(verb string) string {
	switch verb {
	case "LIST", "WATCH":
		return "GET"
	case "APPLY":
		return "PATCH"
	}
	return verb
}

// attribute is podbridge's requests to one cluster by verb and resource.
// observed are the apiserver's counts of the podbridge phase without the
// bench's own; baseline those of the same lifecycle without podbridge.
// A verb and resource the baseline has none of is podbridge's alone. One
// the other components use too gets what podbridge's own client counted
// for that HTTP method, less its other resources: exact where a
// difference of two phases would carry their noise (kwok deletes a burst
// of pods with retries, a trickle without).
func attribute(observed, baseline requestCounts, clientTotals map[string]float64, clusterName string) requestCounts {
	out := requestCounts{}
	shared := map[string][]requestKey{} // by HTTP method
	exclusive := map[string]float64{}
	for key, v := range observed {
		if baseline[key] > 0 {
			shared[httpMethod(key.Verb)] = append(shared[httpMethod(key.Verb)], key)
			continue
		}
		out[key] = v
		exclusive[httpMethod(key.Verb)] += v
	}
	for method, keys := range shared {
		remainder := max(0, clientTotals[clusterName+" "+method]-exclusive[method])
		// Split between shared resources by their difference of phases.
		weights, total := make([]float64, len(keys)), 0.0
		for i, k := range keys {
			weights[i] = max(0, observed[k]-baseline[k])
			total += weights[i]
		}
		for i, k := range keys {
			if total == 0 {
				out[k] = remainder / float64(len(keys))
			} else {
				out[k] = remainder * weights[i] / total
			}
		}
	}
	return out
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
