package caps

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	hostCopies = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "podbridge_host_copies",
		Help: "ConfigMap and Secret copies this virtual cluster has on the host (token Secrets not included), as last counted.",
	})
	hostCopyBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "podbridge_host_copy_bytes",
		Help: "Total data bytes of this virtual cluster's ConfigMap and Secret copies on the host, as last counted.",
	})
	claimStorage = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "podbridge_host_claim_storage_bytes",
		Help: "Storage this virtual cluster's host PersistentVolumeClaims request together, as the webhook last counted, against podbridge_limit{limit=\"max-claim-storage\"}.",
	})
	limits = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podbridge_limit",
		Help: "Each cap on what one virtual cluster makes on the host, by flag name (0: no cap).",
	}, []string{"limit"})
	refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podbridge_limit_refusals_total",
		Help: "Writes and requests refused because they would exceed a cap, by flag name.",
	}, []string{"limit"})
	tokensPerPod = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "podbridge_tokens_per_pod",
		Help:    "Projected service-account tokens (host token Secrets) of each admitted pod, against podbridge_limit{limit=\"max-tokens-per-pod\"}.",
		Buckets: []float64{0, 1, 2, 4, 8, 16, 32},
	})
	requestBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "podbridge_admission_request_bytes",
		Help:    "Size of admission request bodies, against podbridge_limit{limit=\"max-request-bytes\"}.",
		Buckets: prometheus.ExponentialBuckets(1024, 4, 9),
	})
)

func init() {
	metrics.Registry.MustRegister(hostCopies, hostCopyBytes, claimStorage, limits, refusals, tokensPerPod, requestBytes)
	for _, flag := range []string{FlagMaxCopies, FlagMaxCopyBytes, FlagMaxTokensPerPod, FlagMaxRequestBytes, FlagMaxHostPods, FlagMaxHostServices, FlagMaxHostNetworkPolicies, FlagMaxClaimStorage} {
		refusals.WithLabelValues(flag)
	}
}

// Publish exports the caps.
func (l Limits) Publish() {
	limits.WithLabelValues(FlagMaxCopies).Set(float64(l.MaxCopies))
	limits.WithLabelValues(FlagMaxCopyBytes).Set(float64(l.MaxCopyBytes))
	limits.WithLabelValues(FlagMaxTokensPerPod).Set(float64(l.MaxTokensPerPod))
	limits.WithLabelValues(FlagMaxRequestBytes).Set(float64(l.MaxRequestBytes))
	limits.WithLabelValues(FlagMaxHostPods).Set(float64(l.MaxHostPods))
	limits.WithLabelValues(FlagMaxHostServices).Set(float64(l.MaxHostServices))
	limits.WithLabelValues(FlagMaxHostNetworkPolicies).Set(float64(l.MaxHostNetworkPolicies))
	limits.WithLabelValues(FlagMaxClaimStorage).Set(float64(l.MaxClaimStorage))
}

func publish(count, bytes int64) {
	hostCopies.Set(float64(count))
	hostCopyBytes.Set(float64(bytes))
}

// ObserveTokens records the tokens of an admitted pod.
func ObserveTokens(n int) { tokensPerPod.Observe(float64(n)) }

// Refused counts a refusal that is not a Budget's (tokens, request size).
func Refused(flag string) { refusals.WithLabelValues(flag).Inc() }

// ObserveRequestBytes records the size of an admission request.
func ObserveRequestBytes(n int64) { requestBytes.Observe(float64(n)) }
