package promscrape

import (
	"context"
	"encoding/pem"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

const exposition = `# HELP actions_total Actions taken.
# TYPE actions_total counter
actions_total{action="create",result="ok"} 3
actions_total{action="create",result="error"} 1
actions_total{action="delete",result="ok"} 5
# HELP depth Queue depth.
# TYPE depth gauge
depth{name="pods"} 2
depth{name="nodes"} 7
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{stage="a",le="1"} 10
latency_seconds_bucket{stage="a",le="2"} 30
latency_seconds_bucket{stage="a",le="4"} 40
latency_seconds_bucket{stage="a",le="+Inf"} 40
latency_seconds_sum{stage="a"} 70
latency_seconds_count{stage="a"} 40
latency_seconds_bucket{stage="b",le="1"} 1
latency_seconds_bucket{stage="b",le="+Inf"} 2
latency_seconds_sum{stage="b"} 3
latency_seconds_count{stage="b"} 2
`

// parse parses exposition.
func parse(t *testing.T) Families {
	t.Helper()
	f, err := Parse(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSum(t *testing.T) {
	f := parse(t)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"actions_total", nil, 9},
		{"actions_total", map[string]string{"action": "create"}, 4},
		{"actions_total", map[string]string{"action": "create", "result": "ok"}, 3},
		{"actions_total", map[string]string{"action": "evict"}, 0},
		// A label no series carries matches none.
		{"actions_total", map[string]string{"controller": "pods"}, 0},
		{"depth", map[string]string{"name": "pods"}, 2},
		{"not_exported_yet", nil, 0},
	} {
		if got := f.Sum(tc.name, tc.labels); got != tc.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestSumBy(t *testing.T) {
	f := parse(t)
	if got, want := f.SumBy("actions_total", "action"), map[string]float64{"create": 4, "delete": 5}; !reflect.DeepEqual(got, want) {
		t.Errorf("SumBy(action) = %v, want %v", got, want)
	}
	want := map[string]float64{"create ok": 3, "create error": 1, "delete ok": 5}
	if got := f.SumBy("actions_total", "action", "result"); !reflect.DeepEqual(got, want) {
		t.Errorf("SumBy(action, result) = %v, want %v", got, want)
	}
	if got := f.SumBy("not_exported_yet", "action"); len(got) != 0 {
		t.Errorf("SumBy of a missing family = %v, want empty", got)
	}
}

func TestHistogram(t *testing.T) {
	f := parse(t)
	h := f.Histogram("latency_seconds", map[string]string{"stage": "a"})
	want := Histogram{Buckets: []Bucket{{1, 10}, {2, 30}, {4, 40}, {math.Inf(1), 40}}, Count: 40, Sum: 70}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("Histogram(stage=a) = %+v, want %+v", h, want)
	}
	for _, tc := range []struct{ q, want float64 }{
		{0.5, 1.5}, // rank 20 of 40: halfway through the (1, 2] bucket.
		{0.25, 1},
		{1, 4},
	} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	// Observations above the last finite bound are reported at it.
	if got := f.Histogram("latency_seconds", map[string]string{"stage": "b"}).Quantile(0.99); got != 1 {
		t.Errorf("p99 of stage b = %v, want 1 (the last finite bound)", got)
	}
	if got := f.Histogram("latency_seconds", map[string]string{"stage": "c"}); !reflect.DeepEqual(got, Histogram{}) || got.Quantile(0.5) != 0 {
		t.Errorf("Histogram of a missing series = %+v", got)
	}
	if got := f.Histogram("actions_total", nil); !reflect.DeepEqual(got, Histogram{}) {
		t.Errorf("Histogram of a counter = %+v, want empty", got)
	}
}

// A histogram exported without a +Inf bucket gets one, so quantiles and
// differences see every observation.
func TestHistogramAddsInf(t *testing.T) {
	f := Families{"h": parse(t)["latency_seconds"]}
	f["h"].Metric[1].Histogram.Bucket = f["h"].Metric[1].Histogram.Bucket[:1] // stage b, without +Inf.
	h := f.Histogram("h", map[string]string{"stage": "b"})
	if want := []Bucket{{1, 1}, {math.Inf(1), 2}}; !reflect.DeepEqual(h.Buckets, want) {
		t.Errorf("buckets %v, want %v", h.Buckets, want)
	}
}

func TestHistogramMinus(t *testing.T) {
	earlier := Histogram{Buckets: []Bucket{{1, 4}, {2, 10}, {math.Inf(1), 10}}, Count: 10, Sum: 12}
	later := Histogram{Buckets: []Bucket{{1, 14}, {2, 40}, {math.Inf(1), 50}}, Count: 50, Sum: 80}
	want := Histogram{Buckets: []Bucket{{1, 10}, {2, 30}, {math.Inf(1), 40}}, Count: 40, Sum: 68}
	if got := later.Minus(earlier); !reflect.DeepEqual(got, want) {
		t.Errorf("Minus = %+v, want %+v", got, want)
	}
	// Before the first observation the series does not exist yet.
	if got := later.Minus(Histogram{}); !reflect.DeepEqual(got, later) {
		t.Errorf("Minus(empty) = %+v, want %+v", got, later)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := Parse(strings.NewReader("actions_total{action=\"create\" 3\n")); err == nil {
		t.Error("Parse accepted a malformed line")
	}
}

func TestScrape(t *testing.T) {
	var accept atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept.Store(r.Header.Get("Accept"))
		switch r.URL.Path {
		case "/metrics":
			_, _ = w.Write([]byte(exposition))
		case "/garbage":
			_, _ = w.Write([]byte("{not metrics}\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	f, err := Scrape(ctx, nil, srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Sum("actions_total", map[string]string{"action": "delete"}); got != 5 {
		t.Errorf("scraped actions_total{action=delete} = %v, want 5", got)
	}
	if got := accept.Load(); got != "text/plain" {
		t.Errorf("Accept: %v, want text/plain (the format Parse reads)", got)
	}
	if _, err := Scrape(ctx, nil, srv.URL+"/nothing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Scrape of a 404: %v, want the status", err)
	}
	if _, err := Scrape(ctx, nil, srv.URL+"/garbage"); err == nil || !strings.Contains(err.Error(), "parsing metrics") {
		t.Errorf("Scrape of garbage: %v, want a parse error", err)
	}
}

// ScrapeAPIServer authenticates as the rest.Config says and trusts its CA.
func TestScrapeAPIServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || r.Header.Get("Authorization") != "Bearer admin-token" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(exposition))
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cfg := &rest.Config{Host: srv.URL + "/", BearerToken: "admin-token", TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	f, err := ScrapeAPIServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Sum("depth", nil); got != 9 {
		t.Errorf("depth = %v, want 9", got)
	}
	cfg.BearerToken = "tenant-token"
	if _, err := ScrapeAPIServer(ctx, cfg); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("ScrapeAPIServer without the admin's token: %v, want 403", err)
	}
}
