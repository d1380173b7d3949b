package realnode

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
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
