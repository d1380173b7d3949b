package check

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podbridge/podbridge/translate"
)

var cfg = translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"}

func pair(name, syncID string, phase corev1.PodPhase) (corev1.Pod, corev1.Pod) {
	v := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: map[string]string{translate.AnnotationSyncID: syncID}}}
	v.Status.Phase = phase
	h := corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: translate.HostName(name, "ns", "vc"), Namespace: "host",
		Annotations: map[string]string{translate.AnnotationSyncID: syncID, translate.AnnotationName: name, translate.AnnotationNamespace: "ns"},
	}}
	h.Status.Phase = phase
	return v, h
}

func TestEvaluate(t *testing.T) {
	now := time.Now()
	okV, okH := pair("ok", "1", corev1.PodRunning)
	lostV, _ := pair("lost", "2", corev1.PodRunning)
	dupV, dupH := pair("dup", "3", corev1.PodRunning)
	_, orphanH := pair("gone", "4", corev1.PodRunning)
	orphanH.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	_, youngH := pair("admitting", "5", corev1.PodRunning)
	youngH.CreationTimestamp = metav1.NewTime(now)
	staleV, staleH := pair("stale", "6", corev1.PodPending)
	staleH.Status.Phase = corev1.PodRunning
	bare := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "ns"}}

	got := Evaluate(
		[]corev1.Pod{okV, lostV, dupV, staleV, bare},
		[]corev1.Pod{okH, dupH, dupH, orphanH, youngH, staleH},
		Options{Config: cfg, OrphanGracePeriod: time.Minute, Statuses: true, Now: now},
	)
	want := []string{DuplicateHost + ": virtual ns/dup", NoHostPod + ": virtual ns/lost", NoSyncID + ": virtual ns/bare", Orphan + ": host gone-x-ns-x-vc", StatusDisagrees + ": virtual ns/stale"}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d: %v", len(got), len(want), got)
	}
	for _, w := range want {
		found := false
		for _, v := range got {
			found = found || strings.HasPrefix(v.String(), w)
		}
		if !found {
			t.Errorf("missing violation %q in %v", w, got)
		}
	}
}

func servicePair(name, syncID, clusterIP string) (corev1.Service, corev1.Service) {
	v := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: map[string]string{translate.AnnotationSyncID: syncID}}}
	v.Spec.ClusterIP = clusterIP
	h := corev1.Service{ObjectMeta: metav1.ObjectMeta{
		Name: translate.HostServiceName(name, "ns", "vc"), Namespace: "host",
		Annotations: map[string]string{translate.AnnotationSyncID: syncID, translate.AnnotationName: name, translate.AnnotationNamespace: "ns"},
	}}
	h.Spec.ClusterIP = clusterIP
	return v, h
}

func TestEvaluateServices(t *testing.T) {
	now := time.Now()
	okV, okH := servicePair("ok", "1", "10.0.0.10")
	lostV, _ := servicePair("lost", "2", "10.0.0.11")
	dupV, dupH := servicePair("dup", "3", "10.0.0.12")
	_, orphanH := servicePair("gone", "4", "10.0.0.13")
	orphanH.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	_, youngH := servicePair("admitting", "5", "10.0.0.14")
	youngH.CreationTimestamp = metav1.NewTime(now)
	movedV, movedH := servicePair("moved", "6", "10.0.0.15")
	movedH.Spec.ClusterIP = "10.0.0.16"
	bare := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "ns"}}
	// Neither has a host Service: no violation.
	external := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external", Namespace: "ns"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}}
	apiserver := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}

	got := EvaluateServices(
		[]corev1.Service{okV, lostV, dupV, movedV, bare, external, apiserver},
		[]corev1.Service{okH, dupH, dupH, orphanH, youngH, movedH},
		Options{Config: cfg, OrphanGracePeriod: time.Minute, Now: now},
	)
	want := []string{DuplicateHostService + ": virtual ns/dup", NoHostService + ": virtual ns/lost", OrphanService + ": host gone-x-ns-x-vc",
		ServiceAddressDiffers + ": virtual ns/moved", ServiceNoSyncID + ": virtual ns/bare"}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d: %v", len(got), len(want), got)
	}
	for _, w := range want {
		found := false
		for _, v := range got {
			found = found || strings.HasPrefix(v.String(), w)
		}
		if !found {
			t.Errorf("missing violation %q in %v", w, got)
		}
	}
}

