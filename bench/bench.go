package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// Output files in Config.OutDir.
const (
	ResultsMarkdown = "results.md"
	ResultsJSON     = "results.json"
	LatencyPlot     = "latency-cdf.png"
)

// Run runs every scenario once and writes the report, the JSON and the
// plot into cfg.OutDir, also when a scenario fails (with the figures
// gathered until then and the error).
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	// The build is not part of the run: on a cold build cache it takes
	// minutes on 2 cores, more on a busy machine, and Timeout bounds podbridge.
	binary, err := buildPodbridge(ctx, cfg)
	if err != nil {
		return nil, err
	}
	cfg.PodbridgeBinary = binary
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := &Results{
		Started: time.Now().UTC(),
		Sizes:   cfg.Sizes,
		Machine: Machine{CPUs: runtime.NumCPU(), MemoryGiB: round2(memTotalGiB()), GoVersion: runtime.Version(), LoadAtStart: loadAverage()},
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", cfg.OutDir, err)
	}
	runErr := run(ctx, cfg, res)
	res.Machine.LoadAtEnd = loadAverage()
	if self, err := sampleProc(os.Getpid()); err == nil {
		res.Machine.BenchCPUSeconds = self.CPU.Seconds()
	}
	res.WallSeconds = time.Since(res.Started).Seconds()
	if runErr != nil {
		res.Error = runErr.Error()
	}
	res.Targets = evaluateTargets(res)
	res.Bounds = machineBounds(res)
	return res, errors.Join(runErr, write(cfg, res))
}

func validate(cfg Config) error {
	var errs []error
	if len(cfg.Concurrency) == 0 {
		errs = append(errs, errors.New("at least one concurrency is needed"))
	}
	if cfg.ScalePods > cfg.Nodes*cfg.PodsPerNode {
		errs = append(errs, fmt.Errorf("%d scale pods do not fit on %d nodes of %d pods", cfg.ScalePods, cfg.Nodes, cfg.PodsPerNode))
	}
	if cfg.ChurnWaves < 1 || cfg.ChurnPods < cfg.ChurnWaves {
		errs = append(errs, errors.New("churn needs at least one pod per wave"))
	}
	if cfg.LagRate <= 0 || cfg.LagSeconds <= 0 {
		errs = append(errs, errors.New("the lag rate and duration must be positive"))
	}
	if cfg.OrphanGraceSeconds <= 10 {
		errs = append(errs, errors.New("the orphan grace period must exceed the webhook timeout (10s)"))
	}
	if cfg.Timeout <= 0 {
		errs = append(errs, errors.New("a timeout is needed"))
	}
	return errors.Join(errs...)
}

// run is every scenario in turn; the first failure ends the run.
func run(ctx context.Context, cfg Config, res *Results) (err error) {
	e, err := startEnv(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, e.stop()) }()
	if e.prof != nil {
		pctx, stopProfiling := context.WithCancel(ctx)
		e.prof.run(pctx)
		defer e.prof.wait()
		defer stopProfiling()
	}
	idle, err := sampleProc(e.pb.reflector.PID())
	if err != nil {
		return err
	}
	res.Cost.ReflectorIdleRSSMiB = mib(idle.RSS)

	scenario := func(name string, f func() error) error {
		e.log.Info("Started scenario", "scenario", name)
		e.prof.scenario(name)
		began := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		e.log.Info("Finished scenario", "scenario", name, "seconds", time.Since(began).Seconds())
		return nil
	}
	idleRSS := res.Cost.ReflectorIdleRSSMiB
	steps := []struct {
		name string
		f    func() error
	}{
		{"1+2 create latency and admission stages", func() (err error) {
			res.Create, res.Admission, err = e.runCreate(ctx)
			return err
		}},
		{"5 cost per pod", func() (err error) {
			res.Cost, err = e.runCost(ctx)
			res.Cost.ReflectorIdleRSSMiB = idleRSS
			return err
		}},
		{"3 deployment time to Ready", func() (err error) {
			res.Deployment, err = e.runDeployment(ctx)
			return err
		}},
		{"4+6 reflection lag and cold start", func() (err error) {
			var mem scaleMemory
			res.Reflection, res.ColdStart, mem, err = e.runScale(ctx)
			res.Cost.ReflectorPeakRSSMiBAtN = mib(mem.reflectorPeak)
			res.Cost.WebhookPeakRSSMiBAtN = mib(mem.webhookPeak)
			if n := res.Reflection.Pods; n > 0 && mem.reflectorPeak > 0 {
				res.Cost.ReflectorKiBPerPod = (res.Cost.ReflectorPeakRSSMiBAtN - idleRSS) * 1024 / float64(n)
			}
			return err
		}},
		{"7 churn and orphans", func() (err error) {
			res.Churn, err = e.runChurn(ctx)
			return err
		}},
	}
	for _, s := range steps {
		if err := scenario(s.name, s.f); err != nil {
			return err
		}
	}
	return nil
}

// write puts the report, the JSON and the plot into cfg.OutDir.
func write(cfg Config, res *Results) error {
	report := Markdown(res)
	if cfg.Report != nil {
		if _, err := fmt.Fprint(cfg.Report, report); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.OutDir, ResultsMarkdown), []byte(report), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", ResultsMarkdown, err)
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.OutDir, ResultsJSON), data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", ResultsJSON, err)
	}
	return plotLatencies(res.Create.Series, filepath.Join(cfg.OutDir, LatencyPlot))
}
