package bench

import (
	"io"
	"time"

	"github.com/go-logr/logr"

	"github.com/podbridge/podbridge/testbed/controlplane"
)

// Sizes state how big each scenario is. They are recorded in the results,
// so every figure can be read with the load that produced it.
type Sizes struct {
	// Seed drives every random choice: which pods get status changes and
	// in which order, and the order of deletions in churn.
	Seed int64 `json:"seed"`
	// CreatePods is the number of measured creates per series (way x
	// concurrency) in scenario 1; CreateWarmup creates precede each series
	// unmeasured, so connection set-up is not counted.
	CreatePods   int   `json:"createPods"`
	CreateWarmup int   `json:"createWarmup"`
	Concurrency  []int `json:"concurrency"`
	// DeploymentReplicas sizes scenario 3.
	DeploymentReplicas int `json:"deploymentReplicas"`
	// ScalePods are in place for scenarios 4 and 6; LagRate status changes
	// per second run for LagSeconds.
	ScalePods  int     `json:"scalePods"`
	LagRate    float64 `json:"lagChangesPerSecond"`
	LagSeconds float64 `json:"lagSeconds"`
	// CostPods go through their whole life in scenario 5.
	CostPods int `json:"costPods"`
	// ChurnPods are created and deleted in ChurnWaves waves in scenario 7.
	ChurnPods  int `json:"churnPods"`
	ChurnWaves int `json:"churnWaves"`
	// Nodes and PodsPerNode size the host's kwok nodes; they must hold
	// ScalePods at once.
	Nodes       int `json:"nodes"`
	PodsPerNode int `json:"podsPerNode"`
	// OrphanGraceSeconds is the reflector's --orphan-grace-period. A pod
	// deleted before it was bound leaves its host pod to the orphan path,
	// so this bounds clean-up waits; it must exceed the webhook timeout (10s).
	OrphanGraceSeconds float64 `json:"orphanGracePeriodSeconds"`
	// PodbridgeFlags are more flags for both podbridge processes (an
	// experiment, such as a --memory-limit); the report names them.
	PodbridgeFlags []string `json:"podbridgeFlags,omitempty"`
}

// DefaultSizes are the sizes issue 6 states: what `make bench` runs.
func DefaultSizes() Sizes {
	return Sizes{
		Seed:               1,
		CreatePods:         2000,
		CreateWarmup:       50,
		Concurrency:        []int{1, 32},
		DeploymentReplicas: 1000,
		ScalePods:          10000,
		LagRate:            200,
		LagSeconds:         30,
		CostPods:           1000,
		ChurnPods:          10000,
		ChurnWaves:         5,
		Nodes:              10,
		PodsPerNode:        1100,
		OrphanGraceSeconds: 15,
	}
}

// QuickSizes run every scenario at a tenth of the default size or less,
// in a few minutes: for trying changes, not for the figures of record.
func QuickSizes() Sizes {
	s := DefaultSizes()
	s.CreatePods, s.CreateWarmup = 200, 10
	s.DeploymentReplicas = 100
	s.ScalePods, s.LagRate, s.LagSeconds = 1000, 200, 10
	s.CostPods = 200
	s.ChurnPods, s.ChurnWaves = 1000, 4
	s.Nodes, s.PodsPerNode = 4, 400
	return s
}

// TinySizes run every scenario with a few dozen pods, in a minute or two:
// enough to exercise every code path of the harness (TestBenchTiny, and
// .ci/run's `make bench BENCH_FLAGS=-tiny`); the figures mean nothing.
func TinySizes() Sizes {
	return Sizes{
		Seed:               1,
		CreatePods:         20,
		CreateWarmup:       2,
		Concurrency:        []int{1, 8},
		DeploymentReplicas: 10,
		ScalePods:          40,
		LagRate:            20,
		LagSeconds:         2,
		CostPods:           20,
		ChurnPods:          36,
		ChurnWaves:         3,
		Nodes:              2,
		PodsPerNode:        110,
		OrphanGraceSeconds: 11,
	}
}

// Config is one benchmark run.
type Config struct {
	Sizes
	// OutDir receives results.md, results.json, latency-cdf.png and, in
	// run/, the control planes' state and every component's log.
	OutDir string
	// PodbridgeBinary is where `go build -o` puts podbridge before the run.
	PodbridgeBinary string
	// Assets are the control-plane binaries.
	Assets controlplane.Assets
	// Timeout bounds the whole run, building podbridge aside; each scenario
	// has its own deadline too.
	Timeout time.Duration
	// ProfileDir, when set, receives CPU profiles of the webhook and the
	// reflector through every scenario and their heap profiles at scale.
	ProfileDir string
	// Log receives progress; Report, when set, the Markdown report.
	Log    logr.Logger
	Report io.Writer
}
