// Package child runs the child processes podbridge's development
// environment, benchmark and reliability tests start (control-plane
// components, podbridge's webhook and reflector): its one concern is a
// child's life. Each child gets its own process group (a terminal's Ctrl-C
// reaches the parent only, which stops its children in order) and dies
// with its parent, so an interrupted run leaves nothing behind; its output
// is appended to a log file that errors quote; it is stopped gracefully
// and killed when that takes too long, or killed outright for fault tests.
// A Launcher gives the same death to children that other code starts
// (envtest's etcd and apiserver).
package child

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Bounds for a ctx without a deadline: no stop or wait hangs forever.
const (
	// defaultStopTimeout is how long Stop waits after SIGTERM.
	defaultStopTimeout = 20 * time.Second
	// defaultReadyTimeout is how long WaitReady polls.
	defaultReadyTimeout = 2 * time.Minute
)

// readyInterval is WaitReady's polling period: short, because benchmarks
// time start-ups.
const readyInterval = 50 * time.Millisecond

// tailBytes is how much of the log an exit error quotes.
const tailBytes = 3000

// Command says what to run. Start may run the same Command again, as a
// restarted process with the same command line and log.
type Command struct {
	// Name names the process in errors.
	Name string
	Path string
	Args []string
	// Env is added to this process's environment.
	Env []string
	// LogFile, if set, receives stdout and stderr, appended after a line
	// marking the start; its directory is created. Exit errors quote its end.
	LogFile string
	// Output, if set, receives stdout and stderr too.
	Output io.Writer
}

// Process is a started child.
type Process struct {
	cmd     Command
	exec    *exec.Cmd
	started time.Time
	// done is closed once the child has been reaped; err is then its exit.
	done chan struct{}
	err  error
}

// Start starts c.
func Start(c Command) (*Process, error) {
	var out []io.Writer
	var logFile *os.File
	if c.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(c.LogFile), 0o755); err != nil {
			return nil, fmt.Errorf("creating the log directory of %s: %w", c.Name, err)
		}
		var err error
		if logFile, err = os.OpenFile(c.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, fmt.Errorf("opening the log of %s: %w", c.Name, err)
		}
		// Runs of the same command share the log: mark where each begins.
		if _, err := fmt.Fprintf(logFile, "---- started %s\n", time.Now().Format(time.RFC3339Nano)); err != nil {
			logFile.Close()
			return nil, fmt.Errorf("writing the log of %s: %w", c.Name, err)
		}
		out = append(out, logFile)
	}
	if c.Output != nil {
		out = append(out, c.Output)
	}
	cmd := exec.Command(c.Path, c.Args...)
	switch len(out) {
	case 1:
		cmd.Stdout = out[0] // a lone file is handed to the child as is: no copying.
	case 2:
		cmd.Stdout = io.MultiWriter(out...)
	}
	cmd.Stderr = cmd.Stdout
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	// When output is copied through a pipe, a grandchild holding it open
	// must not keep Wait from returning once the child has ended.
	cmd.WaitDelay = 5 * time.Second
	p := &Process{cmd: c, exec: cmd, started: time.Now(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", c.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// PID is the child's process ID.
func (p *Process) PID() int { return p.exec.Process.Pid }

// Started is when Start was called.
func (p *Process) Started() time.Time { return p.started }

// Exited returns nil while the child runs, and once it has ended an error
// saying how, with the end of its log: waits call it to fail fast.
func (p *Process) Exited() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	how := p.err
	if how == nil {
		how = errors.New("exit status 0")
	}
	if p.cmd.LogFile == "" {
		return fmt.Errorf("%s exited: %w", p.cmd.Name, how)
	}
	return fmt.Errorf("%s exited: %w; %s", p.cmd.Name, how, LogEnd(p.cmd.LogFile))
}

// Wait waits until the child has ended and returns its exit error (nil
// for status 0), or ctx's error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s to end: %w", p.cmd.Name, ctx.Err())
	}
}

