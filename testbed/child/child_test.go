package child

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podbridge/podbridge/testbed/testwait"
)

// behaviourEnv makes the test binary, started again as a child, act as one
// of the children below instead of running tests.
const behaviourEnv = "CHILD_TEST_BEHAVIOUR"

func TestMain(m *testing.M) {
	switch os.Getenv(behaviourEnv) {
	case "":
		os.Exit(m.Run())
	case "graceful": // ends on SIGTERM, saying so.
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		fmt.Println("ready")
		<-term
		fmt.Println("got SIGTERM")
		os.Exit(0)
	case "stubborn": // ignores SIGTERM.
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour) // the child's life, not a test's wait.
		}
	case "launching": // starts a stubborn child through a launcher, as envtest would: no SysProcAttr.
		launcher, err := Launcher(os.Getenv("CHILD_TEST_LAUNCHERS"), os.Getenv("CHILD_TEST_BINARY"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		cmd := exec.Command(launcher, "-test.run=^$")
		cmd.Env = append(os.Environ(), behaviourEnv+"=stubborn")
		out, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		// Ready once the child runs the binary, past the launcher.
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			fmt.Printf("the launched child said %q\n", line)
			os.Exit(1)
		}
		fmt.Printf("child=%d\nready\n", cmd.Process.Pid)
		for {
			time.Sleep(time.Hour) // the child's life, not a test's wait.
		}
	case "fail":
		fmt.Println("some output before failing")
		fmt.Fprintln(os.Stderr, "an error on stderr")
		os.Exit(3)
	case "env":
		fmt.Println("value=" + os.Getenv("CHILD_TEST_VALUE"))
		os.Exit(0)
	}
	os.Exit(2)
}

// testChild is a Command re-running the test binary as behaviour, logging
// into a fresh directory.
func testChild(t *testing.T, behaviour string) Command {
	t.Helper()
	return Command{
		Name:    behaviour,
		Path:    os.Args[0],
		Env:     []string{behaviourEnv + "=" + behaviour},
		LogFile: filepath.Join(t.TempDir(), "logs", behaviour+".log"),
	}
}

// lineWaiter is an Output that closes seen once a line has been written.
type lineWaiter struct {
	line string
	seen chan struct{}

	mu  sync.Mutex
	buf bytes.Buffer
}

func newLineWaiter(line string) *lineWaiter {
	return &lineWaiter{line: line + "\n", seen: make(chan struct{})}
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.line)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.line) {
		close(w.seen)
	}
	return len(p), nil
}

// startReady starts c and waits until the child says it is ready (its
// signal handling is in place).
func startReady(t *testing.T, c Command) *Process {
	t.Helper()
	ready := newLineWaiter("ready")
	c.Output = ready
	p, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	select {
	case <-ready.seen:
	case <-p.done:
		t.Fatalf("the child ended before it was ready: %v", p.Exited())
	case <-time.After(time.Minute):
		t.Fatal("the child did not say it was ready within a minute")
	}
	return p
}

func readLog(t *testing.T, c Command) string {
	t.Helper()
	data, err := os.ReadFile(c.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestStopEndsAChildGracefully(t *testing.T) {
	c := testChild(t, "graceful")
	p := startReady(t, c)
	if err := p.Exited(); err != nil {
		t.Fatalf("Exited of a running child: %v", err)
	}
	if pgid, err := syscall.Getpgid(p.PID()); err != nil || pgid != p.PID() {
		t.Errorf("the child's process group is %d (%v), want its own, %d", pgid, err, p.PID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Errorf("Wait after a graceful stop: %v, want exit status 0", err)
	}
	if err := p.Exited(); err == nil || !strings.Contains(err.Error(), "exit status 0") {
		t.Errorf("Exited after a graceful stop: %v, want exit status 0", err)
	}
	log := readLog(t, c)
	if !strings.HasPrefix(log, "---- started ") || !strings.Contains(log, "ready\ngot SIGTERM\n") {
		t.Errorf("log:\n%s\nwant the start marker, then the child's output", log)
	}
	if err := p.Stop(ctx); err != nil {
		t.Errorf("Stop of an ended child: %v", err)
	}
}

func TestStopKillsAChildThatIgnoresSIGTERM(t *testing.T) {
	p := startReady(t, testChild(t, "stubborn"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	started := time.Now()
	err := p.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), "was killed") {
		t.Fatalf("Stop: %v, want a report that it was killed", err)
	}
	if took := time.Since(started); took > 30*time.Second {
		t.Errorf("Stop took %s with a 300ms grace period", took)
	}
	if err := p.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("Wait: %v, want signal: killed", err)
	}
}

func TestKill(t *testing.T) {
	c := testChild(t, "graceful")
	p := startReady(t, c)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	// Kill returns once the child is gone: no wait needed.
	if err := p.Exited(); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("Exited after Kill: %v, want signal: killed", err)
	}
	if log := readLog(t, c); strings.Contains(log, "got SIGTERM") {
		t.Errorf("the killed child saw SIGTERM:\n%s", log)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill of an ended child: %v", err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("Stop of an ended child: %v", err)
	}
}

func TestExitedQuotesTheLog(t *testing.T) {
	c := testChild(t, "fail")
	p, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var exit *exec.ExitError
	if err := p.Wait(ctx); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("Wait: %v, want exit status 3", err)
	}
	err = p.Exited()
	for _, want := range []string{"fail exited: exit status 3", c.LogFile, "some output before failing", "an error on stderr"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Exited: %v\nwant it to contain %q", err, want)
		}
	}
}

