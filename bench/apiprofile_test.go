package bench

import (
	"math"
	"testing"

	"github.com/google/pprof/profile"
)

func TestCategorize(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stack     []string // leaf first
		want      string
		inclusive []string
	}{
		{"json inside a webhook call counts as json", []string{
			"encoding/json.(*decodeState).object",
			"k8s.io/apiserver/pkg/admission/plugin/webhook/mutating.(*mutatingDispatcher).callAttrMutatingHook",
		}, "json", []string{"json", "admission webhooks"}},
		{"a handshake is not plain tls", []string{
			"crypto/internal/fips140/nistec.p256Mul",
			"crypto/tls.(*Conn).clientHandshake",
			"crypto/tls.(*Conn).handshakeContext",
		}, "tls handshake", []string{"tls handshake", "tls and http"}},
		{"a pod's protobuf decode", []string{"k8s.io/api/core/v1.(*Pod).Unmarshal", "go.etcd.io/etcd/client/v3.(*kv).Do"}, "protobuf", []string{"protobuf", "etcd"}},
		{"the collector", []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, "gc", []string{"gc"}},
		{"nothing known", []string{"runtime.futex", "runtime.mcall"}, "other", nil},
		{"the http server alone", []string{"syscall.Syscall6", "net.(*conn).Write", "net/http.(*conn).serve"}, "tls and http", []string{"tls and http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, all := categorize(tc.stack)
			if got != tc.want {
				t.Errorf("category: got %q, want %q", got, tc.want)
			}
			if len(all) != len(tc.inclusive) {
				t.Errorf("inclusive: got %v, want %v", all, tc.inclusive)
			}
			for _, c := range tc.inclusive {
				if !all[c] {
					t.Errorf("inclusive: %v misses %q", all, c)
				}
			}
		})
	}
}

func TestRequestKind(t *testing.T) {
	for _, tc := range []struct {
		stack []string
		want  string
	}{
		// A status patch is a patch of pods/status: the subresource wins.
		{[]string{"k8s.io/kubernetes/pkg/registry/core/pod/storage.(*StatusREST).Update", "k8s.io/apiserver/pkg/endpoints/handlers.PatchResource.func1"}, "pods/status"},
		{[]string{"k8s.io/apiserver/pkg/storage/cacher.(*CacheDelegator).GuaranteedUpdate", "k8s.io/apiserver/pkg/endpoints/handlers.UpdateResource.func1"}, "update"},
		{[]string{"k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatchEvent"}, "watch cache"},
		// A patch of the pod itself runs in the patcher's closures.
		{[]string{"k8s.io/apiserver/pkg/storage/cacher.(*CacheDelegator).GuaranteedUpdate", "k8s.io/apiserver/pkg/endpoints/handlers.(*patcher).patchResource.func2"}, "patch"},
		{[]string{"k8s.io/apiserver/pkg/endpoints/handlers.(*WatchServer).HandleHTTP", "k8s.io/apiserver/pkg/endpoints/handlers.ListResource.func1"}, "serving watches"},
		{[]string{"runtime.futex"}, "other"},
	} {
		if got := requestKind(tc.stack); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.stack, got, tc.want)
		}
	}
}

// TestSummarizeProfile checks the per-pod arithmetic on a profile made
// here: 30 ms in a JSON decode under an etcd write, 10 ms in the collector,
// over 10 pods.
func TestSummarizeProfile(t *testing.T) {
	fn := func(id uint64, name string) *profile.Function { return &profile.Function{ID: id, Name: name} }
	decode, create, gc := fn(1, "encoding/json.Unmarshal"), fn(2, "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create"), fn(3, "runtime.gcBgMarkWorker")
	loc := func(id uint64, f *profile.Function) *profile.Location {
		return &profile.Location{ID: id, Line: []profile.Line{{Function: f}}}
	}
	lDecode, lCreate, lGC := loc(1, decode), loc(2, create), loc(3, gc)
	prof := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		Sample: []*profile.Sample{
			{Location: []*profile.Location{lDecode, lCreate}, Value: []int64{3, 30e6}},
			{Location: []*profile.Location{lGC}, Value: []int64{1, 10e6}},
		},
		Location: []*profile.Location{lDecode, lCreate, lGC},
		Function: []*profile.Function{decode, create, gc},
	}
	s := summarizeProfile(APIServerProfile{}, prof, 10)
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	near("CPU per pod", s.CPUMsPerPod, 4)
	near("json", s.Categories["json"], 3)
	near("gc", s.Categories["gc"], 1)
	near("create request", s.ByRequest["watch cache"], 0)
	near("other request", s.ByRequest["other"], 3)
	near("gc request", s.ByRequest["gc"], 1)
	// Functions with CPU of their own only, most first.
	if len(s.Top) != 2 || s.Top[0].Function != decode.Name || s.Top[1].Function != gc.Name {
		t.Fatalf("top: %+v", s.Top)
	}
	near("decode flat", s.Top[0].FlatMs, 3)
	near("decode cumulative", s.Top[0].CumMs, 3)
}

func TestSeriesRequests(t *testing.T) {
	key := func(verb, resource string) requestKey { return requestKey{Verb: verb, Resource: resource} }
	before := snapshot{hostAPI: requestCounts{key("POST", "pods"): 5}, virtualAPI: requestCounts{}, hostBench: requestCounts{}, virtualBench: requestCounts{}}
	after := snapshot{
		// 10 host pods by podbridge, 4 by the bench; watches left out.
		hostAPI:      requestCounts{key("POST", "pods"): 19, key("WATCH", "pods"): 3},
		hostBench:    requestCounts{key("POST", "pods"): 4},
		virtualAPI:   requestCounts{key("POST", "pods/binding"): 10, key("PUT", "pods/status"): 20},
		virtualBench: requestCounts{},
	}
	got := seriesRequests(WayPodbridge, 1, 10, before, after)
	if len(got) != 2 {
		t.Fatalf("got %d clusters", len(got))
	}
	host, virtual := got[0], got[1]
	if host.Cluster != "host" || host.PerPod["POST pods"] != 1 || len(host.PerPod) != 1 || host.Total != 1 {
		t.Errorf("host: %+v", host)
	}
	if virtual.Cluster != "virtual" || virtual.PerPod["PUT pods/status"] != 2 || virtual.Total != 3 {
		t.Errorf("virtual: %+v", virtual)
	}
}
