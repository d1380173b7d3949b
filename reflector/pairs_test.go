package reflector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

var (
	testNow   = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	testGrace = 30 * time.Second
	testKey   = types.NamespacedName{Namespace: "default", Name: "web"}
)

// testHostName is the webhook's name for testKey's host pod.
var testHostName = translate.HostName(testKey.Name, testKey.Namespace, "vc")

type podOption func(*corev1.Pod)

func aged(d time.Duration) podOption {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(testNow.Add(-d)) }
}

func deleting(ago time.Duration, grace int64) podOption {
	return func(p *corev1.Pod) {
		p.DeletionTimestamp = ptr.To(metav1.NewTime(testNow.Add(-ago)))
		p.DeletionGracePeriodSeconds = ptr.To(grace)
	}
}

func named(name string) podOption { return func(p *corev1.Pod) { p.Name = name } }

func virtualPod(syncID string, opts ...podOption) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: testKey.Namespace, Name: testKey.Name, UID: "virtual-uid",
		CreationTimestamp: metav1.NewTime(testNow.Add(-time.Hour))}}
	if syncID != "" {
		p.Annotations = map[string]string{translate.AnnotationSyncID: syncID}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// hostPod is a host pod naming testKey, carrying syncID.
func hostPod(syncID string, opts ...podOption) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "host", Name: testHostName, UID: types.UID("host-" + syncID),
		CreationTimestamp: metav1.NewTime(testNow.Add(-time.Hour)),
		Annotations: map[string]string{
			translate.AnnotationSyncID: syncID, translate.AnnotationName: testKey.Name,
			translate.AnnotationNamespace: testKey.Namespace, translate.AnnotationVCluster: "vc",
		}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

// describe renders a decision as "Kind(host)[confirm] ... requeue=D".
func describe(d decision) string {
	var parts []string
	for _, s := range d.steps {
		part := s.kind.String()
		if s.host != nil {
			part += "(" + s.host.Name + ")"
		}
		if s.confirm {
			part += "[confirm]"
		}
		if s.grace != nil {
			part += fmt.Sprintf("[grace=%d]", *s.grace)
		}
		if s.differs != "" {
			part += "[differs: " + s.differs + "]"
		}
		parts = append(parts, part)
	}
	if d.requeueAfter > 0 {
		parts = append(parts, fmt.Sprintf("requeue=%s", d.requeueAfter))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " ")
}

func TestDecidePair(t *testing.T) {
	seenGone := func(ids ...string) func(string) bool {
		return func(id string) bool {
			for _, g := range ids {
				if id == g {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name     string
		key      types.NamespacedName
		virtual  *corev1.Pod
		hosts    []*corev1.Pod
		gone     []string
		lastSeen *corev1.Pod
		want     string
	}{
		// Orphans: host pods no stored virtual pod claims.
		{name: "admission in flight: young host pod, no virtual pod yet",
			hosts: []*corev1.Pod{hostPod("a", aged(10*time.Second))}, want: "requeue=21s"},
		{name: "orphan past the grace period is deleted once a live read agrees",
			hosts: []*corev1.Pod{hostPod("a", aged(time.Minute))}, want: "DeleteOrphan(" + testHostName + ")[confirm]"},
		{name: "orphan under another name than the webhook's is collected by sync ID",
			hosts: []*corev1.Pod{hostPod("a", aged(time.Minute), named("old-scheme-name"))}, want: "DeleteOrphan(old-scheme-name)[confirm]"},
		{name: "host pod of a virtual pod seen removed goes at once, young or not",
			hosts: []*corev1.Pod{hostPod("a", aged(time.Second))}, gone: []string{"a"}, want: "DeleteHost(" + testHostName + ")"},
		{name: "host pod that names no virtual pod: no live read can claim it",
			key:   types.NamespacedName{Name: "stray"},
			hosts: []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "stray", CreationTimestamp: metav1.NewTime(testNow.Add(-time.Minute))}}},
			want:  "DeleteOrphan(stray)"},
		{name: "orphan already being deleted is left to the host",
			hosts: []*corev1.Pod{hostPod("a", deleting(time.Second, 30))}, want: "nothing"},
		{name: "orphan being removed right now (grace 0): wait for the apiserver",
			hosts: []*corev1.Pod{hostPod("a", deleting(500*time.Millisecond, 0))}, want: "requeue=1.5s"},
		{name: "orphan left at grace 0 by a cut-off removal (unscheduled: no kubelet ends it) is deleted again",
			hosts: []*corev1.Pod{hostPod("a", deleting(time.Minute, 0))}, want: "DeleteHost(" + testHostName + ")[grace=0]"},
		{name: "virtual pod not admitted by podbridge claims nothing",
			virtual: virtualPod(""), hosts: []*corev1.Pod{hostPod("a", aged(time.Minute))}, want: "DeleteOrphan(" + testHostName + ")[confirm]"},

		// Virtual deletion, in every phase.
		{name: "virtual pod deleted: its host pod goes with the same grace",
			virtual: virtualPod("a", deleting(0, 30)), hosts: []*corev1.Pod{hostPod("a")}, want: "DeleteHost(" + testHostName + ")[grace=30]"},
		{name: "virtual pod deleted, host pod terminating: wait for its removal",
			virtual: virtualPod("a", deleting(0, 30)), hosts: []*corev1.Pod{hostPod("a", deleting(0, 30))}, want: "nothing"},
		{name: "virtual pod deleted, host pod left at grace 0 by a cut-off removal: deleted again",
			virtual: virtualPod("a", deleting(time.Minute, 30)), hosts: []*corev1.Pod{hostPod("a", deleting(time.Minute, 0))},
			want: "DeleteHost(" + testHostName + ")[grace=0]"},
		{name: "virtual pod deleted, host pod gone: the virtual pod is removed",
			virtual: virtualPod("a", deleting(5*time.Second, 30)), want: "RemoveVirtual"},
		{name: "virtual pod being removed right now: wait for the apiserver",
			virtual: virtualPod("a", deleting(500*time.Millisecond, 0)), want: "requeue=1.5s"},
		{name: "virtual pod left at grace 0 by a cut-off removal is removed again",
			virtual: virtualPod("a", deleting(time.Minute, 0)), want: "RemoveVirtual"},
		{name: "virtual pod deleted, stale host pod of an earlier pod: both handled",
			virtual: virtualPod("b", deleting(time.Second, 30)), hosts: []*corev1.Pod{hostPod("a", aged(time.Minute))},
			want: "DeleteOrphan(" + testHostName + ")[confirm] RemoveVirtual"},

		// Live pairs and host deletion.
		{name: "live pair is synced",
			virtual: virtualPod("a"), hosts: []*corev1.Pod{hostPod("a")}, want: "Sync(" + testHostName + ")"},
		{name: "host pod terminating on the host: still synced (status reflects it)",
			virtual: virtualPod("a"), hosts: []*corev1.Pod{hostPod("a", deleting(time.Second, 30))}, want: "Sync(" + testHostName + ")"},
		{name: "new virtual pod whose host pod is not cached yet: wait",
			virtual: virtualPod("a", aged(2*time.Second)), want: "requeue=3s"},
		{name: "host pod gone (deleted or evicted on the host), not seen: confirm live, then end the virtual pod",
			virtual: virtualPod("a"), want: "HostGone[confirm]"},
		{name: "host pod seen deleted: end the virtual pod with its last state",
			virtual: virtualPod("a"), lastSeen: hostPod("a"), want: "HostGone(" + testHostName + ")"},
		{name: "host pod seen deleted while held (re-created, the new one not cached yet): confirm live",
			virtual: virtualPod("a"), lastSeen: hostPod("a", held), want: "HostGone[confirm]"},
		{name: "stale host pod of an earlier pod of the same name is an orphan, the new pod's is gone",
			virtual: virtualPod("b"), hosts: []*corev1.Pod{hostPod("a", aged(time.Minute))},
			want: "DeleteOrphan(" + testHostName + ")[confirm] HostGone[confirm]"},
		{name: "stale host pod of a pod seen removed goes at once",
			virtual: virtualPod("b", aged(time.Second)), hosts: []*corev1.Pod{hostPod("a")}, gone: []string{"a"},
			want: "DeleteHost(" + testHostName + ") requeue=4s"},
		{name: "duplicate host pod of a live pair goes after the grace period, without a live read",
			virtual: virtualPod("a"), hosts: []*corev1.Pod{hostPod("a", named("copy")), hostPod("a")},
			want: "DeleteOrphan(copy) Sync(" + testHostName + ")"},

		// The stored spec against the admitted one (a later webhook).
		{name: "stored spec as admitted: synced (and released)",
			virtual: virtualPod("a", withSpec(sidecar)), hosts: []*corev1.Pod{hostPod("a", admitted(sidecar), held)},
			want: "Sync(" + testHostName + ")"},
		{name: "later webhook added a sidecar to a pod not started: re-created",
			virtual: virtualPod("a", withSpec(sidecar)), hosts: []*corev1.Pod{hostPod("a", admitted(), held)},
			want: "RecreateHost(" + testHostName + ")[differs: containers added: sidecar]"},
		{name: "later webhook added a sidecar to a started pod: reported",
			virtual: virtualPod("a", withSpec(sidecar)), hosts: []*corev1.Pod{hostPod("a", admitted())},
			want: "Sync(" + testHostName + ")[differs: containers added: sidecar]"},
		{name: "held host pod being deleted is not re-created (and its removal is watched)",
			virtual: virtualPod("a", withSpec(sidecar)), hosts: []*corev1.Pod{hostPod("a", admitted(), held, deleting(time.Second, 0))},
			want: "Sync(" + testHostName + ")[differs: containers added: sidecar] requeue=1s"},
		{name: "updates Kubernetes allows later (image, bound) are no difference",
			virtual: virtualPod("a", withSpec(func(p *corev1.Pod) { p.Spec.Containers[0].Image = "v2"; p.Spec.NodeName = "n" })),
			hosts:   []*corev1.Pod{hostPod("a", admitted())}, want: "Sync(" + testHostName + ")"},
		{name: "host pod of an earlier podbridge (no fingerprint) is not compared",
			virtual: virtualPod("a", withSpec(sidecar)), hosts: []*corev1.Pod{hostPod("a", held)},
			want: "Sync(" + testHostName + ")"},
		{name: "fingerprint of another version is not compared",
			virtual: virtualPod("a", withSpec(sidecar)),
			hosts:   []*corev1.Pod{hostPod("a", held, func(p *corev1.Pod) { p.Annotations[translate.AnnotationAdmittedSpec] = "v9:x" })},
			want:    "Sync(" + testHostName + ")"},
		{name: "young duplicate waits",
			virtual: virtualPod("a"), hosts: []*corev1.Pod{hostPod("a", named("copy"), aged(time.Second)), hostPod("a")},
			want: "Sync(" + testHostName + ") requeue=30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key
			if key == (types.NamespacedName{}) {
				key = testKey
			}
			p := pair{key: key, virtual: tt.virtual, hosts: tt.hosts, now: testNow, seenGone: seenGone(tt.gone...), lastSeen: tt.lastSeen}
			if key.Namespace != "" {
				p.hostName = testHostName
			}
			if got := describe(decidePair(p, testGrace)); got != tt.want {
				t.Errorf("decision: %s\nwant:     %s", got, tt.want)
			}
		})
	}
}

