package realnode

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"
)

// pullRefuser is the proxy containerd sends every registry request to, and
// it refuses them all: image pulls never leave this machine (the test
// bed's network rule), whatever image or pull policy a tenant names. It
// answers on loopback with a 403 whose reason says so, so the pod's
// ErrImagePull tells why, instead of a DNS failure or a timeout.
type pullRefuser struct {
	l    net.Listener
	log  logr.Logger
	done chan struct{}

	mu      sync.Mutex
	targets []string
}

func refusePulls(log logr.Logger) (*pullRefuser, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the real node's registry requests: %w", err)
	}
	r := &pullRefuser{l: l, log: log, done: make(chan struct{})}
	go r.serve()
	return r, nil
}

// URL is the proxy URL containerd gets.
func (r *pullRefuser) URL() string { return "http://" + r.l.Addr().String() }

// Reason is the status line's reason phrase: the error containerd reports.
func (r *pullRefuser) Reason() string {
	return fmt.Sprintf("refused by the real node's registry proxy at %s: image pulls never leave this machine", r.l.Addr())
}

// Env makes containerd's HTTP clients (http.ProxyFromEnvironment) send
// every registry request to the refuser. Both spellings of each variable
// are set, as Go reads the upper-case one first but falls back to the
// lower-case one when it is empty; NO_PROXY is emptied so no exclusion of
// the machine's environment bypasses it (only loopback registries, which
// Go never proxies, are reached directly); REQUEST_METHOD is emptied, as
// Go ignores HTTP_PROXY under CGI.
func (r *pullRefuser) Env() []string {
	var env []string
	for _, name := range []string{"HTTP_PROXY", "HTTPS_PROXY"} {
		env = append(env, name+"="+r.URL(), strings.ToLower(name)+"="+r.URL())
	}
	return append(env, "NO_PROXY=", "no_proxy=", "REQUEST_METHOD=")
}

// Targets are the registries containerd tried to reach (CONNECT host:port,
// or the host of a plain-HTTP request), in order.
func (r *pullRefuser) Targets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.targets)
}

func (r *pullRefuser) serve() {
	defer close(r.done)
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		go r.refuse(c)
	}
}

func (r *pullRefuser) refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	target := "(unreadable request)"
	if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
		target = req.Host
	}
	r.mu.Lock()
	r.targets = append(r.targets, target)
	r.mu.Unlock()
	r.log.Info("Refused a registry request: image pulls never leave this machine", "target", target)
	_, _ = fmt.Fprintf(c, "HTTP/1.1 403 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", r.Reason())
}

// close stops listening; requests being answered finish on their own.
func (r *pullRefuser) close() error {
	err := r.l.Close()
	<-r.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// pullImageMethod is the CRI call the kubelet pulls images with.
const pullImageMethod = "/runtime.v1.ImageService/PullImage"

// imageGate is the CRI image service the kubelet is given
// (imageServiceEndpoint): it carries every call to containerd unchanged,
// except a pull of an image whose registry is on this machine's loopback
// (127.0.0.0/8, ::1, localhost), which it refuses. Go never sends a
// loopback registry through the pull refuser (no proxy is used for
// loopback), so containerd would call whatever service of this machine
// listens there and report what answered. Every call is unary (or a
// stream that ends), so each answer is read whole and then relayed with
// its trailers, which keeps gRPC's trailers-only errors intact.
type imageGate struct {
	l        net.Listener
	upstream *http2.Transport
	log      logr.Logger
	done     chan struct{}

	mu      sync.Mutex
	refused []string
}

// gateImages serves the gate on the unix socket path, in front of
// containerd's socket upstream.
func gateImages(path, upstream string, log logr.Logger) (*imageGate, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening for the kubelet's image calls: %w", err)
	}
	g := &imageGate{
		l:   l,
		log: log,
		upstream: &http2.Transport{
			// gRPC over a unix socket: HTTP/2 without TLS.
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", upstream)
			},
		},
		done: make(chan struct{}),
	}
	go g.serve()
	return g, nil
}

func (g *imageGate) serve() {
	defer close(g.done)
	srv := &http2.Server{}
	for {
		c, err := g.l.Accept()
		if err != nil {
			return
		}
		go srv.ServeConn(c, &http2.ServeConnOpts{Handler: g})
	}
}