func policyPair(name, syncID string) (networkingv1.NetworkPolicy, networkingv1.NetworkPolicy) {
	v := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: map[string]string{translate.AnnotationSyncID: syncID}}}
	h := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{
		Name: translate.HostNetworkPolicyName(name, "ns", "vc"), Namespace: "host",
		Annotations: map[string]string{translate.AnnotationSyncID: syncID, translate.AnnotationName: name, translate.AnnotationNamespace: "ns"},
	}}
	return v, h
}

// Each NetworkPolicy pair's violations, and the isolation policy's.
func TestEvaluateNetworkPolicies(t *testing.T) {
	now := time.Now()
	okV, okH := policyPair("ok", "1")
	lostV, _ := policyPair("lost", "2")
	dupV, dupH := policyPair("dup", "3")
	_, orphanH := policyPair("gone", "4")
	orphanH.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	_, youngH := policyPair("admitting", "5")
	youngH.CreationTimestamp = metav1.NewTime(now)
	bare := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "ns"}}
	isolation := *translate.IsolationPolicy(cfg)
	o := Options{Config: cfg, OrphanGracePeriod: time.Minute, Now: now}

	got := EvaluateNetworkPolicies([]networkingv1.NetworkPolicy{okV, lostV, dupV, bare}, []networkingv1.NetworkPolicy{okH, dupH, dupH, orphanH, youngH, isolation}, o)
	want := []string{DuplicateHostPolicy + ": virtual ns/dup", NoHostPolicy + ": virtual ns/lost", OrphanPolicy + ": host gone-x-ns-x-vc", PolicyNoSyncID + ": virtual ns/bare"}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d: %v", len(got), len(want), got)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(v Violation) bool { return strings.HasPrefix(v.String(), w) }) {
			t.Errorf("missing violation %q in %v", w, got)
		}
	}

	edited := *isolation.DeepCopy()
	edited.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
	for name, hosts := range map[string][]networkingv1.NetworkPolicy{NoIsolationPolicy: {okH}, IsolationPolicyDiffers: {okH, edited}} {
		if got := EvaluateNetworkPolicies([]networkingv1.NetworkPolicy{okV}, hosts, o); len(got) != 1 || got[0].Kind != name {
			t.Errorf("want one %s, got %v", name, got)
		}
	}
}

// default/kubernetes at an address other than the platform's for it is a
// violation: kubernetes.default.svc would not reach the virtual apiserver.
func TestEvaluateKubernetesService(t *testing.T) {
	cfg := translate.Config{VCluster: "vc", HostNamespace: "host", KubernetesServiceIP: "10.0.0.2"}
	at := func(ip string) []corev1.Service {
		return []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: ip}}}
	}
	if got := EvaluateServices(at("10.0.0.2"), nil, Options{Config: cfg}); len(got) != 0 {
		t.Errorf("at the platform's address: %v", got)
	}
	got := EvaluateServices(at("10.0.0.1"), nil, Options{Config: cfg})
	if len(got) != 1 || !strings.HasPrefix(got[0].String(), ServiceAddressDiffers+": virtual default/kubernetes") {
		t.Errorf("at the range's first address: %v, want one %s", got, ServiceAddressDiffers)
	}
}

