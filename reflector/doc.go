// Package reflector keeps each virtual pod and the host pod that runs it
// one: host status is copied to the virtual pod, the virtual pod is bound to
// a virtual Node mirroring the host node, deletion is carried both ways, the
// updates Kubernetes allows on a pod are carried down to the host pod, and
// host pods whose admission failed after the webhook said yes are removed.
// Virtual nodes live while pods are bound to them and their host node exists.
//
// It is level-based: every reconcile looks at both pods as they are, and a
// full pass at start-up and every resync period enqueues every pair and
// node, so a restarted reflector converges from what it sees.
//
// Metrics (controller-runtime's registry): podbridge_reflector_actions_total
// by action, podbridge_reflector_reflection_lag_seconds, and the workqueue
// metrics of the "pods" and "nodes" controllers (queue depth among them).
package reflector
