// Package promscrape reads Prometheus text metrics, from a component's
// /metrics endpoint or a kube-apiserver's, for the benchmark and the
// tests: its one concern is answering what they ask of a scrape, a counter
// or gauge summed over the series that match some labels or grouped by
// label, and a histogram with its quantiles.
package promscrape

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Parse reads the Prometheus text format.
func Parse(r io.Reader) (Families, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// scrapeTimeout bounds one scrape whatever the caller's context.
const scrapeTimeout = 30 * time.Second

// Scrape reads url with c (http.DefaultClient if nil).
func Scrape(ctx context.Context, c *http.Client, url string) (Families, error) {
	if c == nil {
		c = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// The text format, not protobuf or OpenMetrics.
	req.Header.Set("Accept", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	fams, err := Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return fams, nil
}

// ScrapeAPIServer reads the /metrics of the apiserver cfg reaches, with
// cfg's credentials (an administrator's: /metrics needs them).
func ScrapeAPIServer(ctx context.Context, cfg *rest.Config) (Families, error) {
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("scraping the apiserver at %s: %w", cfg.Host, err)
	}
	return Scrape(ctx, c, strings.TrimSuffix(cfg.Host, "/")+"/metrics")
}

// Sum adds the counters, gauges and untyped values of family name over the
// series carrying every label in labels (nil: all series). A family not
// exported yet sums to 0.
func (f Families) Sum(name string, labels map[string]string) float64 {
	total := 0.0
	for _, m := range f[name].GetMetric() {
		if matches(m, labels) {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return total
}

// SumBy adds the counters and gauges of family name by the values of
// labels, joined by a space in the key ("POST pods" for verb, resource).
func (f Families) SumBy(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f[name].GetMetric() {
		values := make([]string, len(labels))
		for i, l := range labels {
			values[i] = Label(m, l)
		}
		out[strings.Join(values, " ")] += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
	}
	return out
}

// Label is the value of m's label name, "" if it has none.
func Label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
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

// Bucket is a cumulative histogram bucket: Count observations ≤ UpperBound.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Histogram is one histogram series' cumulative state.
type Histogram struct {
	// Buckets are sorted by bound; the last is +Inf.
	Buckets []Bucket
	Count   float64
	Sum     float64
}

// Histogram returns the first histogram series of family name carrying
// every label in labels, or an empty one.
func (f Families) Histogram(name string, labels map[string]string) Histogram {
	for _, m := range f[name].GetMetric() {
		h := m.GetHistogram()
		if h == nil || !matches(m, labels) {
			continue
		}
		out := Histogram{Count: float64(h.GetSampleCount()), Sum: h.GetSampleSum()}
		for _, b := range h.GetBucket() {
			out.Buckets = append(out.Buckets, Bucket{UpperBound: b.GetUpperBound(), Count: float64(b.GetCumulativeCount())})
		}
		if n := len(out.Buckets); n == 0 || !math.IsInf(out.Buckets[n-1].UpperBound, 1) {
			out.Buckets = append(out.Buckets, Bucket{UpperBound: math.Inf(1), Count: out.Count})
		}
		return out
	}
	return Histogram{}
}

// Minus is the histogram of the observations made between earlier and h,
// two scrapes of the same series.
func (h Histogram) Minus(earlier Histogram) Histogram {
	out := Histogram{Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum}
	for i, b := range h.Buckets {
		if i < len(earlier.Buckets) {
			b.Count -= earlier.Buckets[i].Count
		}
		out.Buckets = append(out.Buckets, b)
	}
	return out
}

// Quantile estimates quantile q (0–1), interpolating linearly within the
// bucket that holds it, like Prometheus' histogram_quantile. Observations
// above the last finite bound are reported at that bound; an empty
// histogram gives 0.
func (h Histogram) Quantile(q float64) float64 {
	if len(h.Buckets) == 0 {
		return 0
	}
	total := h.Buckets[len(h.Buckets)-1].Count
	if total == 0 {
		return 0
	}
	rank := q * total
	lowerBound, lowerCount := 0.0, 0.0
	for _, b := range h.Buckets {
		if b.Count >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lowerBound
			}
			if b.Count == lowerCount {
				return b.UpperBound
			}
			return lowerBound + (b.UpperBound-lowerBound)*(rank-lowerCount)/(b.Count-lowerCount)
		}
		lowerBound, lowerCount = b.UpperBound, b.Count
	}
	return lowerBound
}
