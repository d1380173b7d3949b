package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"
	"k8s.io/client-go/rest"
)

// apiserverWindow is the length of each apiserver CPU profile during a
// series: short, so the last one ends soon after the series does (the
// series waits for it before emptying its namespaces).
const apiserverWindow = 2 * time.Second

// topFunctions is how many functions the report lists per apiserver.
const topFunctions = 8

// APIServerProfile is where one apiserver's CPU went during one series,
// from its own CPU profiles (/debug/pprof/profile), per created pod.
type APIServerProfile struct {
	Way         string `json:"way"`
	Concurrency int    `json:"concurrency"`
	Cluster     string `json:"cluster"`
	// Windows is the number of profiles merged; Seconds their total length.
	Windows int     `json:"windows"`
	Seconds float64 `json:"seconds"`
	// CPUMsPerPod is every sample's CPU, per created pod.
	CPUMsPerPod float64 `json:"cpuMsPerPod"`
	// Categories is CPU ms per pod by what the stack was doing, each
	// sample counted once by its leaf-most category; Inclusive counts a
	// sample in every category on its stack (see categorize). Top are the
	// functions with the most CPU of their own.
	Categories map[string]float64 `json:"categoriesMsPerPod"`
	Inclusive  map[string]float64 `json:"inclusiveMsPerPod"`
	// ByRequest is CPU ms per pod by the request a sample served (see
	// requestKinds): pod writes by subresource, creates, watches served.
	ByRequest map[string]float64 `json:"byRequestMsPerPod"`
	Top       []FunctionCPU      `json:"top"`
	// Files are the raw profiles, for `go tool pprof`.
	Files []string `json:"files,omitempty"`
}

// FunctionCPU is one function's own (flat) and inclusive (cumulative) CPU
// in ms per pod.
type FunctionCPU struct {
	Function string  `json:"function"`
	FlatMs   float64 `json:"flatMsPerPod"`
	CumMs    float64 `json:"cumMsPerPod"`
}

