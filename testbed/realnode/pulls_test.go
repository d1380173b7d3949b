package realnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"
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

// Registries on this machine's loopback, in every spelling containerd
// accepts, are refused; a registry elsewhere (sent to the refusing proxy)
// and Docker Hub's short names are the proxy's business.
func TestLoopbackRegistries(t *testing.T) {
	for image, want := range map[string]bool{
		"127.0.0.1:5000/none:1":              true,
		"127.0.0.1/none:1":                   true,
		"127.255.0.9:80/a/b@sha256:" + hex64: true,
		"localhost:5000/none:1":              true,
		"localhost/none":                     true,
		"LOCALHOST:5000/none":                true,
		"localhost.:5000/none":               true,
		"registry.localhost:5000/none":       true,
		"[::1]:5000/none:1":                  true,
		"[0:0:0:0:0:0:0:1]:5000/none":        true,
		"[::ffff:127.0.0.1]:5000/none":       true,
		"0.0.0.0:5000/none":                  true,
		"[::]:5000/none":                     true,
		"podbridge.local/workload:1":         false,
		"registry.invalid.example/none:1":    false,
		"10.201.0.1:6443/none":               false,
		"busybox":                            false,
		"library/busybox:1":                  false,
		"localhost:5000":                     false, // Docker Hub's "localhost", tag 5000
	} {
		registry := registryHost(image)
		if got := registry != "" && onLoopback(registry); got != want {
			t.Errorf("%s (registry %q): refused %v, want %v", image, registry, got, want)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// pullCall is a PullImage call's body: one gRPC message, a
// PullImageRequest naming image.
func pullCall(image string) []byte {
	spec := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), image)
	req := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), spec)
	frame := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(frame[1:], uint32(len(req)))
	return append(frame, req...)
}

// The kubelet's image calls pass the gate to containerd unchanged (body,
// trailers, and trailers-only errors), except a pull from a loopback
// registry: answered PermissionDenied with the reason, and never sent on.
func TestImageGateRefusesLoopbackPulls(t *testing.T) {
	dir := t.TempDir()
	upstream := filepath.Join(dir, "containerd.sock")
	l, err := net.Listen("unix", upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var calls []string
	containerd := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		images, _ := pullImages(body)
		mu.Lock()
		calls = append(calls, r.URL.Path+" "+strings.Join(images, ","))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/grpc")
		if r.URL.Path == "/runtime.v1.ImageService/ImageStatus" {
			w.Header().Set("Grpc-Status", "5")
			w.Header().Set("Grpc-Message", "not found")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte{0, 0, 0, 0, 2, 0x0a, 0})
		w.Header().Set("Grpc-Status", "0")
	})
	go func() {
		srv := &http2.Server{}
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: containerd})
		}
	}()
	g, err := gateImages(filepath.Join(dir, "images.sock"), upstream, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.close(); err != nil {
			t.Error(err)
		}
	}()
	kubelet := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, "images.sock"))
	}}
	// call returns the answer's headers, trailers and body.
	call := func(method string, body []byte) (header, trailer http.Header, answer []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://localhost"+method, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := kubelet.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if answer, err = io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.Header, resp.Trailer, answer
	}

	header, _, answer := call(pullImageMethod, pullCall("127.0.0.1:5000/none:1"))
	message, _ := url.PathUnescape(header.Get("Grpc-Message"))
	if header.Get("Grpc-Status") != "7" || len(answer) != 0 || message != LoopbackPullRefusal("127.0.0.1:5000/none:1", "127.0.0.1:5000") {
		t.Errorf("loopback pull: status %q, message %q, body %q; want PermissionDenied with the refusal", header.Get("Grpc-Status"), message, answer)
	}
	_, trailer, answer := call(pullImageMethod, pullCall("podbridge.local/workload:1"))
	if trailer.Get("Grpc-Status") != "0" || !bytes.Equal(answer, []byte{0, 0, 0, 0, 2, 0x0a, 0}) {
		t.Errorf("pull of a registry elsewhere: trailer %v, body %q; want containerd's answer", trailer, answer)
	}
	header, _, answer = call("/runtime.v1.ImageService/ImageStatus", []byte{0, 0, 0, 0, 0})
	if header.Get("Grpc-Status") != "5" || header.Get("Grpc-Message") != "not found" || len(answer) != 0 {
		t.Errorf("containerd's trailers-only error: headers %v, body %q; want it as sent", header, answer)
	}
	header, _, _ = call(pullImageMethod, []byte{1, 0, 0, 0, 0})
	if header.Get("Grpc-Status") != "3" {
		t.Errorf("a compressed pull call: status %q, want InvalidArgument", header.Get("Grpc-Status"))
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{pullImageMethod + " podbridge.local/workload:1", "/runtime.v1.ImageService/ImageStatus "}; !slices.Equal(calls, want) {
		t.Errorf("containerd got %q, want %q", calls, want)
	}
	if got := g.Refused(); !slices.Equal(got, []string{"127.0.0.1:5000/none:1"}) {
		t.Errorf("refused %q", got)
	}
}
