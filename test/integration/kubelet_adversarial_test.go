package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/kubeletproxy"
	"github.com/podbridge/podbridge/testbed/devenv"
	"github.com/podbridge/podbridge/testbed/podstream"
)

// Adversarial requests to podbridge's kubelet API, as the tenant sends
// them: through the virtual apiserver's nodes/proxy (which forwards any
// path, query and most headers with the apiserver's kubelet client
// certificate) or a virtual apiserver gone hostile. Here they are sent
// straight with that certificate, as nodes/proxy refuses loopback nodes.

// adversarialPod is an access pod with the containers app (kwok serves
// its three-line log) and follow, plus a container only its host pod has.
func adversarialPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	pod := accessPod(t, name, "app", "follow")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addHostOnlyContainer(ctx, t, pod)
	return pod
}

const appLog = "line 1\nline 2\nline 3\n"

// Log paths and queries: the query cannot choose the container, values
// the kubelet would refuse are refused before the host is asked, and no
// spelling of the path (encoded, double-encoded, dot segments, case,
// extra segments) reaches anything but the named pod's named container.
func TestKubeletAdversarialLogPathsAndQueries(t *testing.T) {
	pod := adversarialPod(t, "adv-logs")
	apiserver := keyPair(t, env.WebhookClient.Bundle)
	c := kubeletClient(&apiserver)
	// Redirects are answered, not followed: each is judged as sent.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := "/containerLogs/" + pod.Namespace + "/" + pod.Name
	cases := []struct {
		name, method, path string
		wantCode           int
		wantBody           string // exact, when set
		wantLocation       string
	}{
		{name: "the container in the path", path: base + "/app", wantCode: http.StatusOK, wantBody: appLog},
		{name: "a container query naming the host-only container", path: base + "/app?container=host-only", wantCode: http.StatusOK, wantBody: appLog},
		{name: "a container query naming another container", path: base + "/app?container=follow&container=host-only", wantCode: http.StatusOK, wantBody: appLog},
		{name: "apiserver-side options passed on", path: base + "/app?insecureSkipTLSVerifyBackend=true&pretty=true&timeoutSeconds=1", wantCode: http.StatusOK, wantBody: appLog},
		{name: "limitBytes 0", path: base + "/app?limitBytes=0", wantCode: http.StatusUnprocessableEntity},
		{name: "negative limitBytes", path: base + "/app?limitBytes=-5", wantCode: http.StatusUnprocessableEntity},
		{name: "limitBytes beyond int64", path: base + "/app?limitBytes=99999999999999999999", wantCode: http.StatusUnprocessableEntity},
		{name: "negative tailLines", path: base + "/app?tailLines=-1", wantCode: http.StatusUnprocessableEntity},
		{name: "sinceSeconds 0", path: base + "/app?sinceSeconds=0", wantCode: http.StatusUnprocessableEntity},
		{name: "sinceTime not a time", path: base + "/app?sinceTime=2026-13-45T99:00:00Z", wantCode: http.StatusUnprocessableEntity},
		{name: "a stream that is not one", path: base + "/app?stream=Both", wantCode: http.StatusUnprocessableEntity},
		{name: "follow not a boolean", path: base + "/app?follow=yes", wantCode: http.StatusUnprocessableEntity},
		{name: "previous not a boolean", path: base + "/app?previous=2", wantCode: http.StatusUnprocessableEntity},
		{name: "a double-encoded slash in the pod", path: "/containerLogs/" + pod.Namespace + "/" + pod.Name + "%252F..%252Fx/app", wantCode: http.StatusUnprocessableEntity},
		{name: "a double-encoded slash in the container", path: base + "/app%252F..%252Fhost-only", wantCode: http.StatusUnprocessableEntity},
		{name: "an encoded NUL in the container", path: base + "/app%00", wantCode: http.StatusUnprocessableEntity},
		{name: "an encoded dot-dot as the pod", path: "/containerLogs/" + pod.Namespace + "/%2E%2E/app", wantCode: http.StatusUnprocessableEntity},
		{name: "dot segments are cleaned, not resolved by the handler", path: "/containerLogs/" + pod.Namespace + "/x/../" + pod.Name + "/app", wantCode: http.StatusTemporaryRedirect, wantLocation: base + "/app"},
		{name: "an upper-case namespace", path: "/containerLogs/" + strings.ToUpper(pod.Namespace) + "/" + pod.Name + "/app", wantCode: http.StatusUnprocessableEntity},
		{name: "a pod name too long", path: "/containerLogs/" + pod.Namespace + "/" + strings.Repeat("a", 300) + "/app", wantCode: http.StatusUnprocessableEntity},
		{name: "an extra path segment", path: base + "/app/host-only", wantCode: http.StatusNotFound},
		{name: "no container", path: base, wantCode: http.StatusNotFound},
		{name: "the logs path with another method", method: http.MethodPost, path: base + "/app", wantCode: http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequestWithContext(ctx, method, kubeletURL(tc.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tc.wantCode)
			}
			if tc.wantBody != "" && string(body) != tc.wantBody {
				t.Fatalf("body %q, want %q", body, tc.wantBody)
			}
			if tc.wantCode != http.StatusOK && bytes.Contains(body, []byte("line 1")) {
				t.Fatalf("a refusal carried log content: %s", body)
			}
			if tc.wantLocation != "" && resp.Header.Get("Location") != tc.wantLocation {
				t.Fatalf("redirected to %q, want %q", resp.Header.Get("Location"), tc.wantLocation)
			}
		})
	}
}

