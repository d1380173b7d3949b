package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/testbed/controlplane"
)

// TestBenchTiny runs the whole benchmark at tiny sizes so the harness
// never rots. It checks the harness, not podbridge's targets.
func TestBenchTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes and podbridge")
	}
	assets, err := controlplane.DefaultAssets()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := assets.Path("kube-apiserver"); err != nil {
		t.Skipf("control-plane binaries missing (run `make k8s-bins`): %v", err)
	}
	// envtest logs through controller-runtime's logger.
	ctrllog.SetLogger(testr.New(t))
	out := t.TempDir()
	var report bytes.Buffer
	cfg := Config{
		Sizes:           TinySizes(),
		OutDir:          out,
		PodbridgeBinary: filepath.Join(t.TempDir(), "podbridge"),
		Assets:          assets,
		Timeout:         8 * time.Minute,
		Log:             testr.New(t),
		Report:          &report,
		ProfileDir:      t.TempDir(),
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run failed: %v\nlogs: %s", err, filepath.Join(out, "run", "logs"))
	}
	s := cfg.Sizes

	t.Run("every created pod is counted", func(t *testing.T) {
		if got, want := len(res.Create.Series), 3*len(s.Concurrency); got != want {
			t.Fatalf("create series: got %d, want %d", got, want)
		}
		for _, ser := range res.Create.Series {
			if ser.Created != s.CreatePods || ser.Errors != 0 || len(ser.SamplesMs) != s.CreatePods || ser.Latency.Count != s.CreatePods {
				t.Errorf("%s at %d: created %d, errors %d (%s), samples %d, want %d each",
					ser.Way, ser.Concurrency, ser.Created, ser.Errors, ser.FirstError, len(ser.SamplesMs), s.CreatePods)
			}
			if ser.Latency.P50 <= 0 || ser.Latency.P50 > ser.Latency.P99 || ser.Latency.P99 > ser.Latency.Max || ser.PodsPerSecond <= 0 {
				t.Errorf("%s at %d: implausible summary %+v, %.1f pods/s", ser.Way, ser.Concurrency, ser.Latency, ser.PodsPerSecond)
			}
		}
		// The webhook, and the apiserver's calls to it, saw exactly the
		// measured podbridge creates; each layer takes at least as long as
		// the one it wraps.
		for _, st := range res.Admission.Series {
			if st.Count != s.CreatePods {
				t.Errorf("%s observations at concurrency %d: got %d, want %d", st.Stage, st.Concurrency, st.Count, s.CreatePods)
			}
		}
		for _, c := range s.Concurrency {
			var means []float64
			for _, st := range res.Admission.Series {
				if st.Concurrency == c && st.Stage != "translate" && st.Stage != "dependencies" {
					means = append(means, st.MeanMs)
				}
			}
			if len(means) != 3 || means[0] > means[1] || means[1] > means[2] {
				t.Errorf("at concurrency %d, host create ≤ webhook request ≤ apiserver call does not hold: %v", c, means)
			}
		}
	})

	t.Run("apiserver requests and profiles per series", func(t *testing.T) {
		for _, ser := range res.Create.Series {
			if len(ser.Requests) != 2 {
				t.Fatalf("%s at %d: requests of %d apiservers, want 2", ser.Way, ser.Concurrency, len(ser.Requests))
			}
			for _, r := range ser.Requests {
				// The webhook makes one host pod per created pod; the bench's
				// own creates are taken out everywhere.
				want := 0.0
				if ser.Way == WayPodbridge && r.Cluster == "host" {
					want = 1
				}
				if got := r.PerPod["POST pods"]; math.Abs(got-want) > 0.05 {
					t.Errorf("%s at %d, %s: POST pods per pod %.2f, want %.0f (%v)", ser.Way, ser.Concurrency, r.Cluster, got, want, r.PerPod)
				}
			}
			profiled := ser.Concurrency == s.Concurrency[0]
			if got := len(ser.APIServerProfiles); profiled != (got == 2) || !profiled && got != 0 {
				t.Fatalf("%s at %d: %d apiserver profiles", ser.Way, ser.Concurrency, got)
			}
			for _, pr := range ser.APIServerProfiles {
				if pr.Windows == 0 || len(pr.Files) != pr.Windows {
					t.Errorf("%s at %d, %s: %d windows, files %v", ser.Way, ser.Concurrency, pr.Cluster, pr.Windows, pr.Files)
				}
				for _, f := range pr.Files {
					if _, err := os.Stat(filepath.Join(cfg.ProfileDir, f)); err != nil {
						t.Error(err)
					}
				}
			}
		}
		// The apiserver podbridge's series loads most: the host one, which
		// receives the webhook's creates, must have sampled CPU.
		pb := findSeries(res.Create.Series, WayPodbridge, s.Concurrency[0])
		for _, pr := range pb.APIServerProfiles {
			if pr.CPUMsPerPod <= 0 || len(pr.Top) == 0 || len(pr.Categories) == 0 {
				t.Errorf("podbridge series, %s apiserver: no CPU sampled: %+v", pr.Cluster, pr)
			}
		}
	})

	t.Run("every scenario has figures", func(t *testing.T) {
		d := res.Deployment
		if d.Host.ReadySeconds <= 0 || d.Virtual.ReadySeconds <= 0 || d.Host.AllCreatedSeconds > d.Host.ReadySeconds {
			t.Errorf("deployment: %+v", d)
		}
		r := res.Reflection
		if r.Changes != int(s.LagRate*s.LagSeconds) || r.Lost != 0 || r.Lag.Count != r.Changes || r.Create.Created != s.ScalePods {
			t.Errorf("reflection: %d changes, %d lost, %d lags, %d pods created", r.Changes, r.Lost, r.Lag.Count, r.Create.Created)
		}
		c := res.Cost
		if c.Webhook.CPUSeconds <= 0 || c.Reflector.CPUSeconds <= 0 || c.Webhook.PeakRSSMiB <= 0 || c.Reflector.PeakRSSMiB <= 0 {
			t.Errorf("process cost: %+v %+v", c.Webhook, c.Reflector)
		}
		// The webhook creates exactly one host pod per pod: the attribution
		// of apiserver requests must find exactly that.
		found := false
		for _, row := range c.Requests {
			if row.Cluster == "host" && row.Verb == "POST" && row.Resource == "pods" {
				found = true
				if math.Abs(row.PerPod-1) > 0.05 {
					t.Errorf("host pod creates per pod: got %.2f, want 1", row.PerPod)
				}
			}
		}
		if !found || c.MinimumPerPod != float64(len(minimumRequests)) {
			t.Errorf("request rows: %+v (minimum %.0f)", c.Requests, c.MinimumPerPod)
		}
		cs := res.ColdStart
		if cs.UnchangedInSyncSeconds <= 0 || cs.ChangedInSyncSeconds <= 0 || cs.ChangedLost != 0 {
			t.Errorf("cold start: %+v", cs)
		}
		if len(res.Targets) != 9 {
			t.Errorf("targets: got %d, want 9", len(res.Targets))
		}
	})

	t.Run("no orphans after churn", func(t *testing.T) {
		ch := res.Churn
		if ch.Pods != s.ChurnPods || ch.CreateErrors+ch.DeleteErrors != 0 || ch.HostPodsLeft != 0 || ch.VirtualPodsLeft != 0 {
			t.Errorf("churn: %+v", ch)
		}
	})

	t.Run("outputs", func(t *testing.T) {
		md, err := os.ReadFile(filepath.Join(out, ResultsMarkdown))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(md, report.Bytes()) {
			t.Error("results.md differs from the report printed")
		}
		for _, heading := range []string{"## Targets", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7."} {
			if !strings.Contains(string(md), "\n"+heading) {
				t.Errorf("report misses %q", heading)
			}
		}
		data, err := os.ReadFile(filepath.Join(out, ResultsJSON))
		if err != nil {
			t.Fatal(err)
		}
		var parsed Results
		if err := json.Unmarshal(data, &parsed); err != nil {
			t.Fatalf("results.json: %v", err)
		}
		if len(parsed.Create.Series) != len(res.Create.Series) || parsed.Churn.Pods != s.ChurnPods || len(parsed.Targets) != len(res.Targets) {
			t.Error("results.json does not hold the run's figures")
		}
		png, err := os.ReadFile(filepath.Join(out, LatencyPlot))
		if err != nil {
			t.Fatal(err)
		}
		if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s: %d bytes, not a PNG plot", LatencyPlot, len(png))
		}
	})
}