// A restart loses the reflector's memory; the decision then waits longer
// or reads more, but ends the same way.
func TestDecidePairWithoutMemoryReachesTheSameEnd(t *testing.T) {
	never := func(string) bool { return false }
	always := func(string) bool { return true }
	host := hostPod("a", aged(time.Minute))
	with := describe(decidePair(pair{key: testKey, hostName: testHostName, hosts: []*corev1.Pod{host}, now: testNow, seenGone: always}, testGrace))
	without := describe(decidePair(pair{key: testKey, hostName: testHostName, hosts: []*corev1.Pod{host}, now: testNow, seenGone: never}, testGrace))
	if with != "DeleteHost("+testHostName+")" || without != "DeleteOrphan("+testHostName+")[confirm]" {
		t.Errorf("orphan with memory: %s, without: %s", with, without)
	}
	v := virtualPod("a")
	with = describe(decidePair(pair{key: testKey, hostName: testHostName, virtual: v, now: testNow, seenGone: never, lastSeen: hostPod("a")}, testGrace))
	without = describe(decidePair(pair{key: testKey, hostName: testHostName, virtual: v, now: testNow, seenGone: never}, testGrace))
	if !strings.HasPrefix(with, "HostGone") || !strings.HasPrefix(without, "HostGone") {
		t.Errorf("host gone with memory: %s, without: %s", with, without)
	}
}

// appSpec is the spec a test pod is admitted with: one container, app.
func appSpec(p *corev1.Pod) {
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "v1"}}
}

// sidecar is what a later webhook adds.
func sidecar(p *corev1.Pod) {
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "proxy"})
}

// withSpec gives a virtual pod appSpec changed by each of changes.
func withSpec(changes ...podOption) podOption {
	return func(p *corev1.Pod) {
		appSpec(p)
		for _, c := range changes {
			c(p)
		}
	}
}

// admitted marks a host pod as made from appSpec changed by changes.
func admitted(changes ...podOption) podOption {
	return func(h *corev1.Pod) {
		v := &corev1.Pod{}
		withSpec(changes...)(v)
		h.Annotations[translate.AnnotationAdmittedSpec] = translate.AdmittedSpecOf(v).String()
	}
}

func held(h *corev1.Pod) {
	h.Spec.SchedulingGates = append(h.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: translate.GateVirtualPod})
}
