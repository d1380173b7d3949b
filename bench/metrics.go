package bench

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podbridge/podbridge/testbed/promscrape"
)

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
func apiserverRequests(f promscrape.Families) requestCounts {
	out := requestCounts{}
	for _, m := range f["apiserver_request_total"].GetMetric() {
		if promscrape.Label(m, "resource") == "" {
			continue
		}
		key := requestKey{Verb: promscrape.Label(m, "verb"), Resource: resourceName(promscrape.Label(m, "group"), promscrape.Label(m, "resource"), promscrape.Label(m, "subresource"))}
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