func TestClassifyRequest(t *testing.T) {
	for _, tc := range []struct {
		method, path, contentType string
		want                      requestKey
	}{
		{"POST", "/api/v1/namespaces/a/pods", "", requestKey{"POST", "pods"}},
		{"GET", "/api/v1/namespaces/a/pods", "", requestKey{"LIST", "pods"}},
		{"GET", "/api/v1/namespaces/a/pods?watch=true", "", requestKey{"WATCH", "pods"}},
		{"GET", "/api/v1/namespaces/a/pods/p", "", requestKey{"GET", "pods"}},
		{"PATCH", "/api/v1/namespaces/a/pods/p/status", "application/strategic-merge-patch+json", requestKey{"PATCH", "pods/status"}},
		{"POST", "/api/v1/namespaces/a/pods/p/binding", "", requestKey{"POST", "pods/binding"}},
		{"DELETE", "/api/v1/namespaces/a/pods", "", requestKey{"DELETE", "pods"}},
		{"GET", "/api/v1/namespaces/a", "", requestKey{"GET", "namespaces"}},
		{"PATCH", "/apis/apps/v1/namespaces/a/deployments/d", "application/apply-patch+yaml", requestKey{"APPLY", "deployments.apps"}},
		{"POST", "/apis/events.k8s.io/v1/namespaces/a/events", "", requestKey{"POST", "events.events.k8s.io"}},
	} {
		got, ok := classifyRequest(tc.method, mustURL(t, tc.path), tc.contentType)
		if !ok || got != tc.want {
			t.Errorf("%s %s: got %+v %t, want %+v", tc.method, tc.path, got, ok, tc.want)
		}
	}
	if _, ok := classifyRequest("GET", mustURL(t, "/metrics"), ""); ok {
		t.Error("/metrics was classified as a resource request")
	}
}

func TestStatistics(t *testing.T) {
	samples := make([]float64, 100)
	for i := range samples {
		samples[i] = float64(100 - i) // 100..1, unsorted
	}
	got := summarize(samples)
	if got.Count != 100 || got.P50 != 50 || got.P90 != 90 || got.P99 != 99 || got.Max != 100 || got.Mean != 50.5 {
		t.Errorf("summarize: %+v", got)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
