package bench

import "time"

// Results are every figure of one run; results.json is this, marshalled.
// Durations are in milliseconds (…Ms) or seconds (…Seconds), memory in MiB
// or KiB as named.
type Results struct {
	Started     time.Time `json:"started"`
	WallSeconds float64   `json:"wallSeconds"`
	Sizes       Sizes     `json:"sizes"`
	Machine     Machine   `json:"machine"`

	Create     CreateResults     `json:"create"`
	Admission  AdmissionResults  `json:"admission"`
	Deployment DeploymentResults `json:"deployment"`
	Reflection ReflectionResults `json:"reflection"`
	Cost       CostResults       `json:"cost"`
	ColdStart  ColdStartResults  `json:"coldStart"`
	Churn      ChurnResults      `json:"churn"`

	Targets []Target `json:"targets"`
	// Bounds are what this machine allows of the figures it bounds.
	Bounds []Bound `json:"bounds,omitempty"`
	// Error is set when a scenario failed; the figures before it stand.
	Error string `json:"error,omitempty"`
}

// Machine describes where the run happened: the figures only compare
// within one run on one machine.
type Machine struct {
	CPUs        int     `json:"cpus"`
	MemoryGiB   float64 `json:"memoryGiB"`
	GoVersion   string  `json:"goVersion"`
	LoadAtStart string  `json:"loadAverageAtStart"`
	LoadAtEnd   string  `json:"loadAverageAtEnd"`
	// BenchCPUSeconds is the load generator's own CPU time: it competes
	// with what it measures for the same cores.
	BenchCPUSeconds float64 `json:"benchCPUSeconds"`
}

// Summary is a latency distribution in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Ways pods are created in scenario 1.
const (
	WayDirect    = "direct"
	WayNoWebhook = "virtual-no-webhook"
	WayPodbridge = "podbridge"
)

// CreateResults is scenario 1.
type CreateResults struct {
	// NoWebhookMethod says how the virtual apiserver ran without podbridge.
	NoWebhookMethod string         `json:"noWebhookMethod"`
	Series          []CreateSeries `json:"series"`
	Ratios          []CreateRatio  `json:"ratios"`
}

// CreateSeries is one way at one concurrency.
type CreateSeries struct {
	Way           string    `json:"way"`
	Concurrency   int       `json:"concurrency"`
	Requested     int       `json:"requested"`
	Created       int       `json:"created"`
	Errors        int       `json:"errors"`
	FirstError    string    `json:"firstError,omitempty"`
	WallSeconds   float64   `json:"wallSeconds"`
	PodsPerSecond float64   `json:"podsPerSecond"`
	Latency       Summary   `json:"latencyMs"`
	SamplesMs     []float64 `json:"samplesMs"`
	// CPU is every process' CPU time during the measured creates.
	CPU CPUUse `json:"cpu"`
	// Requests are each apiserver's requests the bench did not make,
	// during the measured creates, per created pod.
	Requests []SeriesRequests `json:"requests"`
	// APIServerProfiles are both apiservers' CPU profiles over the
	// measured creates (with -profile, first concurrency only).
	APIServerProfiles []APIServerProfile `json:"apiserverProfiles,omitempty"`
}

// CreateRatio compares podbridge with the other ways at one concurrency.
type CreateRatio struct {
	Concurrency int `json:"concurrency"`
	// P50, P99 and Throughput are podbridge / direct.
	P50        float64 `json:"p50"`
	P99        float64 `json:"p99"`
	Throughput float64 `json:"throughput"`
	// OverheadP50Ms is podbridge p50 − virtual-without-webhook p50.
	OverheadP50Ms float64 `json:"overheadP50Ms"`
	DirectP50Ms   float64 `json:"directP50Ms"`
}

// AdmissionResults is scenario 2: the webhook's own stage histogram over
// the podbridge series of scenario 1.
type AdmissionResults struct {
	Source string           `json:"source"`
	Series []AdmissionStage `json:"series"`
}

// AdmissionStage is one stage at one concurrency. Quantiles are
// interpolated within histogram buckets (0.5 ms × 2^k), as Prometheus does.
type AdmissionStage struct {
	Concurrency int     `json:"concurrency"`
	Stage       string  `json:"stage"`
	Count       int     `json:"count"`
	MeanMs      float64 `json:"meanMs"`
	P50Ms       float64 `json:"p50Ms"`
	P99Ms       float64 `json:"p99Ms"`
}

// DeploymentResults is scenario 3.
type DeploymentResults struct {
	Replicas   int          `json:"replicas"`
	HostMethod string       `json:"hostMethod"`
	Virtual    RolloutTimes `json:"virtual"`
	Host       RolloutTimes `json:"host"`
	// Ratio is virtual / host time to Ready.
	Ratio float64 `json:"ratio"`
}

// RolloutTimes are measured from the Deployment's create request.
type RolloutTimes struct {
	AllCreatedSeconds float64 `json:"allCreatedSeconds"`
	ReadySeconds      float64 `json:"readySeconds"`
}

