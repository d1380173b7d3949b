package reflector

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podbridge/podbridge/translate"
)

func TestFieldsCutsRememberAndStayBounded(t *testing.T) {
	f := newFieldsCuts()
	tree := func(i int) []byte {
		return fmt.Appendf(nil, `{"f:metadata":{"f:labels":{"f:app-%d":{}}},"f:spec":{"f:containers":{}}}`, i)
	}
	for i := range maxFieldsCuts + 10 {
		raw := tree(i)
		if got, want := f.cut(raw).GetRawString(), string(translate.OwnedKeysFields(raw)); got != want {
			t.Fatalf("cut of tree %d = %s, want %s", i, got, want)
		}
		if again := f.cut(raw).GetRawString(); again != string(translate.OwnedKeysFields(raw)) {
			t.Fatalf("remembered cut of tree %d = %s", i, again)
		}
	}
	if len(f.cuts) > maxFieldsCuts || len(f.same) > maxFieldsCuts {
		t.Errorf("%d trees and %d cuts remembered, bound is %d", len(f.cuts), len(f.same), maxFieldsCuts)
	}
}

// Trees that differ only in what the cut drops (each pod's token volume)
// share one cut; trees whose kept keys differ never do, however alike.
func TestFieldsCutsShareOnlyEqualCuts(t *testing.T) {
	f := newFieldsCuts()
	tree := func(label, volume string) []byte {
		return fmt.Appendf(nil, `{"f:metadata":{"f:labels":{"f:%s":{}}},"f:spec":{"f:volumes":{"k:{\"name\":\"%s\"}":{}}}}`, label, volume)
	}
	a, b := f.cut(tree("app", "token-a")), f.cut(tree("app", "token-b"))
	if a != b {
		t.Errorf("trees differing only in a dropped volume got two cuts: %s and %s", a.GetRawString(), b.GetRawString())
	}
	c := f.cut(tree("app2", "token-a"))
	if c == a || c.GetRawString() == a.GetRawString() {
		t.Errorf("a tree with another label key got the cut %s, the same as %s", c.GetRawString(), a.GetRawString())
	}
	if want := string(translate.OwnedKeysFields(tree("app2", "token-a"))); c.GetRawString() != want {
		t.Errorf("cut = %s, want %s", c.GetRawString(), want)
	}
}

// The transform keeps what HostPodUpdate reads of podbridge's entries and
// the time of status writes, and drops every other manager's entry.
func TestHostPodTransformKeepsOwnedKeys(t *testing.T) {
	raw := `{"f:metadata":{"f:annotations":{"f:podbridge.io/sync-id":{}},"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{}},"f:schedulingGates":{"k:{\"name\":\"podbridge.io/token\"}":{}}}}`
	pod := func() *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
			{Manager: translate.FieldManagerWebhook, Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: metav1.NewFieldsV1(raw)},
			{Manager: "kubelet", Subresource: "status", FieldsV1: metav1.NewFieldsV1(`{"f:status":{}}`)},
			{Manager: "tenant-controller", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{}}`)},
		}}}
	}
	transform := trimManagedFields(hostPodFields)
	decoded := pod()
	array := decoded.ManagedFields
	first, err := transform(decoded)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := transform(pod())
	got, again := first.(*corev1.Pod).ManagedFields, second.(*corev1.Pod).ManagedFields
	if len(got) != 2 || got[0].Manager != translate.FieldManagerWebhook || got[1].Manager != "kubelet" || got[1].FieldsV1 != nil {
		t.Fatalf("kept entries %+v, want the webhook's and the status write's (without fields)", got)
	}
	want := `{"f:metadata":{"f:annotations":{"f:podbridge.io/sync-id":{}},"f:labels":{"f:app":{}}},"f:spec":{"f:schedulingGates":{"k:{\"name\":\"podbridge.io/token\"}":{}}}}`
	if s := got[0].FieldsV1.GetRawString(); s != want {
		t.Errorf("webhook entry cut to %s, want %s", s, want)
	}
	if &got[0] == &array[0] || cap(got) != len(got) {
		t.Errorf("kept entries in the decoded array (capacity %d for %d entries): all of it stays alive", cap(got), len(got))
	}
	if none, _ := trimManagedFields(func(*metav1.ManagedFieldsEntry) bool { return false })(pod()); none.(*corev1.Pod).ManagedFields != nil {
		t.Errorf("no entry kept, but managedFields %v", none.(*corev1.Pod).ManagedFields)
	}
	if again[0].FieldsV1 != got[0].FieldsV1 {
		t.Error("two pods with the same entry hold two copies of its cut")
	}
}
