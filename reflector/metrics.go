package reflector

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Kinds of writes the reflector makes, the values of actions_total's
// "action" label.
const (
	actionStatusUpdate  = "status_update"
	actionBind          = "bind"
	actionDeleteHost    = "delete_host"
	actionDeleteVirtual = "delete_virtual"
	actionOrphanDelete  = "orphan_delete"
	actionNodeCreate    = "node_create"
	actionNodeDelete    = "node_delete"
	actionEvent         = "event_copy"
	actionUpdateHost    = "update_host"
	actionRecreateHost  = "recreate_host"
	actionCopyWrite     = "copy_write"
	actionCopyDelete    = "copy_delete"
	actionTokenWrite    = "token_write"
	actionTokenDelete   = "token_delete"
	actionSliceWrite    = "endpointslice_write"
	actionSliceDelete   = "endpointslice_delete"
)

var (
	// reflectionLag is observed on each virtual status write that carries
	// a host status change newer than the previous write.
	reflectionLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "podbridge",
		Subsystem: "reflector",
		Name:      "reflection_lag_seconds",
		Help: "Time from a host pod's latest status change to the write of that status to its virtual pod. " +
			"Measured from apiserver timestamps, which have second resolution.",
		Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
	})
	actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "podbridge",
		Subsystem: "reflector",
		Name:      "actions_total",
		Help:      "Writes the reflector made to either cluster, by kind.",
	}, []string{"action"})
)

func init() {
	metrics.Registry.MustRegister(reflectionLag, actions)
	// Every kind is exported from the start, so rates work before the first action.
	for _, a := range []string{actionStatusUpdate, actionBind, actionDeleteHost, actionDeleteVirtual, actionOrphanDelete, actionNodeCreate, actionNodeDelete, actionEvent, actionUpdateHost, actionRecreateHost,
		actionCopyWrite, actionCopyDelete, actionTokenWrite, actionTokenDelete, actionSliceWrite, actionSliceDelete} {
		actions.WithLabelValues(a)
	}
}

func countAction(action string) { actions.WithLabelValues(action).Inc() }