// Stream queries: a port-forward's ports and an exec's flags are parsed
// and rebuilt, so nothing out of range or unparsed reaches the host, and
// the query cannot name the container.
func TestKubeletAdversarialStreamQueries(t *testing.T) {
	pod := adversarialPod(t, "adv-streams")
	apiserver := keyPair(t, env.WebhookClient.Bundle)
	c := kubeletClient(&apiserver)
	pf := "/portForward/" + pod.Namespace + "/" + pod.Name
	exec := "/exec/" + pod.Namespace + "/" + pod.Name + "/app"
	cases := []struct{ name, path string }{
		{"port 0", pf + "?port=0"},
		{"port 65536", pf + "?port=65536"},
		{"a negative port", pf + "?port=-1"},
		{"a signed port", pf + "?port=%2B80"},
		{"a hexadecimal port", pf + "?port=0x50"},
		{"a port list with garbage", pf + "?port=80,abc"},
		{"an empty port in a list", pf + "?port=80,,81"},
		{"exec without a command", exec + "?output=1"},
		{"exec with stdin not a boolean", exec + "?command=true&input=yes"},
		{"exec with tty not a boolean", exec + "?command=true&tty=on"},
		{"exec into the host-only container", "/exec/" + pod.Namespace + "/" + pod.Name + "/host-only?command=true&output=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, kubeletURL(tc.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "SPDY/3.1")
			req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnprocessableEntity && resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%d %s, want a refusal (422 or 400)", resp.StatusCode, body)
			}
		})
	}

}

// Headers of the caller's that would change who podbridge is on the host
// (Authorization, Impersonate-*, front-proxy headers) are not carried:
// were Impersonate-User passed on, the host would open the stream as
// system:anonymous and refuse it. A port-forward (kwok echoes what it is
// sent: a fixed cat, no tenant command) round-trips a message, so the
// stream reached the pod as podbridge.
func TestKubeletAdversarialIdentityHeaders(t *testing.T) {
	pod := adversarialPod(t, "adv-headers")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	headers := http.Header{
		"Impersonate-User":   {"system:anonymous"},
		"Impersonate-Group":  {"system:unauthenticated"},
		"Authorization":      {"Bearer not-a-token"},
		"X-Remote-User":      {"system:anonymous"},
		"X-Forwarded-For":    {"10.0.0.1"},
		"Impersonate-Uid":    {"1234"},
		"Impersonate-Extra-": {"x"},
	}
	out, err := kubeletForward(ctx, headers, pod, "still-podbridge")
	if err != nil || out != "still-podbridge" {
		t.Fatalf("read %q, %v: a caller's identity header reached the host", out, err)
	}
}

