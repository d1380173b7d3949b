package kubeletproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// DefaultPort is the kubelet API port podbridge listens on when none is
// given: not the kubelet's 10250, which a real kubelet on the same machine
// would hold.
const DefaultPort = 10350

// Options configure the kubelet API server.
type Options struct {
	// BindAddress and Port are where the server listens.
	BindAddress string
	Port        int
	// Advertise is what virtual nodes carry as their address and kubelet
	// port: where the virtual apiserver reaches this server (a Service in
	// a cluster, loopback in podbridge-dev and tests).
	Advertise translate.KubeletEndpoint
	// MaxStreams caps the log reads and streams carried at once
	// (DefaultMaxStreams if not positive); more are answered 429.
	MaxStreams int
	// Certs says where the serving certificate comes from and which client
	// CA the virtual apiserver's kubelet client certificate must chain to
	// (the modes of the webhook's). Its Host, Namespace and Recorder are
	// filled in here.
	Certs certs.Options
}

// Validate reports what New cannot run with, by field.
func (o Options) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, field.Invalid(path.Child("port"), o.Port, "must be a port number"))
	}
	if o.Advertise.Address == "" {
		errs = append(errs, field.Required(path.Child("advertise", "address"), "virtual nodes must advertise where the virtual apiserver reaches this server"))
	}
	if o.Advertise.Port < 1 || o.Advertise.Port > 65535 {
		errs = append(errs, field.Invalid(path.Child("advertise", "port"), o.Advertise.Port, "must be a port number"))
	}
	if o.Certs.CertDir == "" {
		errs = append(errs, field.Required(path.Child("certs", "certDir"), "the serving certificate is read from there"))
	}
	return errs
}

// Server serves the kubelet API over TLS to the virtual apiserver only. It
// is a manager Runnable that runs on every replica, leader or not.
type Server struct {
	o       Options
	handler http.Handler
	keeper  *certs.Keeper
}

// New returns a Server carrying requests to the host with host,
// podbridge's host identity. It prepares the serving certificate and the
// trusted client CA when it starts.
func New(o Options, host *rest.Config, hostReader, virtualReader client.Reader, cfg translate.Config, recorder events.EventRecorder) (*Server, error) {
	if err := o.Validate(field.NewPath("kubelet")).ToAggregate(); err != nil {
		return nil, fmt.Errorf("kubelet API configuration: %w", err)
	}
	handler, err := NewHandler(host, hostReader, virtualReader, cfg)
	if err != nil {
		return nil, err
	}
	handler.MaxStreams = o.MaxStreams
	hostClient, err := client.New(host, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating host client: %w", err)
	}
	certOpts := o.Certs
	certOpts.Host = hostClient
	certOpts.Namespace = cfg.HostNamespace
	certOpts.VCluster = cfg.VCluster
	certOpts.Recorder = recorder
	keeper, err := certs.NewKeeper(certOpts)
	if err != nil {
		return nil, fmt.Errorf("kubelet API certificates: %w", err)
	}
	return &Server{o: o, handler: handler, keeper: keeper}, nil
}

// AddToManager builds a Server and adds it to mgr, a manager on the host
// cluster (the reflector's, which the command runs it beside): it carries
// requests with mgr's host identity, reads host pods through mgr's
// uncached reader and the virtual cluster's through an uncached client of
// virtual, and records its certificates' events as component.
func AddToManager(mgr manager.Manager, o Options, virtual *rest.Config, cfg translate.Config, component string) error {
	virtualReader, err := client.New(virtual, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return fmt.Errorf("creating virtual cluster client: %w", err)
	}
	server, err := New(o, mgr.GetConfig(), mgr.GetAPIReader(), virtualReader, cfg, mgr.GetEventRecorder(component))
	if err != nil {
		return err
	}
	if err := mgr.Add(server); err != nil {
		return fmt.Errorf("adding the kubelet API: %w", err)
	}
	return nil
}

// NeedLeaderElection is false: every replica answers the virtual apiserver.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx is done, keeping the certificates current.
func (s *Server) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("kubelet-api")
	if err := s.keeper.Prepare(ctx); err != nil {
		return fmt.Errorf("preparing the kubelet API's serving certificate and client CA: %w", err)
	}
	watcher, err := certwatcher.New(filepath.Join(s.o.Certs.CertDir, certs.CertFile), filepath.Join(s.o.Certs.CertDir, certs.KeyFile))
	if err != nil {
		return fmt.Errorf("loading the kubelet API's serving certificate: %w", err)
	}
	config := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: watcher.GetCertificate,
		// HTTP/1.1 only: exec, attach and port-forward upgrade the
		// connection, which HTTP/2 cannot.
		NextProtos: []string{"http/1.1"},
	}
	// Only the virtual apiserver's kubelet client certificate: anyone else
	// who reaches the port is refused in the handshake, before a byte of
	// a request is read.
	s.keeper.ClientVerifier().ConfigureServer(config)
	listener, err := net.Listen("tcp", net.JoinHostPort(s.o.BindAddress, strconv.Itoa(s.o.Port)))
	if err != nil {
		return fmt.Errorf("kubelet API listener: %w", err)
	}
	open := &connections{conns: map[net.Conn]struct{}{}}
	server := &http.Server{
		Handler: s.handler,
		// No read or write timeout: logs -f, exec and port-forward last as
		// long as the tenant keeps them open. The header timeout also
		// bounds the TLS handshake, so a half-open caller is dropped.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		BaseContext:       func(net.Listener) context.Context { return logf.IntoContext(context.Background(), log) },
		// Refused handshakes are worth reading: logged as podbridge logs.
		ErrorLog: stdlog.New(logWriter{log}, "", 0),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = watcher.Start(ctx) }()
	go func() { _ = s.keeper.Start(ctx) }()
	go func() {
		<-ctx.Done()
		shutdown, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = server.Shutdown(shutdown)
		// Shutdown leaves hijacked connections (streams) alone: close
		// them, and the proxy closes their host halves.
		open.closeAll()
	}()
	log.Info("Serving the kubelet API for virtual nodes", "address", listener.Addr().String(), "advertised", net.JoinHostPort(s.o.Advertise.Address, strconv.Itoa(int(s.o.Advertise.Port))))
	err = server.Serve(tls.NewListener(open.listen(listener), config))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// connections tracks the server's connections, hijacked ones included,
// so stopping the server ends every stream it carries. A connection
// leaves the set when it is closed: a hijacked one never reaches the
// server's StateClosed, so tracking by ConnState would keep every stream
// ever carried (a tenant looping exec would grow it without bound).
type connections struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// listen wraps l so each accepted connection is in the set until closed.
func (c *connections) listen(l net.Listener) net.Listener {
	return &trackingListener{Listener: l, open: c}
}

func (c *connections) add(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns[conn] = struct{}{}
}

func (c *connections) remove(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.conns, conn)
}

func (c *connections) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

func (c *connections) closeAll() {
	c.mu.Lock()
	conns := make([]net.Conn, 0, len(c.conns))
	for conn := range c.conns {
		conns = append(conns, conn)
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close() // removes it from the set.
	}
}

type trackingListener struct {
	net.Listener
	open *connections
}

func (l *trackingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	t := &trackedConn{Conn: conn, open: l.open}
	l.open.add(t)
	return t, nil
}

type trackedConn struct {
	net.Conn
	open *connections
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.open.remove(c) })
	return c.Conn.Close()
}

// logWriter puts the HTTP server's own messages (refused TLS handshakes)
// into podbridge's log.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info("Kubelet API server message", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}