// ReflectionResults is scenario 4 and the set-up it needs.
type ReflectionResults struct {
	Pods int `json:"pods"`
	// Create is the creation of the pods through podbridge at the highest
	// concurrency; ReadySeconds runs from its start until all are Ready.
	Create       CreateSeries `json:"create"`
	ReadySeconds float64      `json:"readySeconds"`
	Method       string       `json:"method"`
	Changes      int          `json:"changes"`
	TargetRate   float64      `json:"targetRate"`
	AchievedRate float64      `json:"achievedRate"`
	WriteErrors  int          `json:"writeErrors"`
	// Lost changes never showed on the virtual pod before the deadline.
	Lost      int       `json:"lost"`
	Lag       Summary   `json:"lagMs"`
	SamplesMs []float64 `json:"samplesMs"`
	// CPU is every process' CPU time while the status changes ran.
	CPU CPUUse `json:"cpu"`
	// DeleteSeconds is the removal of all pods afterwards, both sides.
	DeleteSeconds float64 `json:"deleteSeconds"`
}

// CostResults is scenario 5.
type CostResults struct {
	Pods      int         `json:"pods"`
	Webhook   ProcessCost `json:"webhook"`
	Reflector ProcessCost `json:"reflector"`
	// RequestsMethod says how requests were attributed to podbridge.
	RequestsMethod string       `json:"requestsMethod"`
	Requests       []RequestRow `json:"requests"`
	PerPod         float64      `json:"requestsPerPod"`
	MinimumPerPod  float64      `json:"minimumPerPod"`
	// ClientPerPod is podbridge's own rest_client_requests_total, by
	// process, cluster and HTTP method, per pod: a cross-check.
	ClientPerPod map[string]float64 `json:"clientRequestsPerPod"`
	// ReflectorActionsPerPod is podbridge_reflector_actions_total per pod.
	ReflectorActionsPerPod map[string]float64 `json:"reflectorActionsPerPod"`
	// Scale memory, read in scenario 4.
	ReflectorIdleRSSMiB     float64 `json:"reflectorIdleRSSMiB"`
	ReflectorPeakRSSMiBAtN  float64 `json:"reflectorPeakRSSMiBAtScale"`
	ReflectorKiBPerPod      float64 `json:"reflectorKiBPerPod"`
	WebhookPeakRSSMiBAtCost float64 `json:"webhookPeakRSSMiBAtCostPods"`
	WebhookPeakRSSMiBAtN    float64 `json:"webhookPeakRSSMiBAtScale"`
}

// ProcessCost is one podbridge process over the lifecycle phase.
type ProcessCost struct {
	CPUSeconds        float64 `json:"cpuSeconds"`
	CPUSecondsPer1000 float64 `json:"cpuSecondsPer1000Pods"`
	PeakRSSMiB        float64 `json:"peakRSSMiB"`
}

// RequestRow is podbridge's requests to one apiserver for one verb and
// resource, per pod, next to the minimum the design needs.
type RequestRow struct {
	Cluster  string  `json:"cluster"`
	Verb     string  `json:"verb"`
	Resource string  `json:"resource"`
	PerPod   float64 `json:"perPod"`
	Minimum  float64 `json:"minimum"`
	Why      string  `json:"why,omitempty"`
}

// ColdStartResults is scenario 6.
type ColdStartResults struct {
	Pods int `json:"pods"`
	// Unchanged: nothing changed while the reflector was down; in sync
	// once its pod controller has reconciled every pair and its queue is
	// empty (its own metrics).
	UnchangedMetricsUpSeconds float64 `json:"unchangedMetricsUpSeconds"`
	UnchangedInSyncSeconds    float64 `json:"unchangedInSyncSeconds"`
	// Changed: every host pod's status changed while it was down; in sync
	// once every virtual pod shows its change (the bench's own watch).
	ChangedInSyncSeconds float64 `json:"changedInSyncSeconds"`
	ChangedLost          int     `json:"changedLost"`
	PeakRSSMiB           float64 `json:"peakRSSMiB"`
}

// ChurnResults is scenario 7.
type ChurnResults struct {
	Pods         int     `json:"pods"`
	Waves        int     `json:"waves"`
	CreateErrors int     `json:"createErrors"`
	DeleteErrors int     `json:"deleteErrors"`
	FirstError   string  `json:"firstError,omitempty"`
	WallSeconds  float64 `json:"wallSeconds"`
	// ConvergeSeconds runs from the last delete until both sides are empty.
	ConvergeSeconds float64 `json:"convergeSeconds"`
	// OrphanDeletes is how many host pods the reflector removed through its
	// orphan path (pods deleted before they were bound).
	OrphanDeletes float64 `json:"orphanDeletes"`
	// Left after convergence (or the deadline): must all be 0.
	HostPodsLeft    int `json:"hostPodsLeft"`
	VirtualPodsLeft int `json:"virtualPodsLeft"`
	// HostSecretsLeft counts host Secrets in the host namespace at the end
	// of the run: token Secrets and copies left for pods now gone.
	HostSecretsLeft int `json:"hostSecretsLeft"`
}

// Target is one of issue 6's targets, judged on this run.
type Target struct {
	Name      string `json:"name"`
	Threshold string `json:"threshold"`
	Measured  string `json:"measured"`
	Met       bool   `json:"met"`
	Gap       string `json:"gap,omitempty"`
}