// Stop sends SIGTERM and waits until the child has ended; if it has not
// when ctx ends (after 20 s for a ctx without a deadline), Stop kills it
// and reports that. Stopping an ended child does nothing.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	ctx, cancel := bounded(ctx, defaultStopTimeout)
	defer cancel()
	started := time.Now()
	if err := p.exec.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s: %w", p.cmd.Name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		if err := p.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("%s did not stop within %s and was killed", p.cmd.Name, time.Since(started).Round(time.Millisecond))
	}
}

// Kill sends SIGKILL, as the OOM killer or a node failure would, and waits
// until the child has ended. Killing an ended child does nothing.
func (p *Process) Kill() error {
	if err := p.exec.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing %s: %w", p.cmd.Name, err)
	}
	<-p.done
	return nil
}

// WaitReady polls url (a health or metrics endpoint) until it answers 200
// OK, and fails fast when the child ends first. ctx bounds it (2 minutes
// for a ctx without a deadline).
func (p *Process) WaitReady(ctx context.Context, url string) error {
	ctx, cancel := bounded(ctx, defaultReadyTimeout)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, readyInterval, true, func(ctx context.Context) (bool, error) {
		if err := p.Exited(); err != nil {
			return false, err
		}
		err := get(ctx, url)
		if err != nil && ctx.Err() == nil { // an attempt cut short by the deadline says nothing.
			last = err
		}
		return err == nil, nil
	})
	switch {
	case err == nil:
		return nil
	case last == nil:
		return fmt.Errorf("waiting for %s to be ready: %w", p.cmd.Name, err)
	default:
		return fmt.Errorf("waiting for %s to be ready: %w (last attempt: %w)", p.cmd.Name, err, last)
	}
}

// bounded returns ctx, given timeout as its deadline if it has none.
func bounded(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// get requests url once, bounded so one hung request cannot use up the wait.
func get(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // lets the connection be reused.
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// LogEnd quotes the end of a component's log, for an error saying why it
// did not start.
func LogEnd(path string) string {
	return fmt.Sprintf("the end of %s:\n%s", path, Tail(path, tailBytes))
}

// Tail returns the last size bytes of a file, to quote a log (or the
// error reading it).
func Tail(path string, size int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	offset := max(0, info.Size()-size)
	buf := make([]byte, info.Size()-offset)
	if _, err := f.ReadAt(buf, offset); err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	return string(buf)
}

// Launcher writes into dir a script that runs binary through setpriv with
// the parent-death signal, and returns the script's path: a program that
// starts children itself (envtest starts etcd and the apiserver, with no
// way to set their SysProcAttr) can start it in place of binary, and the
// child then dies with its parent as Start's children do, instead of
// keeping its ports, memory and CPU after a SIGKILLed `podbridge-dev` or a
// timed-out test binary. Without setpriv (util-linux), binary is returned
// as it is and the child outlives a killed parent, as before.
func Launcher(dir, binary string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if errors.Is(err, exec.ErrNotFound) {
		return binary, nil
	}
	if err != nil {
		return "", fmt.Errorf("finding setpriv: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the launcher folder %s: %w", dir, err)
	}
	path := filepath.Join(dir, filepath.Base(binary))
	// The signal is set only once setpriv runs; a parent that died before
	// then sends none, so the shell after it checks that its parent is
	// still the one that started the launcher.
	script := fmt.Sprintf(`#!/bin/sh
exec %s --pdeathsig KILL -- /bin/sh -c '[ "$PPID" = "$0" ] && exec "$@"' "$PPID" %s "$@"
`, shellQuote(setpriv), shellQuote(binary))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("writing the launcher of %s: %w", binary, err)
	}
	return path, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Running says whether process pid exists and is not a zombie (one that
// has ended, not yet reaped by its parent).
func Running(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// Children lists the processes whose parent is pid.
func Children(pid int) []int {
	return Find(func(p int) bool {
		_, ppid, ok := procStat(p)
		return ok && ppid == pid
	})
}

// Find lists the processes of this machine that match.
func Find(match func(pid int) bool) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && match(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat reads a process's state and parent from /proc/PID/stat.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	stat := string(b)
	f := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}