// kubeletForward opens a port-forward to port 80 of pod on podbridge's
// kubelet API path over SPDY, with the virtual apiserver's client
// certificate and extra headers, sends message through it and returns what
// came back.
func kubeletForward(ctx context.Context, headers http.Header, pod *corev1.Pod, message string) (string, error) {
	cfg := &rest.Config{
		Host: kubeletURL(""),
		TLSClientConfig: rest.TLSClientConfig{
			CertData: env.WebhookClient.Bundle.Cert, KeyData: env.WebhookClient.Bundle.Key, CAFile: env.KubeletCAFile,
		},
	}
	if headers != nil {
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				r = r.Clone(r.Context())
				for k, v := range headers {
					r.Header[k] = v
				}
				return rt.RoundTrip(r)
			})
		}
	}
	u, err := url.Parse(kubeletURL("/portForward/" + pod.Namespace + "/" + pod.Name))
	if err != nil {
		return "", err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", err
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	defer close(stop)
	var errOut bytes.Buffer
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:80"}, stop, ready, io.Discard, &errOut)
	if err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return "", fmt.Errorf("port-forward ended before it was ready: %w (%s)", err, errOut.String())
	case <-ctx.Done():
		return "", ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		return "", fmt.Errorf("forwarded ports %v: %w", ports, err)
	}
	return roundTrip(int(ports[0].Local), message, len(message))
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A tenant opening log follows and streams without end holds a host
// apiserver connection for each: past the cap, requests are answered 429
// until one ends. A handler with a cap of two, carrying to the same host
// as podbridge's, shows it.
func TestKubeletAdversarialStreamCap(t *testing.T) {
	pod := adversarialPod(t, "adv-cap")
	h, err := kubeletproxy.NewHandler(env.Host.Config, hostClient, virtualClient, env.Options.Translate)
	if err != nil {
		t.Fatal(err)
	}
	h.MaxStreams = 2
	server := httptest.NewServer(h)
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	follow := server.URL + "/containerLogs/" + pod.Namespace + "/" + pod.Name + "/app?follow=true"
	open := func() *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, follow, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	var held []*http.Response
	for range 2 {
		resp := open() //nolint:bodyclose // open's cleanup closes it
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("a follow within the cap: %d %s", resp.StatusCode, body)
		}
		held = append(held, resp) //nolint:bodyclose // closed below, and by open's cleanup
	}
	over := open() //nolint:bodyclose // open's cleanup closes it
	body, _ := io.ReadAll(over.Body)
	if over.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a third follow: %d %s, want 429", over.StatusCode, body)
	}
	// A stream counts against the same cap.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server.URL+"/exec/"+pod.Namespace+"/"+pod.Name+"/app?command=true&output=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("an exec past the cap: %d, want 429", resp.StatusCode)
	}
	// Ending one follow frees its place.
	held[0].Body.Close()
	eventually(t, 20*time.Second, "a place freed by the closed follow", func(context.Context) (bool, string) {
		resp := open()
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	held[1].Body.Close()
}

// Request smuggling on one connection: an exec upgrade the host refuses
// (no stdin, stdout or stderr) followed at once by a request for the host
// namespace's Secrets. Were the connection kept and its further bytes
// carried to the host after the refusal (CVE-2018-1002105), the second
// request would run with podbridge's host identity. The refusal must be
// the last thing on the connection.
func TestKubeletAdversarialSmuggledRequestAfterRefusedUpgrade(t *testing.T) {
	pod := adversarialPod(t, "adv-smuggle")
	apiserver := keyPair(t, env.WebhookClient.Bundle)
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(env.KubeletCAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", net.JoinHostPort(env.Kubelet.Address, strconv.Itoa(int(env.Kubelet.Port))), &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{apiserver}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	smuggled := "GET /api/v1/namespaces/" + env.Options.Translate.HostNamespace + "/secrets HTTP/1.1\r\nHost: x\r\n\r\n"
	upgrade := "POST /exec/" + pod.Namespace + "/" + pod.Name + "/app?command=true HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" +
		"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
	if _, err := io.WriteString(conn, upgrade+smuggled); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(conn) // until the server closes the connection
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("the connection was not closed after the refusal: %v (read %q)", err, rest)
	}
	// Refused beyond podbridge (the host's kubelet API checks the
	// streams), so podbridge had already sent the upgrade on.
	if !bytes.HasPrefix(rest, []byte("HTTP/1.1 4")) || !bytes.Contains(rest, []byte("at least 1 of stdin")) {
		t.Fatalf("the upgrade was not refused by the host: %q", rest)
	}
	if n := bytes.Count(rest, []byte("HTTP/1.1 ")); n != 1 || bytes.Contains(rest, []byte("SecretList")) {
		t.Fatalf("%d responses on the connection, want only the refusal: %q", n, rest)
	}
}

// Slow callers: a connection that never finishes its TLS handshake, and
// one with the virtual apiserver's certificate that never finishes its
// request headers, are both dropped (ReadHeaderTimeout, 10 s), so holding
// connections open costs the caller as much as podbridge.
func TestKubeletAdversarialSlowCallersDropped(t *testing.T) {
	apiserver := keyPair(t, env.WebhookClient.Bundle)
	address := net.JoinHostPort(env.Kubelet.Address, strconv.Itoa(int(env.Kubelet.Port)))
	raw, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(env.KubeletCAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(ca)
	partial, err := tls.Dial("tcp", address, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{apiserver}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer partial.Close()
	if _, err := io.WriteString(partial, "GET /containerLogs/access/x/app HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for name, conn := range map[string]net.Conn{"no handshake": raw, "unfinished headers": partial} {
		_ = conn.SetReadDeadline(start.Add(30 * time.Second))
		_, err := io.Copy(io.Discard, conn)
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: still open after 30 s", name)
		}
		t.Logf("%s: dropped %s after it was opened", name, time.Since(start).Round(100*time.Millisecond))
	}
}

// A host operator debugs a tenant's pod with an ephemeral container on
// the host pod (its name shows in the host events podbridge copies to the
// virtual pod). The tenant then adds an ephemeral container of that name
// to its virtual pod: the reflector has nothing to add (the host already
// has as many), so the names match in both lists, but the host container
// is the operator's, not podbridge's, and exec or attach into it would
// reach the operator's session and privileges. Only ephemeral containers
// podbridge added to the host pod are reached; the tenant's own still are.
func TestKubeletAdversarialOperatorsEphemeralContainer(t *testing.T) {
	pod := adversarialPod(t, "adv-eph") // the host has "host-only", the operator's.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := updateVirtualPod(ctx, pod, "ephemeralcontainers", func(p *corev1.Pod) {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "host-only", Image: "busybox"},
		})
	}); err != nil {
		t.Fatalf("adding the tenant's ephemeral container of the operator's name: %v", err)
	}
	// Refused by podbridge, before the host: carried on, the exec would
	// have reached kwok, which answers it "no exec found" (and runs
	// nothing).
	res, err := podstream.Exec(ctx, env.Virtual.Config, false, pod.Namespace, pod.Name, "host-only", "", "echo", "reached")
	if err == nil {
		err = res.Err
	}
	if err == nil || strings.Contains(err.Error(), "no exec found") {
		t.Fatalf("the tenant's exec reached the operator's ephemeral container: %v %+v", err, res)
	}
	t.Logf("refused: %v", err)

	// The tenant's own debug container, which podbridge adds to the host
	// pod, is reached: attach follows what kwok plays as its output.
	own := accessPod(t, "adv-eph-own", "app")
	addDebugContainer(ctx, t, own, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "mine", Image: "busybox"}})
	c := clientset(t, env.Virtual.Config)
	req := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(own.Namespace).Name(own.Name).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: "mine", Stdout: true, Stderr: true}, parameterCodec)
	attachCtx, stop := context.WithCancel(ctx)
	defer stop()
	out := &lineWaiter{lines: make(chan string, 16)}
	done := make(chan error, 1)
	go func() { done <- attach(attachCtx, false, req.URL(), out) }()
	// kwok follows the file from its end once attached: write until the
	// line is read.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case got := <-out.lines:
			if got == "mine" {
				return
			}
		case err := <-done:
			t.Fatalf("the attach to the tenant's own debug container ended: %v", err)
		case <-tick.C:
			appendLog(t, "mine", "mine")
		case <-ctx.Done():
			t.Fatal("the tenant's own debug container's output was not read through attach")
		}
	}
}

