package reflector

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
