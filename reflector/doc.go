// Package reflector keeps each virtual pod and the host pod that runs it
// one: host status is copied to the virtual pod, the virtual pod is bound to
// a virtual Node mirroring the host node, deletion is carried both ways, and
// host pods whose admission failed after the webhook said yes are removed.
//
// It is level-based: every reconcile looks at both pods as they are, so a
// restarted reflector converges from what it sees.
package reflector