// A Node of the tenant's own making, advertising the host apiserver as
// its kubelet: the virtual apiserver would dial the host apiserver for the
// logs of a pod the tenant binds there. podbridge's static admission
// policy (package staticpolicy) refuses the address before anything can
// be bound to it; the Node keeps none.
func TestKubeletAdversarialTenantNodeAdvertisesTheHostAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hostURL, err := url.Parse(env.Host.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	hostPort, err := strconv.Atoi(hostURL.Port())
	if err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "adv-tenant-node"}}
	if err := virtualClient.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), node) })
	// A merge patch: the virtual control plane may touch the new Node
	// meanwhile, which an update would conflict with.
	advertised := node.DeepCopy()
	advertised.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: hostURL.Hostname()}}
	advertised.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(hostPort)
	err = virtualClient.Status().Patch(ctx, advertised, client.MergeFrom(node))
	if err == nil || !strings.Contains(err.Error(), "podbridge's kubelet API") {
		t.Fatalf("advertising the host apiserver on the tenant's node: %v, want the static policy's refusal", err)
	}
	stored := &corev1.Node{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(node), stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Status.Addresses) > 0 || stored.Status.DaemonEndpoints.KubeletEndpoint.Port != 0 {
		t.Fatalf("the tenant's node advertises %v port %d", stored.Status.Addresses, stored.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
}

// The kubelet API trusts one client certificate, kept in podbridge's host
// namespace, which tenant host pods share. A tenant pod naming podbridge's
// own Secrets in every way a pod can (volume, projected volume, envFrom,
// env, image pull secret) gets host pods that name none of them: each
// reference becomes the tenant's own host copy.
func TestKubeletAdversarialPodNamesPodbridgesSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := namespace(t)
	secrets := []string{"podbridge-webhook-client-tls", kubeletSecretName(), "podbridge-webhook-tls", "podbridge-virtual-kubeconfig"}
	pod := simplePod(ns, "adv-secrets")
	optional := true
	for i, s := range secrets {
		pod.Spec.Volumes = append(pod.Spec.Volumes,
			corev1.Volume{Name: fmt.Sprintf("v%d", i), VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: s, Optional: &optional}}},
			corev1.Volume{Name: fmt.Sprintf("p%d", i), VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: s}, Optional: &optional}},
			}}}})
		pod.Spec.Containers[0].EnvFrom = append(pod.Spec.Containers[0].EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: s}, Optional: &optional}})
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: fmt.Sprintf("E%d", i), ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: s}, Key: "tls.key", Optional: &optional},
		}})
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Logf("refused at admission: %v", err)
		return // refused outright: nothing of podbridge's is mounted either.
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Spec.Containers[0].EnvFrom) != len(secrets) || len(host.Spec.ImagePullSecrets) != len(secrets) {
		t.Fatalf("the host pod dropped references instead of translating them: %+v", host.Spec)
	}
	raw, err := json.Marshal(host.Spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(`"`+s+`"`)) {
			t.Errorf("the host pod names podbridge's Secret %s: %s", s, raw)
		}
	}
}

func kubeletSecretName() string { return devenv.KubeletSecretName }
