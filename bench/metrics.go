package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// families are the metric families of one scrape, by name.
type families map[string]*dto.MetricFamily

func parseMetrics(text []byte) (families, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// scrapeURL reads a Prometheus text endpoint (podbridge's metrics server).
func scrapeURL(ctx context.Context, endpoint string) (families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", endpoint, resp.Status)
	}
	return parseMetrics(body)
}

// scrapeAPIServer reads an apiserver's /metrics with the admin client.
func scrapeAPIServer(ctx context.Context, cs kubernetes.Interface) (families, error) {
	body, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").SetHeader("Accept", "text/plain").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping apiserver metrics: %w", err)
	}
	return parseMetrics(body)
}

// matches reports whether m carries every label in want.
func matches(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(want)
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// sum adds the counters or gauges of family name whose labels match want.
func (f families) sum(name string, want map[string]string) float64 {
	total := 0.0
	for _, m := range f[name].GetMetric() {
		if matches(m, want) {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return total
}

// byLabels adds the counters of family name by the values of labels.
func (f families) byLabels(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f[name].GetMetric() {
		parts := make([]string, len(labels))
		for i, l := range labels {
			parts[i] = label(m, l)
		}
		out[strings.Join(parts, " ")] += m.GetCounter().GetValue()
	}
	return out
}

// histogramSnapshot is one histogram series' cumulative state.
type histogramSnapshot struct {
	Buckets []bucket
	Count   float64
	Sum     float64
}

// histogram returns the histogram of family name whose labels match want.
func (f families) histogram(name string, want map[string]string) histogramSnapshot {
	for _, m := range f[name].GetMetric() {
		if !matches(m, want) || m.GetHistogram() == nil {
			continue
		}
		h := m.GetHistogram()
		s := histogramSnapshot{Count: float64(h.GetSampleCount()), Sum: h.GetSampleSum()}
		for _, b := range h.GetBucket() {
			s.Buckets = append(s.Buckets, bucket{UpperBound: b.GetUpperBound(), Count: float64(b.GetCumulativeCount())})
		}
		if n := len(s.Buckets); n == 0 || !math.IsInf(s.Buckets[n-1].UpperBound, 1) {
			s.Buckets = append(s.Buckets, bucket{UpperBound: math.Inf(1), Count: s.Count})
		}
		return s
	}
	return histogramSnapshot{}
}

// minus is the histogram of the observations made between earlier and h.
func (h histogramSnapshot) minus(earlier histogramSnapshot) histogramSnapshot {
	out := histogramSnapshot{Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum}
	for i, b := range h.Buckets {
		if i < len(earlier.Buckets) {
			b.Count -= earlier.Buckets[i].Count
		}
		out.Buckets = append(out.Buckets, b)
	}
	return out
}

// requestKey names apiserver requests the way apiserver_request_total
// labels them: verb, and resource qualified by group and subresource
// ("pods", "pods/binding", "events.events.k8s.io").
type requestKey struct {
	Verb     string
	Resource string
}

func resourceName(group, resource, subresource string) string {
	name := resource
	if group != "" {
		name += "." + group
	}
	if subresource != "" {
		name += "/" + subresource
	}
	return name
}

// requestCounts are requests by key.
type requestCounts map[requestKey]float64

// apiserverRequests reads apiserver_request_total by verb and resource,
// summed over response codes; non-resource requests (/metrics) are left out.
func apiserverRequests(f families) requestCounts {
	out := requestCounts{}
	for _, m := range f["apiserver_request_total"].GetMetric() {
		if label(m, "resource") == "" {
			continue
		}
		key := requestKey{Verb: label(m, "verb"), Resource: resourceName(label(m, "group"), label(m, "resource"), label(m, "subresource"))}
		out[key] += m.GetCounter().GetValue()
	}
	return out
}

// minus returns c − other, key by key.
func (c requestCounts) minus(other requestCounts) requestCounts {
	out := requestCounts{}
	for k, v := range c {
		out[k] = v
	}
	for k, v := range other {
		out[k] -= v
	}
	return out
}

// sortedKeys orders keys by resource, then verb, for stable reports.
func (c requestCounts) sortedKeys() []requestKey {
	keys := make([]requestKey, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestKey) int {
		if r := strings.Compare(a.Resource, b.Resource); r != 0 {
			return r
		}
		return strings.Compare(a.Verb, b.Verb)
	})
	return keys
}

// requestCounter counts the bench's own requests to one apiserver with the
// apiserver's labels, so they can be taken out of apiserver_request_total
// deltas and what is left is attributable to podbridge.
type requestCounter struct {
	mu     sync.Mutex
	counts requestCounts
	next   http.RoundTripper
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	c.next = rt
	return c
}

// RoundTrip implements http.RoundTripper.
func (c *requestCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if key, ok := classifyRequest(req.Method, req.URL, req.Header.Get("Content-Type")); ok {
		c.mu.Lock()
		if c.counts == nil {
			c.counts = requestCounts{}
		}
		c.counts[key]++
		c.mu.Unlock()
	}
	return c.next.RoundTrip(req)
}

// snapshot returns a copy of the counts so far.
func (c *requestCounter) snapshot() requestCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := requestCounts{}
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// classifyRequest maps a request to the apiserver's verb and resource
// labels (see k8s.io/apiserver/pkg/endpoints/metrics.CleanVerb): GET of a
// collection is LIST, with watch=true WATCH, an apply PATCH is APPLY.
// Non-resource requests report false.
func classifyRequest(method string, u *url.URL, contentType string) (requestKey, bool) {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	var group string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		group, parts = parts[1], parts[3:]
	default:
		return requestKey{}, false
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:] // namespaced: resource/name/subresource follow.
	}
	resource, name, subresource := parts[0], "", ""
	if len(parts) > 1 {
		name = parts[1]
	}
	if len(parts) > 2 {
		subresource = parts[2]
	}
	verb := strings.ToUpper(method)
	switch {
	case verb == http.MethodGet && (u.Query().Get("watch") == "true" || u.Query().Get("watch") == "1"):
		verb = "WATCH"
	case verb == http.MethodGet && name == "":
		verb = "LIST"
	case verb == http.MethodPatch && contentType == string(types.ApplyPatchType):
		verb = "APPLY"
	}
	return requestKey{Verb: verb, Resource: resourceName(group, resource, subresource)}, true
}
