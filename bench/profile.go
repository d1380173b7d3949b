package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// profileWindow is the length of each CPU profile: short enough that a
// scenario of a few seconds gets one of its own, long enough to sample.
const profileWindow = 10 * time.Second

// profiler takes back-to-back CPU profiles of podbridge's webhook and
// reflector, each filed under the scenario running when it started, and
// heap profiles on demand, into dir (Config.ProfileDir). `go tool pprof`
// merges the files of one scenario.
type profiler struct {
	dir     string
	targets map[string]string // process name → pprof base URL
	mu      sync.Mutex
	current string
	count   int
	wg      sync.WaitGroup
}

func newProfiler(dir string, targets map[string]string) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	return &profiler{dir: dir, targets: targets, current: "start-up"}, nil
}

// scenario files the following profiles under name.
func (p *profiler) scenario(name string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = fileSafe(name)
}

// downPoll is how often a process is asked again when its last window did
// not run its length: it is down, or was stopped mid-window (which ends the
// window early). A restarted reflector (scenario 6) is so profiled from
// when it first listens, not from the next window's turn, which missed
// most of a cold start.
const downPoll = 100 * time.Millisecond

// run takes CPU profiles until ctx is done, back to back.
func (p *profiler) run(ctx context.Context) {
	for name, base := range p.targets {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for ctx.Err() == nil {
				began := time.Now()
				p.save(ctx, name, "cpu", base+fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(profileWindow/time.Second)))
				if time.Since(began) >= profileWindow {
					continue
				}
				select {
				case <-ctx.Done():
				case <-time.After(downPoll):
				}
			}
		}()
	}
}

// heap saves a heap profile of every process, named after what.
func (p *profiler) heap(ctx context.Context, what string) {
	if p == nil {
		return
	}
	for name, base := range p.targets {
		p.save(ctx, name, "heap-"+fileSafe(what), base+"/debug/pprof/heap?gc=1")
	}
}

func (p *profiler) save(ctx context.Context, process, kind, url string) {
	p.mu.Lock()
	scenario := p.current
	p.count++
	path := filepath.Join(p.dir, fmt.Sprintf("%s.%s.%s.%03d.pb.gz", scenario, process, kind, p.count))
	p.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the process is restarting, or the run is over.
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil || len(data) == 0 {
		return
	}
	_ = os.WriteFile(path, data, 0o644)
}

// wait returns once every profile under way is written.
func (p *profiler) wait() {
	if p != nil {
		p.wg.Wait()
	}
}

func fileSafe(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, name)
}
