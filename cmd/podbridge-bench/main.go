// Command podbridge-bench measures podbridge against the direct path on
// local control planes and writes a Markdown report, the raw figures as
// JSON and a latency plot (see package bench). `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podbridge/podbridge/bench"
	"github.com/podbridge/podbridge/testbed/controlplane"
)

// sizeFlags are the size flags: each overrides one field of the default
// sizes, or of the -quick or -tiny ones, only when given.
var sizeFlags = []struct {
	name, usage string
	field       func(*bench.Sizes) *int
}{
	{"create-pods", "measured creates per series in scenario 1", func(s *bench.Sizes) *int { return &s.CreatePods }},
	{"deployment-replicas", "replicas of the scenario 3 Deployment", func(s *bench.Sizes) *int { return &s.DeploymentReplicas }},
	{"scale-pods", "pods in place for scenarios 4 and 6", func(s *bench.Sizes) *int { return &s.ScalePods }},
	{"cost-pods", "pods taken through their life in scenario 5", func(s *bench.Sizes) *int { return &s.CostPods }},
	{"churn-pods", "pods created and deleted in scenario 7", func(s *bench.Sizes) *int { return &s.ChurnPods }},
	{"churn-waves", "waves of scenario 7", func(s *bench.Sizes) *int { return &s.ChurnWaves }},
	{"nodes", "kwok nodes on the host", func(s *bench.Sizes) *int { return &s.Nodes }},
	{"pods-per-node", "pod capacity of each kwok node", func(s *bench.Sizes) *int { return &s.PodsPerNode }},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "podbridge-bench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := bench.Config{}
	flag.StringVar(&cfg.OutDir, "out", "bench-results", "folder for results.md, results.json, latency-cdf.png and run/logs")
	flag.StringVar(&cfg.PodbridgeBinary, "podbridge-bin", "bin/podbridge", "where to build podbridge (relative paths from the module root)")
	flag.DurationVar(&cfg.Timeout, "timeout", 90*time.Minute, "bound on the whole run")
	assetsDir := flag.String("assets-dir", "", "folder with the control-plane binaries (default: KUBEBUILDER_ASSETS, then bin/k8s/"+controlplane.KubernetesVersion+")")
	flag.StringVar(&cfg.ProfileDir, "profile", "", "folder for pprof profiles: the webhook's and the reflector's (10 s CPU profiles through every scenario, heap at scale) and both kube-apiservers' over each create series at the first concurrency, summarized per pod in the report (off when empty)")
	quick := flag.Bool("quick", false, "run every scenario at about a tenth of the default sizes (minutes; not the figures of record)")
	tiny := flag.Bool("tiny", false, "run every scenario with a few dozen pods, to check the harness (a minute or two; the figures mean nothing)")

	given := bench.DefaultSizes()
	for _, f := range sizeFlags {
		flag.IntVar(f.field(&given), f.name, *f.field(&given), f.usage)
	}
	flag.Int64Var(&given.Seed, "seed", given.Seed, "seed of every random choice")
	flag.Float64Var(&given.LagRate, "lag-rate", given.LagRate, "host status changes per second in scenario 4")
	lagDuration := flag.Duration("lag-duration", time.Duration(given.LagSeconds*float64(time.Second)), "how long scenario 4 changes status")
	concurrency := flag.String("concurrency", "1,32", "concurrencies of scenario 1, comma-separated; the last one is used by the other scenarios")
	podbridgeFlags := flag.String("podbridge-flags", "", "more flags for the webhook and the reflector, space-separated (an experiment such as --memory-limit=128Mi; the report names them)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	sizes := bench.DefaultSizes()
	switch {
	case *quick && *tiny:
		return fmt.Errorf("-quick and -tiny are two sizes: give one")
	case *quick:
		sizes = bench.QuickSizes()
	case *tiny:
		sizes = bench.TinySizes()
	}
	var err error
	flag.Visit(func(fl *flag.Flag) {
		for _, f := range sizeFlags {
			if f.name == fl.Name {
				*f.field(&sizes) = *f.field(&given)
			}
		}
		switch fl.Name {
		case "seed":
			sizes.Seed = given.Seed
		case "lag-rate":
			sizes.LagRate = given.LagRate
		case "lag-duration":
			sizes.LagSeconds = lagDuration.Seconds()
		case "concurrency":
			sizes.Concurrency, err = parseConcurrency(*concurrency)
		}
	})
	if err != nil {
		return err
	}
	cfg.Sizes = sizes
	cfg.PodbridgeFlags = strings.Fields(*podbridgeFlags)

	if *assetsDir != "" {
		cfg.Assets = controlplane.NewAssets(*assetsDir)
	} else if cfg.Assets, err = controlplane.DefaultAssets(); err != nil {
		return err
	}
	cfg.Log = ctrl.Log.WithName("bench")
	cfg.Report = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	_, err = bench.Run(ctx, cfg)
	cfg.Log.Info("Benchmark finished", "wall", time.Since(started).Round(time.Second).String(), "out", cfg.OutDir)
	return err
}

func parseConcurrency(list string) ([]int, error) {
	var out []int
	for field := range strings.SplitSeq(list, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || c < 1 {
			return nil, fmt.Errorf("-concurrency: %q is not a positive number", field)
		}
		out = append(out, c)
	}
	return out, nil
}
