package kubeletproxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// openStreams shows that a stream ends on both sides when either does:
	// it falls when the proxied connection pair is closed.
	openStreams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "podbridge",
		Subsystem: "kubelet",
		Name:      "open_streams",
		Help:      "exec, attach and port-forward connections the kubelet API is carrying to the host now, by subresource.",
	}, []string{"subresource"})
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "podbridge",
		Subsystem: "kubelet",
		Name:      "requests_total",
		Help:      "Requests the kubelet API answered, by subresource and outcome (carried or refused).",
	}, []string{"subresource", "outcome"})
)

func init() {
	metrics.Registry.MustRegister(openStreams, requests)
}