// categories name what an apiserver's stack is doing by the packages on
// it, searched from the leaf up: the first frame that matches a specific
// category decides, so JSON decoding inside an admission webhook call
// counts as JSON and a handshake's arithmetic as the handshake. Broad
// categories (the HTTP server and TLS, metrics) match the leaf frame only:
// every request's stack passes through the HTTP server. A stack matching
// nothing is "other"; the garbage collector's own workers are "gc".
var categories = []struct {
	name     string
	broad    bool
	patterns []string
}{
	{name: "tls handshake", patterns: []string{"crypto/tls.(*Conn).handshakeContext", "crypto/tls.(*Conn).clientHandshake", "crypto/tls.(*Conn).serverHandshake"}},
	{name: "json", patterns: []string{"encoding/json.", "sigs.k8s.io/json", "k8s.io/apimachinery/pkg/runtime/serializer/json", "github.com/json-iterator"}},
	{name: "protobuf", patterns: []string{"k8s.io/apimachinery/pkg/runtime/serializer/protobuf", "github.com/gogo/protobuf", "google.golang.org/protobuf",
		"k8s.io/api/core/v1.(*Pod).Unmarshal", "k8s.io/api/core/v1.(*Pod).Marshal"}},
	{name: "managed fields", patterns: []string{"k8s.io/apimachinery/pkg/util/managedfields", "k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager", "sigs.k8s.io/structured-merge-diff"}},
	{name: "validation and defaulting", patterns: []string{"k8s.io/kubernetes/pkg/apis/core/validation", "k8s.io/kubernetes/pkg/registry/core/pod", "k8s.io/apiserver/pkg/cel", "github.com/google/cel-go"}},
	{name: "admission webhooks", patterns: []string{"k8s.io/apiserver/pkg/admission/plugin/webhook"}},
	{name: "authentication and authorization", patterns: []string{"k8s.io/apiserver/pkg/authentication", "k8s.io/apiserver/pkg/authorization", "k8s.io/kubernetes/plugin/pkg/auth"}},
	// Every write passes through the cacher and etcd3 packages on its way
	// to etcd, the admission chain included: only their own work counts.
	{name: "watch cache and watches", patterns: []string{"cacher.(*Cacher).dispatchEvent", "cacher.(*Cacher).processEvent", "cacher.(*cacheWatcher)", "cacher.(*watchCache)", "handlers.(*WatchServer)", "handlers.serveWatch"}},
	{name: "etcd", patterns: []string{"go.etcd.io/etcd", "etcd3.(*watchChan)", "etcd3.decode"}},
	{name: "gc", patterns: []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"}},
	{name: "tls and http", broad: true, patterns: []string{"crypto/", "net/http", "golang.org/x/net/http2", "net.", "syscall.", "internal/poll."}},
	{name: "metrics", broad: true, patterns: []string{"github.com/prometheus", "k8s.io/component-base/metrics"}},
}

// requestKinds name which request (or background work) a sample served,
// by the first rule whose patterns any frame of its stack matches.
var requestKinds = []struct {
	name     string
	patterns []string
}{
	{"serviceaccounts/token", []string{"serviceaccount.(*TokenREST)", "serviceaccount/storage.(*TokenREST)"}},
	{"pods/binding", []string{"pod/storage.(*BindingREST)"}},
	{"pods/status", []string{"pod/storage.(*StatusREST)"}},
	{"serving watches", []string{"handlers.(*WatchServer)", "handlers.serveWatch"}},
	{"create", []string{"handlers.CreateResource", "handlers.CreateNamedResource"}},
	{"update", []string{"handlers.UpdateResource"}},
	// A patch's work runs in the patcher's own closures, off PatchResource's stack.
	{"patch", []string{"handlers.PatchResource", "handlers.(*patcher)"}},
	{"delete", []string{"handlers.DeleteResource", "handlers.DeleteCollection"}},
	{"get and list", []string{"handlers.GetResource", "handlers.ListResource", "handlers.getResourceHandler"}},
	// Every write passes through the cacher on its way to etcd: only the
	// watch cache's own work counts here.
	{"watch cache", []string{"cacher.(*Cacher).dispatchEvent", "cacher.(*Cacher).processEvent", "cacher.(*cacheWatcher)", "cacher.(*watchCache)", "cacher.(*Cacher).startDispatching", "cacher.(*Cacher).dispatchEvents"}},
	{"etcd client", []string{"go.etcd.io/etcd"}},
	{"gc", []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"}},
}

// requestKind names the request a sample's stack served, or "other".
func requestKind(stack []string) string {
	for _, k := range requestKinds {
		for _, fn := range stack {
			if matchesAny(fn, k.patterns) {
				return k.name
			}
		}
	}
	return "other"
}

// categorize names the category of one sample's stack (leaf first), and
// every category its frames match (inclusive; broad ones by the leaf).
func categorize(stack []string) (string, map[string]bool) {
	first, all := "", map[string]bool{}
	for i, fn := range stack {
		for _, c := range categories {
			if c.broad && i > 0 || !matchesAny(fn, c.patterns) {
				continue
			}
			all[c.name] = true
			if first == "" && !c.broad {
				first = c.name
			}
		}
	}
	if first == "" {
		for _, c := range categories {
			if c.broad && all[c.name] {
				return c.name, all
			}
		}
		first = "other"
	}
	return first, all
}

func matchesAny(fn string, patterns []string) bool {
	for _, p := range patterns {
		if strings.Contains(fn, p) {
			return true
		}
	}
	return false
}

// apiserverProfiler takes back-to-back CPU profiles of one apiserver
// until stopped.
type apiserverProfiler struct {
	cluster  string
	client   *http.Client
	url      string
	dir      string
	prefix   string
	mu       sync.Mutex
	profiles []*profile.Profile
	files    []string
	errs     []error
	stop     chan struct{}
	done     chan struct{}
}

// profileAPIServers starts profiling both apiservers for the series named
// way and concurrency, and returns what stops it: it waits for the window
// under way to end and summarizes the profiles per created pod.
func (e *env) profileAPIServers(ctx context.Context, way string, concurrency int) (func(pods int) []APIServerProfile, error) {
	var running []*apiserverProfiler
	for _, c := range []*cluster{e.host, e.virtual} {
		p, err := startAPIServerProfiler(ctx, c.name, c.plane.Config, e.cfg.ProfileDir, fmt.Sprintf("create-%s-c%d", way, concurrency))
		if err != nil {
			for _, r := range running {
				close(r.stop)
				<-r.done
			}
			return nil, err
		}
		running = append(running, p)
	}
	return func(pods int) []APIServerProfile {
		var out []APIServerProfile
		for _, p := range running {
			close(p.stop)
		}
		for _, p := range running {
			<-p.done
			s := p.summary(pods)
			s.Way, s.Concurrency = way, concurrency
			out = append(out, s)
			for _, err := range p.errs {
				e.log.Info("An apiserver profile was lost", "cluster", p.cluster, "error", err.Error())
			}
		}
		return out
	}, nil
}

func startAPIServerProfiler(ctx context.Context, name string, cfg *rest.Config, dir, prefix string) (*apiserverProfiler, error) {
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("profiling the %s apiserver: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	p := &apiserverProfiler{
		cluster: name, client: c, dir: dir, prefix: prefix,
		url:  fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(cfg.Host, "/"), int(apiserverWindow/time.Second)),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go func() {
		defer close(p.done)
		for n := 1; ; n++ {
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			p.window(ctx, n)
		}
	}()
	return p, nil
}

// window takes one profile; the request's own duration bounds the loop.
func (p *apiserverProfiler) window(ctx context.Context, n int) {
	wctx, cancel := context.WithTimeout(ctx, apiserverWindow+30*time.Second)
	defer cancel()
	fail := func(err error) {
		p.mu.Lock()
		p.errs = append(p.errs, err)
		p.mu.Unlock()
		// An apiserver that refuses answers at once: do not spin.
		select {
		case <-p.stop:
		case <-time.After(apiserverWindow):
		}
	}
	req, err := http.NewRequestWithContext(wctx, http.MethodGet, p.url, nil)
	if err != nil {
		fail(err)
		return
	}
	resp, err := p.client.Do(req)
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		fail(err)
		return
	case resp.StatusCode != http.StatusOK:
		fail(fmt.Errorf("%s: %s: %s", p.url, resp.Status, bytes.TrimSpace(data)))
		return
	}
	prof, err := profile.Parse(bytes.NewReader(data))
	if err != nil {
		fail(fmt.Errorf("parsing the %s apiserver's profile: %w", p.cluster, err))
		return
	}
	path := filepath.Join(p.dir, fmt.Sprintf("%s.%s-apiserver.cpu.%03d.pb.gz", p.prefix, p.cluster, n))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		fail(err)
	}
	p.mu.Lock()
	p.profiles = append(p.profiles, prof)
	p.files = append(p.files, filepath.Base(path))
	p.mu.Unlock()
}

