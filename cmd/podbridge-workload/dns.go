package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// waitFor is how long lookup and fetch keep trying: a record or a
// Service's endpoints appear moments after the object is made.
const waitFor = 20 * time.Second

// lookup resolves name through the pod's resolver (its resolv.conf: search
// domains, ndots) until it has addresses, and prints them sorted.
func lookup(name string) error {
	var addrs []string
	err := retry(func(ctx context.Context) (err error) {
		addrs, err = net.DefaultResolver.LookupHost(ctx, name)
		return err
	})
	if err != nil {
		fmt.Printf("lookup-error %s=%v\n", name, err)
		return nil
	}
	slices.Sort(addrs)
	fmt.Printf("lookup %s=%s\n", name, strings.Join(addrs, ","))
	return nil
}

// fetch GETs url until it answers 200 and prints the body's first line.
func fetch(url string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	var body string
	err := retry(func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		body, _, _ = strings.Cut(string(b), "\n")
		return nil
	})
	if err != nil {
		fmt.Printf("fetch-error %s=%v\n", url, err)
		return nil
	}
	fmt.Printf("fetched %s=%s\n", url, body)
	return nil
}

// dnsTime times N lookups of NAME, through the pod's resolver or, after
// @, straight to SERVER (an address; port 53), and prints their p50 and
// p99 in microseconds.
func dnsTime(arg string) error {
	count, target, ok := strings.Cut(arg, ":")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || n > 100000 {
		return fmt.Errorf("want N:NAME[@SERVER] with N in 1..100000, not %q", arg)
	}
	name, server, direct := strings.Cut(target, "@")
	resolver := net.DefaultResolver
	if direct {
		resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(server, "53"))
		}}
	}
	took := make([]time.Duration, 0, n)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := resolver.LookupHost(ctx, name)
		took = append(took, time.Since(start))
		cancel()
		if err != nil {
			return fmt.Errorf("looking up %s: %w", name, err)
		}
	}
	slices.Sort(took)
	fmt.Printf("dnstime %s p50=%d p99=%d\n", target, took[n/2].Microseconds(), took[(n*99)/100].Microseconds())
	return nil
}

// retry runs try until it succeeds or waitFor has passed, every half
// second, and returns its last error.
func retry(try func(context.Context) error) error {
	deadline := time.Now().Add(waitFor)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := try(ctx)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
