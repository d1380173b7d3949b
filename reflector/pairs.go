package reflector

import (
	"cmp"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

// pair is what the pod reconciler gathers for one key: the virtual pod at
// that key (from the cache) and every host pod of this virtual cluster that
// names it, whatever the host pod's own name. The last two fields are this
// process's memory: they only let a decision skip a wait or a live read.
type pair struct {
	key types.NamespacedName
	// hostName is the name the webhook gives the key's host pod.
	hostName string
	virtual  *corev1.Pod
	hosts    []*corev1.Pod
	now      time.Time

	// seenGone reports whether this process saw the virtual pod of a sync
	// ID deleted.
	seenGone func(syncID string) bool
	// lastSeen is the final state of the pair's host pod when this process
	// saw it deleted, else nil.
	lastSeen *corev1.Pod
}

// stepKind is one kind of write a decision asks for.
type stepKind int

const (
	// stepDeleteOrphan deletes a host pod no stored virtual pod claims. With
	// confirm, only once a live read of the virtual pod agrees.
	stepDeleteOrphan stepKind = iota
	// stepDeleteHost carries a virtual pod's deletion to its host pod:
	// with the virtual pod's grace period while it is being deleted, or at
	// once when this process saw it removed (an unbound or force-deleted
	// pod is removed with no graceful phase).
	stepDeleteHost
	// stepRemoveVirtual removes a deleted virtual pod whose host pod is gone.
	stepRemoveVirtual
	// stepHostGone gives a virtual pod whose host pod is gone a final
	// status saying so, then removes it. With confirm, only once a live
	// read of the host pod agrees it is gone.
	stepHostGone
	// stepSync carries updates down to the host pod, binds the virtual pod
	// and reflects the host status. With differs, the stored spec differs
	// from the started host pod's, which is reported on the virtual pod.
	stepSync
	// stepRecreateHost replaces a host pod not yet started whose admitted
	// spec differs from the stored virtual pod's (a later webhook changed
	// it) with the stored pod's translation.
	stepRecreateHost
)

func (k stepKind) String() string {
	return [...]string{"DeleteOrphan", "DeleteHost", "RemoveVirtual", "HostGone", "Sync", "RecreateHost"}[k]
}

// step is one write of a decision, on host (the host pod it concerns).
type step struct {
	kind    stepKind
	host    *corev1.Pod
	confirm bool
	// grace is the grace period of a stepDeleteHost; nil leaves the host
	// pod's own.
	grace *int64
	// differs says how the stored virtual spec differs from the one host
	// was admitted with (translate.SpecDifference), or is "".
	differs string
}

// decision is what to do for a pair now, and when to look again.
type decision struct {
	// current is the host pod of the stored virtual pod, if any.
	current      *corev1.Pod
	steps        []step
	requeueAfter time.Duration
}

func (d *decision) after(wait time.Duration) {
	d.requeueAfter = earliest(d.requeueAfter, wait)
}

// earliest is the sooner of two requeue delays, where 0 means never.
func earliest(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// hostPodCacheLag is how long a new virtual pod's host pod may take to
// show in the cache before the reflector asks the host apiserver.
const hostPodCacheLag = 5 * time.Second

// removalSettle is how long a pod, virtual or host, may show a zero grace
// period before it is deleted again (see removalCutShort).
const removalSettle = 2 * time.Second

// removalCutShort reports whether a pod's deletion was cut short, or how
// long to wait before it may be taken to be. The apiserver removes a pod
// whose grace period is zero (always so for an unscheduled one, such as a
// host pod still held by podbridge's gate) in two steps: it stores the
// zero grace period, then removes the object. A request cut short between
// the two (a client killed mid-call, a timeout under load) leaves the pod
// Terminating for good, as no kubelet ends it, until another delete is
// sent; within removalSettle the removal is taken to be under way. A pod
// with a grace period is its kubelet's to end.
func removalCutShort(pod *corev1.Pod, now time.Time) (again bool, wait time.Duration) {
	if pod.DeletionTimestamp == nil || pod.DeletionGracePeriodSeconds == nil || *pod.DeletionGracePeriodSeconds != 0 {
		return false, 0
	}
	if since := now.Sub(pod.DeletionTimestamp.Time); since < removalSettle {
		return false, removalSettle - since
	}
	return true, 0
}

// decidePair is the pod reconciler's whole decision for one pair, a pure
// function of what was gathered: orphans go after the grace period, host
// pods of virtual pods seen removed go at once, a deleted virtual pod's host pod goes with the
// same grace period and then the virtual pod, a virtual pod whose host pod
// is gone is ended, and a live pair is synced.
func decidePair(p pair, orphanGrace time.Duration) decision {
	var d decision
	claimed := claimants(p)
	if len(claimed) > 0 {
		d.current = claimed[0]
	}
	for _, h := range p.hosts {
		if h.DeletionTimestamp != nil {
			switch again, wait := removalCutShort(h, p.now); {
			case again:
				d.steps = append(d.steps, step{kind: stepDeleteHost, host: h, grace: ptr.To[int64](0)})
			case wait > 0:
				d.after(wait)
			}
			continue
		}
		if h == d.current {
			continue
		}
		// A duplicate of the current host pod is not the pair's, though
		// its virtual pod exists: no live read can save it.
		duplicate := slices.Contains(claimed, h)
		switch wait := translate.OrphanWait(h, p.now, orphanGrace); {
		case !duplicate && p.seenGone(h.Annotations[translate.AnnotationSyncID]):
			d.steps = append(d.steps, step{kind: stepDeleteHost, host: h})
		case wait > 0:
			d.after(wait)
		default:
			d.steps = append(d.steps, step{kind: stepDeleteOrphan, host: h, confirm: !duplicate && p.key.Namespace != ""})
		}
	}

	v := p.virtual
	if v == nil || v.Annotations[translate.AnnotationSyncID] == "" {
		return d // no pair: only host pods to collect.
	}
	switch {
	case v.DeletionTimestamp != nil && d.current != nil:
		if d.current.DeletionTimestamp == nil {
			d.steps = append(d.steps, step{kind: stepDeleteHost, host: d.current, grace: v.DeletionGracePeriodSeconds})
		} // else its removal brings the pair back.
	case v.DeletionTimestamp != nil:
		if _, wait := removalCutShort(v, p.now); wait > 0 {
			d.after(wait)
			return d
		}
		d.steps = append(d.steps, step{kind: stepRemoveVirtual})
	case d.current != nil:
		// Mutating webhooks after podbridge's may have changed the pod
		// after its host pod was made. Every host pod waits behind
		// GateVirtualPod until this comparison passes; one that never
		// started is made again from the stored pod.
		differs := admittedDifference(v, d.current)
		if differs != "" && translate.HeldForVirtualPod(d.current) && d.current.DeletionTimestamp == nil {
			d.steps = append(d.steps, step{kind: stepRecreateHost, host: d.current, differs: differs})
			break
		}
		d.steps = append(d.steps, step{kind: stepSync, host: d.current, differs: differs})
	case p.lastSeen != nil && !translate.HeldForVirtualPod(p.lastSeen):
		d.steps = append(d.steps, step{kind: stepHostGone, host: p.lastSeen})
	default:
		// No deletion seen, or that of a host pod that never started:
		// stepRecreateHost deletes those and makes them again under the
		// same sync ID, and the cache may show the deletion before the
		// new pod. The webhook creates the host pod just before
		// the virtual pod is stored, so a new pod's host pod may not be in
		// the cache yet: its event brings the pair back. Otherwise the
		// host apiserver is asked.
		if age := p.now.Sub(v.CreationTimestamp.Time); age < hostPodCacheLag {
			d.after(hostPodCacheLag - age)
			return d
		}
		d.steps = append(d.steps, step{kind: stepHostGone, confirm: true})
	}
	return d
}

// claimants are the host pods the virtual pod claims, the one under the
// webhook's name first: it is the current one, any other a duplicate.
func claimants(p pair) []*corev1.Pod {
	var out []*corev1.Pod
	for _, h := range p.hosts {
		if translate.Claims(p.virtual, h) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		if (a.Name == p.hostName) != (b.Name == p.hostName) {
			if a.Name == p.hostName {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// admittedDifference says how the stored virtual pod's spec differs from
// the one its host pod was admitted with, or "" when it does not or the
// host pod carries no fingerprint this version reads (made by an earlier
// podbridge).
func admittedDifference(virtual, host *corev1.Pod) string {
	admitted, ok := translate.ParseAdmittedSpec(host.Annotations[translate.AnnotationAdmittedSpec])
	if !ok {
		return ""
	}
	return translate.SpecDifference(admitted, translate.AdmittedSpecOf(virtual))
}