// A host EndpointSlice is checked against what the gate decides now: one
// still naming an address that is no tenant pod's any more differs, a
// missing one and one of a deleted virtual slice are reported.
func TestEvaluateEndpointSlices(t *testing.T) {
	virtual := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Annotations: map[string]string{translate.AnnotationSyncID: "s"}}}
	host, errs := translate.HostService(&virtual, cfg, "s")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	host.UID = "host-uid"
	slice := func(name, address string) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{address}}},
		}
	}
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "host", Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "vc"}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5"},
	}
	hostOf := func(s discoveryv1.EndpointSlice, address string) discoveryv1.EndpointSlice {
		h := translate.HostEndpointSlice(&s, "db", host.Name, host.UID, cfg, []discoveryv1.Endpoint{{Addresses: []string{address}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "host", Name: "p"}}})
		return *h
	}
	inSync, stale, missing, deleted := slice("in-sync", "10.244.0.5"), slice("stale", "10.244.9.9"), slice("missing", "10.244.0.5"), slice("deleted", "10.244.0.5")
	got := EvaluateEndpointSlices([]corev1.Service{virtual}, []corev1.Service{*host},
		[]discoveryv1.EndpointSlice{inSync, stale, missing},
		[]discoveryv1.EndpointSlice{hostOf(inSync, "10.244.0.5"), hostOf(stale, "10.244.9.9"), hostOf(deleted, "10.244.0.5")},
		[]corev1.Pod{pod}, Options{Config: cfg})
	var kinds []string
	for _, v := range got {
		kinds = append(kinds, v.Kind+" "+v.Host)
	}
	want := []string{
		EndpointSliceDiffers + " " + translate.HostEndpointSliceName("stale", "ns", "vc"),
		ExtraHostEndpointSlice + " " + translate.HostEndpointSliceName("deleted", "ns", "vc"),
		NoHostEndpointSlice + " " + translate.HostEndpointSliceName("missing", "ns", "vc"),
	}
	if strings.Join(kinds, "; ") != strings.Join(want, "; ") {
		t.Errorf("violations %v, want %v", got, want)
	}
}

func claimPair(name, syncID string) (corev1.PersistentVolumeClaim, corev1.PersistentVolumeClaim) {
	v := corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: map[string]string{translate.AnnotationSyncID: syncID}}}
	h := corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{
		Name: translate.HostClaimName(name, "ns", "vc"), Namespace: "host",
		Annotations: map[string]string{translate.AnnotationSyncID: syncID, translate.AnnotationName: name, translate.AnnotationNamespace: "ns"},
	}}
	return v, h
}

// The claim invariant: one host claim per admitted virtual claim, no
// orphan past the grace period (one the host is deleting is going), and,
// with Statuses, the same phase and capacity.
func TestEvaluateClaims(t *testing.T) {
	now := time.Now()
	okV, okH := claimPair("ok", "1")
	lostV, _ := claimPair("lost", "2")
	dupV, dupH := claimPair("dup", "3")
	_, orphanH := claimPair("gone", "4")
	orphanH.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	_, goingH := claimPair("going", "5")
	goingH.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	goingH.DeletionTimestamp = &metav1.Time{Time: now}
	pendingV, boundH := claimPair("pending", "6")
	boundH.Status.Phase = corev1.ClaimBound
	bare := corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: "ns"}}

	got := EvaluateClaims(
		[]corev1.PersistentVolumeClaim{okV, lostV, dupV, pendingV, bare},
		[]corev1.PersistentVolumeClaim{okH, dupH, dupH, orphanH, goingH, boundH},
		Options{Config: cfg, OrphanGracePeriod: time.Minute, Now: now, Statuses: true},
	)
	want := []string{ClaimNoSyncID + ": virtual ns/bare", ClaimStatusDisagrees + ": virtual ns/pending", DuplicateHostClaim + ": virtual ns/dup",
		NoHostClaim + ": virtual ns/lost", OrphanClaim + ": host gone-x-ns-x-vc"}
	var names []string
	for _, v := range got {
		names = append(names, v.String())
	}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d: %v", len(got), len(want), names)
	}
	for i, w := range want {
		if !strings.HasPrefix(names[i], w) {
			t.Errorf("violation %d: %q, want %q", i, names[i], w)
		}
	}
}