// Refused are the images whose pull the gate refused, in order.
func (g *imageGate) Refused() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.refused)
}

func (g *imageGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		grpcStatus(w, codeUnavailable, "reading the call: "+err.Error())
		return
	}
	if r.URL.Path == pullImageMethod {
		images, err := pullImages(body)
		if err != nil {
			// Unreadable is refused: nothing passes unchecked.
			grpcStatus(w, codeInvalidArgument, "refused by the real node: "+err.Error())
			return
		}
		for _, image := range images {
			if registry := registryHost(image); registry != "" && onLoopback(registry) {
				g.mu.Lock()
				g.refused = append(g.refused, image)
				g.mu.Unlock()
				g.log.Info("Refused an image pull from this machine's loopback", "image", image, "registry", registry)
				grpcStatus(w, codePermissionDenied, LoopbackPullRefusal(image, registry))
				return
			}
		}
	}
	out, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://containerd"+r.URL.Path, bytes.NewReader(body))
	if err != nil {
		grpcStatus(w, codeInternal, err.Error())
		return
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host
	resp, err := g.upstream.RoundTrip(out)
	if err != nil {
		grpcStatus(w, codeUnavailable, "reaching containerd: "+err.Error())
		return
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		grpcStatus(w, codeUnavailable, "reading containerd's answer: "+err.Error())
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	// Trailers are known only now: announce them, so the server sends
	// them after the body. With neither (a trailers-only error), the
	// headers end the stream, as containerd's did.
	for k := range resp.Trailer {
		w.Header().Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
	for k, v := range resp.Trailer {
		w.Header()[k] = v
	}
}

// LoopbackPullRefusal is the error a pull of image from a loopback
// registry gets: the reason the kubelet reports.
func LoopbackPullRefusal(image, registry string) string {
	return fmt.Sprintf("refused by the real node: image %q names registry %s on this machine's loopback, and pulls never reach a service of this machine", image, registry)
}

// gRPC status codes the gate answers with.
const (
	codeInvalidArgument  = 3
	codePermissionDenied = 7
	codeInternal         = 13
	codeUnavailable      = 14
)

// grpcStatus answers a call with an error only (gRPC's trailers-only
// response: headers that end the stream).
func grpcStatus(w http.ResponseWriter, code int, message string) {
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Grpc-Status", strconv.Itoa(code))
	w.Header().Set("Grpc-Message", grpcEncode(message))
	w.WriteHeader(http.StatusOK)
}

// grpcEncode percent-encodes a grpc-message as the gRPC spec asks: bytes
// outside printable ASCII, and '%'.
func grpcEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// pullImages reads the image references of a PullImage call: its one
// gRPC message, a PullImageRequest whose field 1 is the ImageSpec, whose
// fields 1 (image) and 18 (user_specified_image) name the image.
func pullImages(body []byte) ([]string, error) {
	if len(body) < 5 {
		return nil, errors.New("a PullImage call without a message")
	}
	if body[0] != 0 {
		return nil, errors.New("a compressed PullImage call")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if uint64(n) != uint64(len(body)-5) {
		return nil, errors.New("a PullImage call that is not one message")
	}
	var images []string
	err := protoFields(body[5:], func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		return protoFields(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if (num == 1 || num == 18) && typ == protowire.BytesType && len(v) > 0 {
				images = append(images, string(v))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("an unreadable PullImage call: %w", err)
	}
	if len(images) == 0 {
		return nil, errors.New("a PullImage call naming no image")
	}
	return images, nil
}

// protoFields calls f with each field of a protobuf message: its number,
// wire type and, for length-delimited fields, its bytes.
func protoFields(b []byte, f func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

// registryHost is the registry of an image reference as containerd reads
// it (the distribution reference rule: a first path component with a dot
// or a colon, or that is localhost, or has an upper-case letter, names a
// registry), or "" for Docker Hub's.
func registryHost(image string) string {
	first, _, ok := strings.Cut(image, "/")
	if !ok {
		return ""
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
		return first
	}
	return ""
}

// onLoopback reports whether registry (host[:port]) is this machine
// itself: localhost (and *.localhost names), a loopback address or the
// unspecified one (which the kernel connects to this machine).
func onLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // an IPv6 zone
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// close stops serving; calls being answered finish on their own.
func (g *imageGate) close() error {
	err := g.l.Close()
	<-g.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