// summary merges the profiles and divides their CPU by pods.
func (p *apiserverProfiler) summary(pods int) APIServerProfile {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := APIServerProfile{Cluster: p.cluster, Windows: len(p.profiles), Files: p.files}
	if len(p.profiles) == 0 || pods == 0 {
		return s
	}
	merged, err := profile.Merge(p.profiles)
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("merging the %s apiserver's profiles: %w", p.cluster, err))
		return s
	}
	s.Seconds = float64(len(p.profiles)) * apiserverWindow.Seconds()
	return summarizeProfile(s, merged, pods)
}

// summarizeProfile fills s's CPU, categories and top functions from a CPU
// profile, per pod.
func summarizeProfile(s APIServerProfile, prof *profile.Profile, pods int) APIServerProfile {
	cpu := -1 // the sample value in nanoseconds of CPU
	for i, st := range prof.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			cpu = i
		}
	}
	if cpu < 0 {
		return s
	}
	perPod := func(ns int64) float64 { return round2(float64(ns) / 1e6 / float64(pods)) }
	flat, cum, byCategory, inclusive, byRequest := map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	var total int64
	for _, sample := range prof.Sample {
		v := sample.Value[cpu]
		total += v
		var stack []string
		for _, loc := range sample.Location {
			// Inlined functions come first within a location.
			for _, line := range loc.Line {
				if line.Function != nil {
					stack = append(stack, line.Function.Name)
				}
			}
		}
		if len(stack) == 0 {
			continue
		}
		flat[stack[0]] += v
		seen := map[string]bool{}
		for _, fn := range stack {
			if !seen[fn] {
				seen[fn] = true
				cum[fn] += v
			}
		}
		byRequest[requestKind(stack)] += v
		first, all := categorize(stack)
		byCategory[first] += v
		for c := range all {
			inclusive[c] += v
		}
	}
	s.CPUMsPerPod = perPod(total)
	s.Categories = map[string]float64{}
	for c, v := range byCategory {
		s.Categories[c] = perPod(v)
	}
	s.ByRequest = map[string]float64{}
	for k, v := range byRequest {
		s.ByRequest[k] = perPod(v)
	}
	s.Inclusive = map[string]float64{}
	for c, v := range inclusive {
		s.Inclusive[c] = perPod(v)
	}
	names := make([]string, 0, len(flat))
	for fn := range flat {
		names = append(names, fn)
	}
	slices.SortFunc(names, func(a, b string) int {
		if flat[a] != flat[b] {
			if flat[a] > flat[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, fn := range names[:min(topFunctions, len(names))] {
		s.Top = append(s.Top, FunctionCPU{Function: fn, FlatMs: perPod(flat[fn]), CumMs: perPod(cum[fn])})
	}
	return s
}

// SeriesRequests are one apiserver's requests during one series that the
// bench did not make, per created pod, by "VERB resource".
type SeriesRequests struct {
	Way         string             `json:"way"`
	Concurrency int                `json:"concurrency"`
	Cluster     string             `json:"cluster"`
	PerPod      map[string]float64 `json:"perPod"`
	Total       float64            `json:"totalPerPod"`
}

// seriesRequests turns the snapshots around a series into per-pod counts.
// WATCH requests are left out: they last longer than a series.
func seriesRequests(way string, concurrency, pods int, before, after snapshot) []SeriesRequests {
	host, virtual := others(before, after)
	var out []SeriesRequests
	for _, c := range []struct {
		name   string
		counts requestCounts
	}{{"host", host}, {"virtual", virtual}} {
		r := SeriesRequests{Way: way, Concurrency: concurrency, Cluster: c.name, PerPod: map[string]float64{}}
		for _, key := range c.counts.sortedKeys() {
			if key.Verb == "WATCH" || pods == 0 {
				continue
			}
			if v := round2(c.counts[key] / float64(pods)); v > 0 {
				r.PerPod[key.Verb+" "+key.Resource] = v
				r.Total += v
			}
		}
		r.Total = round2(r.Total)
		out = append(out, r)
	}
	return out
}
