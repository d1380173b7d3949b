// Command podbridge-workload is the one program of the real node's images
// (make node-bins): the pause image runs `pause`, the workload image runs
// whatever steps a test pod names, so end-to-end tests check from inside a
// real container what tenants rely on. It is static and uses the standard
// library only, so the image needs no base layer.
//
// Each argument is a step, run in order: env, cat:PATH, whoami[:HOST:PORT],
// get:URL (status code, no certificate checked: hostile-tenant probes),
// lookup:NAME and fetch:URL (through the pod's resolver, waiting for the
// name or the Service to answer), dnstime:N:NAME[@SERVER] (N lookups'
// latency), sleep:DUR,
// exit:CODE, crash, watch:PATH, refresh[:TIMEOUT], serve:ADDR,
// pause[:LINGER], write:PATH (stdin into PATH, for exec), kill:PID
// (SIGTERM, for exec: ends the container's process 1). Output lines are
// "key=value" or "== header" so tests can match them. Invoked as `tar` or
// `test` (the image links both names to it) it plays what kubectl cp runs;
// see tar.go.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// saDir is where Kubernetes mounts the service-account token and CA.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	switch filepath.Base(os.Args[0]) {
	case "tar":
		os.Exit(tarMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	case "test":
		os.Exit(testMain(os.Args[1:]))
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM, syscall.SIGINT)
	steps := os.Args[1:]
	if len(steps) == 0 {
		steps = []string{"pause"}
	}
	for _, step := range steps {
		name, arg, _ := strings.Cut(step, ":")
		if err := run(name, arg, terms); err != nil {
			fmt.Printf("error=%s: %v\n", step, err)
			os.Exit(1)
		}
	}
}

func run(name, arg string, terms <-chan os.Signal) error {
	switch name {
	case "env":
		env := os.Environ()
		slices.Sort(env)
		for _, e := range env {
			fmt.Println(e)
		}
	case "cat":
		b, err := os.ReadFile(arg)
		if err != nil {
			return err
		}
		fmt.Printf("== %s\n%s\n== end\n", arg, b)
	case "whoami":
		token, err := os.ReadFile(saDir + "/token")
		if err != nil {
			return err
		}
		user, err := selfSubjectReview(token, arg)
		if err != nil {
			return err
		}
		fmt.Printf("whoami=%s\n", user)
	case "refresh":
		return refresh(arg, terms)
	case "get":
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probing what answers, not trusting it
		}}
		resp, err := c.Get(arg)
		if err != nil {
			fmt.Printf("get-error=%v\n", err)
			return nil
		}
		resp.Body.Close()
		fmt.Printf("get=%d\n", resp.StatusCode)
	case "lookup":
		return lookup(arg)
	case "fetch":
		return fetch(arg)
	case "dnstime":
		return dnsTime(arg)
	case "sleep":
		d, err := time.ParseDuration(arg)
		if err != nil {
			return err
		}
		time.Sleep(d)
	case "exit":
		code, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		fmt.Printf("exiting=%d\n", code)
		os.Exit(code)
	case "crash":
		fmt.Println("crashing=true")
		panic("crash step")
	case "write":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		if err := os.WriteFile(arg, b, 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote=%d\n", len(b))
	case "kill":
		pid, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return err
		}
		fmt.Printf("killed=%d\n", pid)
	case "watch":
		return watch(arg, terms)
	case "serve":
		return serve(arg, terms)
	case "pause":
		sig := <-terms
		onTerm(sig, arg)
	default:
		return fmt.Errorf("unknown step %q", name)
	}
	return nil
}

// onTerm reports the signal and, when linger is a duration, keeps running
// that long, so a test can read the report before the container ends.
func onTerm(sig os.Signal, linger string) {
	fmt.Printf("signal=%s\n", sig)
	if d, err := time.ParseDuration(linger); err == nil {
		time.Sleep(d)
	}
	fmt.Println("stopped=true")
	os.Exit(0)
}

// watch prints path's content each time it changes until a signal.
func watch(path string, terms <-chan os.Signal) error {
	var last []byte
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for first := true; ; first = false {
		b, err := os.ReadFile(path)
		if err == nil && (first || !bytes.Equal(b, last)) {
			fmt.Printf("== %s\n%s\n== end\n", path, b)
			last = b
		}
		select {
		case sig := <-terms:
			onTerm(sig, "")
		case <-tick.C:
		}
	}
}

