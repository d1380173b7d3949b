package reflector

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// The host-side gate's refusal is recorded on the virtual pod once, and
// goes once the virtual pod's changes are all on the host. Integration
// tests cannot reach the clearing: a tenant can only add ephemeral
// containers, so no later virtual change passes where one was refused.
func TestHostSyncRefusedThenCleared(t *testing.T) {
	ctx := context.Background()
	cfg := translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"}
	security, err := policy.NewSecurityPolicy("baseline")
	if err != nil {
		t.Fatal(err)
	}
	virtual := virtualPod("a")
	virtual.Spec.Containers = []corev1.Container{{Name: "app", Image: "nginx"}}
	host, _, errs := translate.HostPod(virtual, cfg, "a")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	host.UID = "host-a"
	// As on a host pod the reflector released earlier.
	host.Annotations[translate.AnnotationUID] = string(virtual.UID)
	host.Spec.SchedulingGates = nil
	virtual.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
	}}}

	log := &writeLog{}
	hostClient, virtualClient := log.client("host", host), log.client("virtual", virtual)
	recorder := events.NewFakeRecorder(10)
	r := &podReconciler{
		Host: hostClient, HostReader: hostClient, Virtual: virtualClient, VirtualReader: virtualClient,
		Recorder: recorder, Config: cfg, Gate: policy.Gate{Security: security, Config: cfg},
		Clock: clocktesting.NewFakePassiveClock(testNow), Nodes: &nodeGuard{},
	}
	reconcileHost := func(step string, want ...string) *corev1.Pod {
		t.Helper()
		log.writes = nil
		v, h := &corev1.Pod{}, &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(virtual), v); err != nil {
			t.Fatal(err)
		}
		if err := hostClient.Get(ctx, client.ObjectKeyFromObject(host), h); err != nil {
			t.Fatal(err)
		}
		if _, err := r.syncHost(ctx, v, h, ""); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if !slices.Equal(log.writes, want) {
			t.Errorf("%s: writes %q, want %q", step, log.writes, want)
		}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(virtual), v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	got := reconcileHost("refused", "virtual update web/status phase= reason=")
	c := hostSyncCondition(got)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != translate.ReasonHostSyncRefused || !strings.Contains(c.Message, `container "debugger"`) {
		t.Fatalf("HostSync condition after the refusal: %+v", c)
	}
	if len(recorder.Events) != 1 {
		t.Fatalf("%d events after the refusal, want 1", len(recorder.Events))
	}
	if e := <-recorder.Events; !strings.Contains(e, "Warning "+translate.ReasonHostSyncRefused) ||
		!strings.Contains(e, "adding ephemeral containers") || !strings.Contains(e, "securityContext.privileged") {
		t.Errorf("event %q", e)
	}

	// Every reconcile checks again; the refusal is reported once.
	reconcileHost("refused again")
	if len(recorder.Events) != 0 {
		t.Errorf("the refusal was reported again: %q", <-recorder.Events)
	}

	// Once the virtual pod's changes are all on the host, the condition
	// goes. (A tenant cannot take an ephemeral container back; here the
	// refused one gives way to one the gate passes, already on the host as
	// if written meanwhile: the fake client does not implement the
	// ephemeralcontainers subresource.)
	if err := updatePod(ctx, virtualClient, virtual, func(p *corev1.Pod) {
		p.Spec.EphemeralContainers[0].SecurityContext = nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := updatePod(ctx, hostClient, host, func(p *corev1.Pod) {
		v := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(virtual), v); err != nil {
			t.Fatal(err)
		}
		ephemeral, errs := translate.HostEphemeralContainers(v, cfg)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		p.Spec.EphemeralContainers = ephemeral
	}); err != nil {
		t.Fatal(err)
	}
	got = reconcileHost("all on the host", "virtual update web/status phase= reason=")
	if c := hostSyncCondition(got); c != nil {
		t.Errorf("HostSync condition once all is on the host: %+v", c)
	}
	reconcileHost("cleared")
}

