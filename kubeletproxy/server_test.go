package kubeletproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A tenant looping `kubectl exec` makes one hijacked connection per
// stream. Each must leave the server's set once closed (a hijacked
// connection never reaches StateClosed), while one still open is closed
// when the server stops.
func TestHijackedConnectionsLeaveTheSetWhenClosed(t *testing.T) {
	open := &connections{conns: map[net.Conn]struct{}{}}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	server := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			_ = buf.Flush()
			if r.URL.Path == "/hold" {
				<-release
				return // left open: only closeAll ends it.
			}
			_ = conn.Close()
		}),
	}
	go func() { _ = server.Serve(open.listen(listener)) }()
	defer func() { _ = server.Close() }()
	defer close(release)

	upgrade := func(path string) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v", resp.Status)
		}
		return conn
	}
	const streams = 50
	for range streams {
		conn := upgrade("/once")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, conn) // until the server closes it.
		_ = conn.Close()
	}
	held := upgrade("/hold")
	defer held.Close()
	deadline := time.Now().Add(5 * time.Second)
	for open.len() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := open.len(); n != 1 {
		t.Fatalf("%d connections tracked after %d closed streams and one open, want 1", n, streams)
	}
	open.closeAll()
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the held stream was not closed by closeAll: %v", err)
	}
	if n := open.len(); n != 0 {
		t.Fatalf("%d connections tracked after closeAll", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