// refresh reports the mounted token (a digest: tokens stay out of logs),
// waits until the kubelet writes a refreshed one into the volume (within
// timeout, default 2m), and asks the apiserver who the new token is.
func refresh(timeout string, terms <-chan os.Signal) error {
	wait := 2 * time.Minute
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil {
			return err
		}
		wait = d
	}
	first, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return err
	}
	fmt.Printf("token=%s\n", digest(first))
	deadline := time.After(wait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case sig := <-terms:
			onTerm(sig, "")
		case <-deadline:
			return fmt.Errorf("the token did not change within %s", wait)
		case <-tick.C:
		}
		token, err := os.ReadFile(saDir + "/token")
		if err != nil || len(bytes.TrimSpace(token)) == 0 || bytes.Equal(token, first) {
			continue // mid-swap, or not refreshed yet
		}
		fmt.Printf("token-refreshed=%s\n", digest(token))
		user, err := selfSubjectReview(token, "")
		if err != nil {
			return err
		}
		fmt.Printf("whoami-refreshed=%s\n", user)
		return nil
	}
}

// digest names a token without showing it.
func digest(token []byte) string {
	sum := sha256.Sum256(bytes.TrimSpace(token))
	return hex.EncodeToString(sum[:8])
}

// serve answers /ready with 200 until POST /unready, then 503, so a test
// can flip a readiness probe; SIGTERM stops it gracefully.
func serve(addr string, terms <-chan os.Signal) error {
	var unready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if unready.Load() {
			http.Error(w, "unready", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/unready", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		unready.Store(true)
		fmt.Println("unready=true")
		_, _ = fmt.Fprintln(w, "unready")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		name, _ := os.Hostname()
		_, _ = fmt.Fprintf(w, "hostname=%s\n", name)
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("serving=%s\n", l.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := <-terms
		fmt.Printf("signal=%s\n", sig)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		return err
	}
	fmt.Println("stopped=true")
	os.Exit(0)
	return nil
}

// selfSubjectReview asks the apiserver at address (host:port), or named by
// KUBERNETES_SERVICE_HOST and _PORT when empty, who token is, trusting
// only the mounted CA: what an in-cluster client does.
func selfSubjectReview(token []byte, address string) (string, error) {
	ca, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return "", fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if address != "" {
		if host, port, err = net.SplitHostPort(address); err != nil {
			return "", err
		}
	}
	if host == "" || port == "" {
		return "", fmt.Errorf("KUBERNETES_SERVICE_HOST or _PORT is not set")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	req, err := http.NewRequest(http.MethodPost, "https://"+net.JoinHostPort(host, port)+"/apis/authentication.k8s.io/v1/selfsubjectreviews", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	var phases callPhases
	resp, err := c.Do(phases.trace(req))
	if err != nil {
		return "", fmt.Errorf("%w (%s)", err, phases.String())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &review); err != nil {
		return "", err
	}
	return review.Status.UserInfo.Username, nil
}

// callPhases records when a call's connection, TLS handshake and request
// write finished, so a call that times out says where it stood.
type callPhases struct {
	start                         time.Time
	connected, handshake, written atomic.Int64 // nanoseconds after start; 0: not reached
}

func (p *callPhases) trace(req *http.Request) *http.Request {
	p.start = time.Now()
	since := func(v *atomic.Int64) { v.Store(int64(time.Since(p.start))) }
	return req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		ConnectDone:      func(string, string, error) { since(&p.connected) },
		TLSHandshakeDone: func(tls.ConnectionState, error) { since(&p.handshake) },
		WroteRequest:     func(httptrace.WroteRequestInfo) { since(&p.written) },
	}))
}

func (p *callPhases) String() string {
	at := func(v *atomic.Int64) string {
		if d := v.Load(); d > 0 {
			return time.Duration(d).Round(time.Millisecond).String()
		}
		return "never"
	}
	return fmt.Sprintf("connected after %s, TLS done after %s, request written after %s", at(&p.connected), at(&p.handshake), at(&p.written))
}