func updatePod(ctx context.Context, c client.Client, pod *corev1.Pod, change func(*corev1.Pod)) error {
	current := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), current); err != nil {
		return err
	}
	change(current)
	return c.Update(ctx, current)
}

// The release of a host pod is guarded by the resourceVersion it was read
// at: written over the host pod as read, it removes the gate and names
// the virtual pod, and leaves the rest; over a host pod that changed since
// it was read, it is a conflict and writes nothing (the newer host pod's
// event brings the pair back). It stays an update of the whole pod: a
// merge patch of the gates cost the host apiserver more CPU per pod (its
// JSON round trip of the pod; issue 25's bench pair), not less.
func TestHostReleaseGuarded(t *testing.T) {
	ctx := context.Background()
	cfg := translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"}
	security, err := policy.NewSecurityPolicy("baseline")
	if err != nil {
		t.Fatal(err)
	}
	virtual := virtualPod("a")
	virtual.Spec.Containers = []corev1.Container{{Name: "app", Image: "nginx"}}
	stored, _, errs := translate.HostPod(virtual, cfg, "a")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	stored.UID = "host-a"
	if !translate.HeldForVirtualPod(stored) {
		t.Fatal("a new host pod is not held by podbridge's gate")
	}
	for _, tc := range []struct {
		name  string
		stale bool
	}{{"over the host pod as read", false}, {"over a host pod changed since it was read", true}} {
		t.Run(tc.name, func(t *testing.T) {
			log := &writeLog{}
			hostClient, virtualClient := log.client("host", stored.DeepCopy()), log.client("virtual", virtual)
			r := &podReconciler{
				Host: hostClient, HostReader: hostClient, Virtual: virtualClient, VirtualReader: virtualClient,
				Recorder: events.NewFakeRecorder(10), Config: cfg, Gate: policy.Gate{Security: security, Config: cfg},
				Clock: clocktesting.NewFakePassiveClock(testNow), Nodes: &nodeGuard{},
			}
			read := &corev1.Pod{}
			if err := hostClient.Get(ctx, client.ObjectKeyFromObject(stored), read); err != nil {
				t.Fatal(err)
			}
			if tc.stale {
				// Another writer (the platform, a hostile host user) changes
				// the host pod after the reflector read it.
				if err := updatePod(ctx, hostClient, stored, func(p *corev1.Pod) { p.Labels["changed"] = "meanwhile" }); err != nil {
					t.Fatal(err)
				}
			}
			released, ok := translate.ReleaseHostPod(virtual, read)
			if !ok {
				t.Fatal("ReleaseHostPod did not release")
			}
			written, err := r.writeHost(ctx, virtual, read, released, hostUpdate)
			if err != nil {
				t.Fatal(err)
			}
			after := &corev1.Pod{}
			if err := hostClient.Get(ctx, client.ObjectKeyFromObject(stored), after); err != nil {
				t.Fatal(err)
			}
			if tc.stale {
				if written || !translate.HeldForVirtualPod(after) || after.Annotations[translate.AnnotationUID] != "" || after.Labels["changed"] != "meanwhile" {
					t.Errorf("a release over a changed host pod was written (%v): gates %v, annotations %v, labels %v", written, after.Spec.SchedulingGates, after.Annotations, after.Labels)
				}
				return
			}
			if !written || translate.HeldForVirtualPod(after) || after.Annotations[translate.AnnotationUID] != string(virtual.UID) {
				t.Errorf("release not written (%v): gates %v, annotations %v", written, after.Spec.SchedulingGates, after.Annotations)
			}
			want := stored.DeepCopy()
			want.Spec.SchedulingGates, want.Annotations[translate.AnnotationUID] = nil, string(virtual.UID)
			if !equality.Semantic.DeepEqual(after.Spec, want.Spec) || !maps.Equal(after.Annotations, want.Annotations) || !maps.Equal(after.Labels, want.Labels) {
				t.Errorf("the release changed more than the gate and the UID annotation:\n got %+v\nwant %+v", after, want)
			}
			if !slices.Equal(log.writes, []string{"host update " + stored.Name}) {
				t.Errorf("writes %q, want one update of the host pod", log.writes)
			}
		})
	}
}
