package realnode

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http/httpproxy"
)

// containerd's registry clients take their proxy from the environment
// (http.ProxyFromEnvironment, which is httpproxy.FromEnvironment): with the
// refuser's variables over a machine environment that would exclude every
// host or point elsewhere, every registry request, TLS or not, goes to the
// refuser on loopback and fails with its reason, and no name is resolved
// or dialled anywhere else. Loopback registries are never proxied by Go.
func TestPullRefuserTakesEveryRegistryRequest(t *testing.T) {
	r, err := refusePulls(logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
	}()
	machine := map[string]string{
		"no_proxy": "*", "NO_PROXY": "", "https_proxy": "http://192.0.2.1:3128", "HTTP_PROXY": "", "REQUEST_METHOD": "GET",
	}
	for k, v := range machine {
		t.Setenv(k, v)
	}
	for _, kv := range r.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	for _, target := range []string{"https://registry.invalid.example/v2/", "http://registry.invalid.example:5000/v2/", "https://registry-1.docker.io/v2/", "https://10.201.0.9/v2/"} {
		u, _ := url.Parse(target)
		got, err := proxy(u)
		if err != nil || got == nil || got.String() != r.URL() {
			t.Errorf("%s goes through %v (%v), want the refuser %s", target, got, err, r.URL())
		}
	}
	for _, target := range []string{"http://127.0.0.1:5000/v2/", "http://localhost:5000/v2/"} {
		u, _ := url.Parse(target)
		if got, _ := proxy(u); got != nil {
			t.Errorf("%s goes through %v, want direct (loopback)", target, got)
		}
	}

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: func(req *http.Request) (*url.URL, error) { return proxy(req.URL) }}}
	resp, err := c.Get("https://registry.invalid.example/v2/none/manifests/1")
	if err == nil {
		resp.Body.Close()
	}
	if err == nil || !strings.Contains(err.Error(), r.Reason()) {
		t.Errorf("TLS registry request: error %v, want the refusal %q", err, r.Reason())
	}
	resp, err = c.Get("http://registry.invalid.example:5000/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Status, r.Reason()) {
		t.Errorf("plain registry request: %s, want 403 with the refusal", resp.Status)
	}
	if got, want := strings.Join(r.Targets(), " "), "registry.invalid.example:443 registry.invalid.example:5000"; got != want {
		t.Errorf("refused targets %q, want %q", got, want)
	}
}
