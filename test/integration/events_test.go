package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/translate"
)

// virtualEventsOf lists the virtual events about pod as kubectl describe
// does (by the pod's name, namespace and UID).
func virtualEventsOf(ctx context.Context, pod *corev1.Pod) ([]corev1.Event, error) {
	list := &corev1.EventList{}
	err := virtualClient.List(ctx, list, client.InNamespace(pod.Namespace), client.MatchingFieldsSelector{Selector: fields.SelectorFromSet(fields.Set{
		"involvedObject.kind": "Pod", "involvedObject.name": pod.Name, "involvedObject.uid": string(pod.UID),
	})})
	return list.Items, err
}

// A real FailedScheduling from the host scheduler (a node selector no
// host node has) appears on the virtual pod, under its name, namespace and
// UID; the same kind of event about another virtual cluster's pod and
// about a pod that is not podbridge's never appears in this virtual cluster.
func TestHostSchedulingEventOnVirtualPod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespace(t)
	pod := simplePod(ns, "unplaceable")
	pod.Spec.NodeSelector = map[string]string{"podbridge-test/no-such-node": "true"}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// Pods the host scheduler also fails to place, that are not this
	// virtual cluster's: another virtual cluster's, and the host's own.
	cfg := env.Options.Translate
	strangers := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: translate.HostName("unplaceable", ns, "other"), Namespace: cfg.HostNamespace,
			Labels:      map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "other"},
			Annotations: map[string]string{translate.AnnotationName: "unplaceable", translate.AnnotationNamespace: ns, translate.AnnotationVCluster: "other", translate.AnnotationSyncID: "x"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "host-own-unplaceable", Namespace: cfg.HostNamespace}},
	}
	for _, s := range strangers {
		s.Spec = corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}, NodeSelector: pod.Spec.NodeSelector, AutomountServiceAccountToken: ptr.To(false)}
		if err := hostClient.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hostClient.Delete(context.Background(), s, client.GracePeriodSeconds(0)) })
	}
	var got corev1.Event
	eventually(t, time.Minute, "FailedScheduling on the virtual pod", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		events, err := virtualEventsOf(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		for _, e := range events {
			if e.Reason == "FailedScheduling" {
				got = e
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(events))
	})
	if got.Type != corev1.EventTypeWarning || got.Count < 1 || !strings.Contains(got.Message, "node") || got.Source.Component == "" {
		t.Errorf("event %+v", got)
	}
	if strings.Contains(got.Message, cfg.HostNamespace) || strings.Contains(got.Message, hostKey(pod).Name) {
		t.Errorf("the message names the host side: %q", got.Message)
	}
	// Both strangers have their FailedScheduling on the host by now (the
	// scheduler places pods in order); none reached the virtual cluster.
	eventually(t, time.Minute, "FailedScheduling of the strangers on the host", func(ctx context.Context) (bool, string) {
		list := &corev1.EventList{}
		if err := hostClient.List(ctx, list, client.InNamespace(cfg.HostNamespace)); err != nil {
			return false, err.Error()
		}
		seen := 0
		for _, e := range list.Items {
			for _, s := range strangers {
				if e.InvolvedObject.Name == s.Name && e.Reason == "FailedScheduling" {
					seen++
				}
			}
		}
		return seen >= len(strangers), fmt.Sprintf("%d of %d", seen, len(strangers))
	})
	// A marker event about this pod, recorded on the host after the
	// strangers' events: once it is copied, the reflector has had the
	// strangers' events in its queue too (they are retried for 30 s).
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	marker := hostPodEvent(host, "marker", "", "Marker", "marker")
	if err := hostClient.Create(ctx, marker); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the marker on the virtual pod", func(ctx context.Context) (bool, string) {
		events, err := virtualEventsOf(ctx, pod)
		for _, e := range events {
			if e.Reason == "Marker" {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(events), err)
	})
	// The virtual pod's FailedScheduling is exactly the copy of its own
	// host pod's; the other virtual cluster's pod, which carries the same
	// virtual name and namespace, added none; nothing else was copied
	// into the namespace.
	events, err := virtualEventsOf(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	hostEvents := &corev1.EventList{}
	if err := hostClient.List(ctx, hostEvents, client.InNamespace(cfg.HostNamespace)); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, e := range hostEvents.Items {
		if e.InvolvedObject.Name == host.Name {
			want[translate.VirtualEventName(pod.Name, e.Namespace, e.Name)] = true
		}
	}
	for _, e := range events {
		if !want[e.Name] {
			t.Errorf("virtual event %s (%s: %s) is no copy of an event about this pod's host pod", e.Name, e.Reason, e.Message)
		}
	}
	all := &corev1.EventList{}
	if err := virtualClient.List(ctx, all, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range all.Items {
		if e.InvolvedObject.Name != pod.Name {
			t.Errorf("an event about %s reached the namespace: %s", e.InvolvedObject.Name, e.Message)
		}
	}
}

// kubectl describe pod shows one Scheduled event: podbridge's, recorded
// when it bound the virtual pod, naming the virtual pod and node. The host
// scheduler's Scheduled about the host pod exists on the host and is not
// copied, while an event recorded after it is.
func TestHostScheduledEventShownOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespace(t)
	pod, host := runningPair(ctx, t, ns, "placed")
	var hostScheduled corev1.Event
	eventually(t, time.Minute, "the host scheduler's Scheduled on the host pod", func(ctx context.Context) (bool, string) {
		list := &corev1.EventList{}
		if err := hostClient.List(ctx, list, client.InNamespace(host.Namespace)); err != nil {
			return false, err.Error()
		}
		for _, e := range list.Items {
			if e.InvolvedObject.UID == host.UID && e.Reason == translate.ReasonScheduled {
				hostScheduled = e
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d host events", len(list.Items))
	})
	// The marker is recorded after the host's Scheduled: once its copy
	// shows, the reflector has handled the Scheduled too.
	marker := hostPodEvent(host, "marker", "", "Marker", "marker")
	if err := hostClient.Create(ctx, marker); err != nil {
		t.Fatal(err)
	}
	var scheduled []corev1.Event
	eventually(t, 30*time.Second, "the marker and podbridge's Scheduled on the virtual pod", func(ctx context.Context) (bool, string) {
		events, err := virtualEventsOf(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		scheduled = nil
		markers := 0
		for _, e := range events {
			switch e.Reason {
			case "Marker":
				markers++
			case translate.ReasonScheduled:
				scheduled = append(scheduled, e)
			}
		}
		return markers == 1 && len(scheduled) > 0, fmt.Sprintf("%d markers, %d Scheduled", markers, len(scheduled))
	})
	if len(scheduled) != 1 {
		for _, e := range scheduled {
			t.Logf("Scheduled %s from %s%s: %s", e.Name, e.Source.Component, e.ReportingController, e.Message)
		}
		t.Fatalf("%d Scheduled events on the virtual pod, want 1", len(scheduled))
	}
	got := scheduled[0]
	if want := "Successfully assigned " + ns + "/" + pod.Name + " to " + pod.Spec.NodeName; got.Message != want {
		t.Errorf("Scheduled message %q, want %q", got.Message, want)
	}
	if got.ReportingController != reflector.FieldManager || got.Name == translate.VirtualEventName(pod.Name, hostScheduled.Namespace, hostScheduled.Name) {
		t.Errorf("the Scheduled event %s (reported by %q) is not podbridge's", got.Name, got.ReportingController)
	}
}

// The host's repeats of an event update one virtual event's count, with
// one write each; a host event update that changes nothing shown writes
// nothing.
func TestHostEventRepeatsAggregated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := namespace(t)
	pod, host := runningPair(ctx, t, ns, "flaky")
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	hostEvent := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: host.Name + ".backoff", Namespace: host.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Name: host.Name, Namespace: host.Namespace, UID: host.UID, FieldPath: "spec.containers{app}"},
		Reason:         "BackOff", Type: corev1.EventTypeWarning, Message: "Back-off restarting failed container app in pod " + host.Name,
		Source: corev1.EventSource{Component: "kubelet", Host: host.Spec.NodeName}, FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	writes := func() float64 { return actionCount(t, "event_copy") }
	before := writes()
	if err := hostClient.Create(ctx, hostEvent); err != nil {
		t.Fatal(err)
	}
	waitCount := func(want int32) {
		t.Helper()
		eventually(t, 30*time.Second, fmt.Sprintf("the virtual event with count %d", want), func(ctx context.Context) (bool, string) {
			events, err := virtualEventsOf(ctx, pod)
			if err != nil {
				return false, err.Error()
			}
			var backoffs []corev1.Event
			for _, e := range events {
				if e.Reason == "BackOff" {
					backoffs = append(backoffs, e)
				}
			}
			if len(backoffs) != 1 {
				return false, fmt.Sprintf("%d BackOff events", len(backoffs))
			}
			e := backoffs[0]
			if e.Message != "Back-off restarting failed container app in pod "+pod.Name || e.InvolvedObject.FieldPath != "spec.containers{app}" {
				t.Fatalf("event %+v", e)
			}
			return e.Count == want, fmt.Sprintf("count %d", e.Count)
		})
	}
	waitCount(1)
	hostEvent.Count = 5
	hostEvent.LastTimestamp = metav1.NewTime(now.Add(10 * time.Second))
	if err := hostClient.Update(ctx, hostEvent); err != nil {
		t.Fatal(err)
	}
	waitCount(5)
	// A change nothing on the virtual side shows: no write.
	hostEvent.Annotations = map[string]string{"example.com/noise": "1"}
	if err := hostClient.Update(ctx, hostEvent); err != nil {
		t.Fatal(err)
	}
	// Then a repeat: once its count shows, the noise was handled before
	// it (or with it: one key is never reconciled twice at once). Three
	// writes: the copy and two count changes, none for the noise.
	hostEvent.Count = 6
	hostEvent.LastTimestamp = metav1.NewTime(now.Add(20 * time.Second))
	if err := hostClient.Update(ctx, hostEvent); err != nil {
		t.Fatal(err)
	}
	waitCount(6)
	if got := writes() - before; got != 3 {
		t.Errorf("%v virtual event writes for one host event and two repeats, want 3", got)
	}
}

// A storm of host events about one pod costs the virtual apiserver one
// request per copied event, paced by the copy's rate limit: counted by
// the virtual apiserver itself (apiserver_request_total, the server-side
// applies of core events, which only the event copy sends), the requests
// over the storm stay within the limiter's burst plus its rate times the
// time taken, and copying more events than the burst takes the time the
// rate demands.
func TestHostEventStormPaced(t *testing.T) {
	const storm = 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespace(t)
	pod, host := runningPair(ctx, t, ns, "stormy")
	// The storm is sent faster than the test client's default rate.
	fast := rest.CopyConfig(env.Host.Config)
	fast.QPS, fast.Burst = 1000, 1000
	hostFast, err := client.New(fast, client.Options{Scheme: hostClient.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	applies := func() float64 {
		t.Helper()
		f, err := promscrape.ScrapeAPIServer(ctx, env.Virtual.Config)
		if err != nil {
			t.Fatal(err)
		}
		return f.SumBy("apiserver_request_total", "verb", "group", "resource")["APPLY  events"]
	}
	start := time.Now()
	before := applies()
	for i := range storm {
		e := hostPodEvent(host, fmt.Sprintf("storm-%03d", i), "", "Storm", fmt.Sprintf("storm %d", i))
		e.Type = corev1.EventTypeWarning
		if err := hostFast.Create(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Minute, fmt.Sprintf("%d storm events on the virtual pod", storm), func(ctx context.Context) (bool, string) {
		events, err := virtualEventsOf(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, e := range events {
			if e.Reason == "Storm" {
				n++
			}
		}
		return n == storm, fmt.Sprintf("%d", n)
	})
	requests := applies() - before
	elapsed := time.Since(start)
	// Slack: copies whose token was taken before the first scrape and
	// whose request ended after it (at most one per worker).
	const slack = 5
	limit := float64(reflector.DefaultEventBurst) + reflector.DefaultEventQPS*elapsed.Seconds() + slack
	t.Logf("%d host events copied in %s with %.0f server-side applies (limit %.0f)", storm, elapsed.Round(time.Millisecond), requests, limit)
	if requests < storm || requests > limit {
		t.Errorf("%.0f event applies on the virtual apiserver for %d host events in %s; want at least one each and at most %.0f", requests, storm, elapsed, limit)
	}
	if least := time.Duration(float64(storm-reflector.DefaultEventBurst) / reflector.DefaultEventQPS * float64(time.Second)); elapsed < least-500*time.Millisecond {
		t.Errorf("%d events copied in %s: faster than the rate limit allows (%s)", storm, elapsed, least)
	}
}

// An event kwok's stage records about the host pod (as a kubelet would)
// appears on the virtual pod.
func TestKwokStageEventOnVirtualPod(t *testing.T) {
	ns := namespace(t)
	pod := simplePod(ns, "warned")
	pod.Labels["kwok-stage-event"] = "warn"
	if err := virtualClient.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	pod = waitRunningBound(t, pod)
	eventually(t, time.Minute, "kwok's warning on the virtual pod", func(ctx context.Context) (bool, string) {
		events, err := virtualEventsOf(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		for _, e := range events {
			if e.Reason == "KwokStageWarning" && e.Type == corev1.EventTypeWarning && e.Message == "kwok's stage warns about this pod" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(events))
	})
}

// An event about a container only the host pod has (a host operator's
// kubectl debug container: its name and image would tell the tenant what
// the operator runs, and the name is what a tenant needs to aim its own
// ephemeral container at the operator's) never reaches the virtual pod;
// an event about the tenant's own container, recorded after it, does.
func TestHostEventAboutHostOnlyContainerStaysOnHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespace(t)
	pod, host := runningPair(ctx, t, ns, "watched")
	about := func(name, fieldPath, reason string) *corev1.Event {
		return hostPodEvent(host, name, fieldPath, reason, reason+" "+fieldPath)
	}
	for _, e := range []*corev1.Event{
		about("operator", "spec.ephemeralContainers{operator-debug}", "OperatorStarted"),
		about("renamed", "spec.initContainers{app}", "WrongList"), // the tenant's name, in a list it has no such container in
		about("odd", "spec.volumes{app}", "OddPath"),
		about("marker", "spec.containers{app}", "Marker"),
	} {
		if err := hostClient.Create(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var reasons []string
	eventually(t, 30*time.Second, "the marker on the virtual pod", func(ctx context.Context) (bool, string) {
		events, err := virtualEventsOf(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		reasons = reasons[:0]
		for _, e := range events {
			reasons = append(reasons, e.Reason)
		}
		return strings.Contains(strings.Join(reasons, ","), "Marker"), strings.Join(reasons, ",")
	})
	for _, r := range reasons {
		if r == "OperatorStarted" || r == "WrongList" || r == "OddPath" {
			t.Errorf("host event %s reached the virtual pod (events: %v)", r, reasons)
		}
	}
}

// runningPair creates pod name in namespace ns, waits until it runs bound
// to a node, and returns it with its host pod.
func runningPair(ctx context.Context, t *testing.T, ns, name string) (virtual, host *corev1.Pod) {
	t.Helper()
	virtual = simplePod(ns, name)
	if err := virtualClient.Create(ctx, virtual); err != nil {
		t.Fatal(err)
	}
	virtual = waitRunningBound(t, virtual)
	host, err := getHostPod(ctx, virtual)
	if err != nil {
		t.Fatal(err)
	}
	return virtual, host
}

// hostPodEvent is a Normal event about host pod, or about its container
// when fieldPath names one, recorded now, named after the pod and suffix.
func hostPodEvent(host *corev1.Pod, suffix, fieldPath, reason, message string) *corev1.Event {
	now := metav1.NewTime(time.Now())
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: host.Name + "." + suffix, Namespace: host.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Name: host.Name, Namespace: host.Namespace, UID: host.UID, FieldPath: fieldPath},
		Reason:         reason, Type: corev1.EventTypeNormal, Message: message, Source: corev1.EventSource{Component: "test"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
}

// hostClaimEvent is an event about a host claim as the host's binder
// records it.
func hostClaimEvent(claim *corev1.PersistentVolumeClaim, uid types.UID, suffix, reason, message string) *corev1.Event {
	now := metav1.NewTime(time.Now())
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: claim.Name + "." + suffix, Namespace: claim.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Name: claim.Name, Namespace: claim.Namespace, UID: uid},
		Reason:         reason, Type: corev1.EventTypeNormal, Message: message, Source: corev1.EventSource{Component: "persistentvolume-controller"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
}

// The host binder's events about a host claim (the test bed's host runs
// no binder: the test records them as it would) appear on the virtual
// claim, about its name, namespace and UID, the host claim's name in the
// message replaced; events about another virtual cluster's host claim of
// the same virtual name and namespace, and about an earlier host claim of
// this name (another UID), do not.
func TestHostClaimEventsOnVirtualClaim(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespace(t)
	cfg := env.Options.Translate
	claim := simpleClaim(ns, "data", "1Gi")
	if err := virtualClient.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	host := getHostClaim(t, claim)
	stranger := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: translate.HostClaimName("data", ns, "other"), Namespace: cfg.HostNamespace,
			Labels:      map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "other", translate.LabelNamespace: ns},
			Annotations: map[string]string{translate.AnnotationName: "data", translate.AnnotationNamespace: ns, translate.AnnotationVCluster: "other", translate.AnnotationSyncID: claim.Annotations[translate.AnnotationSyncID]}},
		Spec: *claim.Spec.DeepCopy(),
	}
	if err := hostClient.Create(ctx, stranger); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = hostClient.Delete(context.Background(), stranger)
		releaseHostClaim(t, client.ObjectKeyFromObject(stranger))
	})
	for _, e := range []*corev1.Event{
		hostClaimEvent(stranger, stranger.UID, "stranger", "WaitForFirstConsumer", "waiting for first consumer to be created before binding"),
		hostClaimEvent(host, "uid-of-an-earlier-claim", "earlier", "ProvisioningFailed", "an earlier claim of this name"),
		hostClaimEvent(host, host.UID, "wait", "WaitForFirstConsumer", "waiting for first consumer to be created before binding"),
		hostClaimEvent(host, host.UID, "named", "ExternalProvisioning", `waiting for a volume to be created for claim "`+host.Namespace+"/"+host.Name+`"`),
	} {
		if err := hostClient.Create(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(claim), claim); err != nil {
		t.Fatal(err)
	}
	claimEvents := func(ctx context.Context) (map[string]corev1.Event, error) {
		list := &corev1.EventList{}
		err := virtualClient.List(ctx, list, client.InNamespace(ns), client.MatchingFieldsSelector{Selector: fields.SelectorFromSet(fields.Set{
			"involvedObject.kind": "PersistentVolumeClaim", "involvedObject.name": claim.Name, "involvedObject.uid": string(claim.UID),
		})})
		byReason := map[string]corev1.Event{}
		for _, e := range list.Items {
			byReason[e.Reason] = e
		}
		return byReason, err
	}
	var got map[string]corev1.Event
	eventually(t, time.Minute, "the binder's events on the virtual claim", func(ctx context.Context) (bool, string) {
		var err error
		got, err = claimEvents(ctx)
		_, wait := got["WaitForFirstConsumer"]
		_, named := got["ExternalProvisioning"]
		return err == nil && wait && named, fmt.Sprint(len(got), err)
	})
	if e := got["WaitForFirstConsumer"]; e.Type != corev1.EventTypeNormal || e.Message != "waiting for first consumer to be created before binding" || e.Source.Component != "persistentvolume-controller" {
		t.Errorf("WaitForFirstConsumer on the virtual claim: %+v", e)
	}
	if e := got["ExternalProvisioning"]; e.Message != `waiting for a volume to be created for claim "`+ns+`/data"` {
		t.Errorf("message %q names the host side", e.Message)
	}
	// A marker recorded after the others: once it is copied, the
	// reflector has had the stranger's and the earlier claim's events in
	// its queue too.
	if err := hostClient.Create(ctx, hostClaimEvent(host, host.UID, "marker", "Marker", "marker")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the marker on the virtual claim", func(ctx context.Context) (bool, string) {
		var err error
		got, err = claimEvents(ctx)
		_, ok := got["Marker"]
		return err == nil && ok, fmt.Sprint(len(got), err)
	})
	all := &corev1.EventList{}
	if err := virtualClient.List(ctx, all, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range all.Items {
		if e.InvolvedObject.UID != claim.UID || e.Reason == "ProvisioningFailed" {
			t.Errorf("event %s (%s: %s) about %+v reached the namespace", e.Name, e.Reason, e.Message, e.InvolvedObject)
		}
	}
}
