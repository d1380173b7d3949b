package reflector

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podbridge/podbridge/translate"
)

func TestFieldsCutsRememberAndStayBounded(t *testing.T) {
	const limit = 64
	f := newFieldsCuts(limit)
	tree := func(i int) []byte {
		return fmt.Appendf(nil, `{"f:metadata":{"f:labels":{"f:app-%d":{}}},"f:spec":{"f:containers":{}}}`, i)
	}
	remembered := func(i int) bool {
		key := sha256.Sum256(tree(i))
		_, current := f.cuts.current[key]
		_, previous := f.cuts.previous[key]
		return current || previous
	}
	for i := range 3*limit + 10 {
		raw := tree(i)
		if got, want := f.cut(raw).GetRawString(), string(translate.OwnedKeysFields(raw)); got != want {
			t.Fatalf("cut of tree %d = %s, want %s", i, got, want)
		}
		if again := f.cut(raw).GetRawString(); again != string(translate.OwnedKeysFields(raw)) {
			t.Fatalf("remembered cut of tree %d = %s", i, again)
		}
		// Tree 0 is the one pod whose events keep coming: it is never
		// forgotten, however many other trees pass.
		f.cut(tree(0))
		if !remembered(0) {
			t.Fatalf("tree 0 forgotten after %d other trees", i)
		}
	}
	if len(f.cuts.current) > limit || len(f.cuts.previous) > limit || len(f.same) > limit {
		t.Errorf("%d + %d trees and %d cuts remembered, bound is %d each", len(f.cuts.current), len(f.cuts.previous), len(f.same), limit)
	}
	// The trees of the last generation are all still known: a cache of
	// that many pods parses no tree twice.
	last := 3*limit + 10
	for i := last - limit; i < last; i++ {
		if !remembered(i) {
			t.Fatalf("tree %d of the last %d forgotten", i, limit)
		}
	}
}

// Trees that differ only in what the cut drops (each pod's token volume)
// share one cut; trees whose kept keys differ never do, however alike.
func TestFieldsCutsShareOnlyEqualCuts(t *testing.T) {
	f := newFieldsCuts(maxFieldsCuts)
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
			{Manager: "kubelet", Subresource: "status", Time: &metav1.Time{Time: time.Unix(100, 0)}, FieldsV1: metav1.NewFieldsV1(`{"f:status":{}}`)},
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

// The transform keeps what the readers of a cached pod's entries find:
// the latest status write of a host pod (StatusChangedAt), the reflector's
// of a virtual pod (lastStatusWrite), and podbridge's entries of the pod
// itself (HostPodUpdate's) in order.
func TestTrimKeepsTheLatestStatusWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	managers := []string{"kwok", "kubelet", "bench", translate.FieldManagerReflector, translate.FieldManagerWebhook, "tenant"}
	for i := range 500 {
		// As the apiserver keeps them: one entry per manager and subresource.
		var entries []metav1.ManagedFieldsEntry
		seen := map[string]bool{}
		for range rng.IntN(9) {
			e := metav1.ManagedFieldsEntry{Manager: managers[rng.IntN(len(managers))], Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1"}
			if rng.IntN(2) == 0 {
				e.Subresource = "status"
			}
			if seen[e.Manager+"/"+e.Subresource] {
				continue
			}
			seen[e.Manager+"/"+e.Subresource] = true
			if rng.IntN(5) > 0 {
				e.Time = &metav1.Time{Time: time.Unix(int64(rng.IntN(20)), 0)}
			}
			if rng.IntN(3) > 0 {
				e.FieldsV1 = metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{"f:a":{}}}}`)
			}
			entries = append(entries, e)
		}
		pod := func() *corev1.Pod {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.Unix(3, 0)}}
			for _, e := range entries {
				e.FieldsV1 = e.FieldsV1.DeepCopy()
				p.ManagedFields = append(p.ManagedFields, e)
			}
			return p
		}
		host, _ := trimManagedFields(hostPodFields)(pod())
		if got, want := translate.StatusChangedAt(host.(*corev1.Pod)), translate.StatusChangedAt(pod()); !got.Equal(want) {
			t.Fatalf("case %d: status changed at %v after the transform, %v before; entries %+v", i, got, want, entries)
		}
		var ours, kept []string
		for _, e := range entries {
			if (e.Manager == translate.FieldManagerWebhook || e.Manager == translate.FieldManagerReflector) && e.Subresource == "" {
				ours = append(ours, e.Manager+"/"+e.FieldsV1.GetRawString())
			}
		}
		for _, e := range host.(*corev1.Pod).ManagedFields {
			if (e.Manager == translate.FieldManagerWebhook || e.Manager == translate.FieldManagerReflector) && e.Subresource == "" {
				kept = append(kept, e.Manager+"/"+string(translate.OwnedKeysFields(e.FieldsV1.GetRawBytes())))
			}
		}
		for i, e := range ours {
			manager, raw, _ := strings.Cut(e, "/")
			ours[i] = manager + "/" + string(translate.OwnedKeysFields([]byte(raw)))
		}
		if fmt.Sprint(kept) != fmt.Sprint(ours) {
			t.Fatalf("case %d: podbridge's entries %v after the transform, %v before", i, kept, ours)
		}
		virtual, _ := trimManagedFields(virtualPodFields)(pod())
		if got, want := lastStatusWrite(virtual.(*corev1.Pod)), lastStatusWrite(pod()); !got.Equal(want) {
			t.Fatalf("case %d: last status write %v after the transform, %v before; entries %+v", i, got, want, entries)
		}
	}
}

// BenchmarkFieldsCutsEvents cuts the webhook's entry of host pods' events
// in turn, as the host pod cache's transform does at every event of a
// virtual cluster of that many pods: each pod's tree differs (its token
// volume), and the bench's 10,000 pods outnumber what a bound that clears
// the memory when full remembers.
func BenchmarkFieldsCutsEvents(b *testing.B) {
	for _, pods := range []int{1000, 10000} {
		trees := make([][]byte, pods)
		for i := range trees {
			trees[i] = fmt.Appendf(nil, `{"f:metadata":{"f:annotations":{".":{},"f:podbridge.io/admitted-spec":{},"f:podbridge.io/name":{},"f:podbridge.io/namespace":{},"f:podbridge.io/service-account":{},"f:podbridge.io/sync-id":{},"f:podbridge.io/vcluster":{}},"f:labels":{".":{},"f:app.kubernetes.io/managed-by":{},"f:podbridge.io/namespace":{},"f:podbridge.io/vcluster":{},"f:tenant.podbridge.io/app":{}}},"f:spec":{"f:automountServiceAccountToken":{},"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{"k:{\"name\":\"KUBERNETES_SERVICE_HOST\"}":{".":{},"f:name":{},"f:value":{}}},"f:image":{},"f:name":{}}},"f:dnsPolicy":{},"f:schedulingGates":{".":{},"k:{\"name\":\"podbridge.io/virtual-pod\"}":{".":{},"f:name":{}}},"f:volumes":{".":{},"k:{\"name\":\"kube-api-access-%05d\"}":{".":{},"f:name":{},"f:projected":{}}}}}`, i)
		}
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			f := newFieldsCuts(maxFieldsCuts)
			for _, raw := range trees {
				f.cut(raw)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				f.cut(trees[i%pods])
			}
		})
	}
}
