package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Admission stages, as the stage label of admissionStageSeconds.
const (
	stageTranslate    = "translate"
	stageDependencies = "dependencies"
	stageHostCreate   = "host_create"
)

var (
	admissionStageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podbridge_webhook_admission_stage_seconds",
		Help:    "Time spent in each stage of admitting a pod: translate, dependencies (host copies and tokens), host_create.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
	}, []string{"stage"})
	admissionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podbridge_webhook_admissions_total",
		Help: "Pod admissions by outcome (admitted, refused, error) and reason.",
	}, []string{"outcome", "reason"})
	registrationRestoresTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podbridge_webhook_registration_restores_total",
		Help: "Restores of podbridge's MutatingWebhookConfiguration in the virtual cluster after someone else changed it, by cause (edited, deleted).",
	}, []string{"cause"})
	registrationRestoreSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "podbridge_webhook_registration_restore_seconds",
		Help:    "Time from seeing a change of podbridge's MutatingWebhookConfiguration to having restored it.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	})
)

func init() {
	metrics.Registry.MustRegister(admissionStageSeconds, admissionsTotal, registrationRestoresTotal, registrationRestoreSeconds)
	for _, cause := range []string{causeEdited, causeDeleted} {
		registrationRestoresTotal.WithLabelValues(cause)
	}
}

// observeStage records the time since start for stage and returns now.
func observeStage(stage string, start time.Time) time.Time {
	now := time.Now()
	admissionStageSeconds.WithLabelValues(stage).Observe(now.Sub(start).Seconds())
	return now
}