func TestWaitGivesUpWithTheContext(t *testing.T) {
	p := startReady(t, testChild(t, "stubborn"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context: %v", err)
	}
	if err := p.Exited(); err != nil {
		t.Errorf("the child ended: %v", err)
	}
}

// A Command started again appends to the same log, each run marked, and
// hands the child its Env.
func TestStartAgainAppendsToTheLog(t *testing.T) {
	c := testChild(t, "env")
	c.Env = append(c.Env, "CHILD_TEST_VALUE=42")
	for range 2 {
		p, err := Start(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	log := readLog(t, c)
	if n := strings.Count(log, "---- started "); n != 2 {
		t.Errorf("%d start markers in the log, want 2:\n%s", n, log)
	}
	if n := strings.Count(log, "value=42\n"); n != 2 {
		t.Errorf("%d runs saw CHILD_TEST_VALUE=42, want 2:\n%s", n, log)
	}
}

func TestStartReportsAMissingBinary(t *testing.T) {
	c := Command{Name: "missing", Path: filepath.Join(t.TempDir(), "no-such-binary"), LogFile: filepath.Join(t.TempDir(), "missing.log")}
	if _, err := Start(c); err == nil || !strings.Contains(err.Error(), "starting missing") {
		t.Errorf("Start: %v, want an error naming the process", err)
	}
}

func TestWaitReadyPollsUntilOK(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if requests.Add(1) < 4 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	p := startReady(t, testChild(t, "stubborn"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.WaitReady(ctx, srv.URL+"/readyz"); err != nil {
		t.Fatal(err)
	}
	if n := requests.Load(); n != 4 {
		t.Errorf("WaitReady returned after %d requests, want 4 (three refused, one OK)", n)
	}
}

func TestWaitReadyFailsFastWhenTheChildEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "never ready", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	p, err := Start(testChild(t, "fail"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err = p.WaitReady(ctx, srv.URL)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "some output before failing") {
		t.Fatalf("WaitReady: %v, want the child's exit and log", err)
	}
	if ctx.Err() != nil {
		t.Error("WaitReady used up its whole context instead of failing fast")
	}
}

func TestWaitReadyIsBoundedByTheContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "never ready", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	p := startReady(t, testChild(t, "stubborn"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.WaitReady(ctx, srv.URL)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("WaitReady: %v, want a timeout quoting the last answer", err)
	}
}

// A child started through a Launcher, by a parent that sets no
// SysProcAttr, dies when that parent is killed; the launcher quotes paths
// with spaces and quotes.
func TestLauncherChildDiesWithItsParent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "it's a dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "the test's binary")
	if err := os.Symlink(os.Args[0], binary); err != nil {
		t.Fatal(err)
	}
	c := testChild(t, "launching")
	c.Env = append(c.Env, "CHILD_TEST_LAUNCHERS="+filepath.Join(dir, "launchers"), "CHILD_TEST_BINARY="+binary)
	parent := startReady(t, c)
	var pid int
	_, said, _ := strings.Cut(readLog(t, c), "child=")
	if _, err := fmt.Sscanf(said, "%d", &pid); err != nil {
		t.Fatalf("the parent did not say its child's PID: %v\n%s", err, readLog(t, c))
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if !Running(pid) {
		t.Fatalf("the launched child %d is not running:\n%s", pid, readLog(t, c))
	}
	if err := parent.Kill(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, time.Minute, "the launched child gone with its parent", func(context.Context) (bool, string) {
		return !Running(pid), fmt.Sprintf("process %d runs", pid)
	})
}
