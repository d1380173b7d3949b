package caps

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

var cfg = translate.Config{VCluster: "v", HostNamespace: "host", HostServiceAccount: "default"}

func configMap(name, data string) *corev1.ConfigMap {
	return translate.HostConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", ResourceVersion: "1"}, Data: map[string]string{"k": data}}, cfg)
}

func TestBudget(t *testing.T) {
	ctx := context.Background()
	onHost := configMap("a", "12345678") // 9 bytes
	token := translate.HostTokenSecret("p", "ns", translate.Token{ServiceAccount: "default", ExpirationSeconds: 3600, HostSecret: "tok"}, "secret-token-bytes", cfg)
	other := configMap("b", "x")
	other.Labels[translate.LabelVCluster] = "another"
	reader := fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(onHost, token, other).Build()
	b := &Budget{Reader: reader, Namespace: "host", VCluster: "v", Limits: Limits{MaxCopies: 3, MaxCopyBytes: 40}}

	// Token Secrets and other virtual clusters' copies do not count: 1 in use.
	release, err := b.Reserve(ctx, configMap("b", "1"), configMap("c", "1"))
	if err != nil {
		t.Fatalf("two copies with one in use of 3: %v", err)
	}
	var limit *LimitError
	_, err = b.Reserve(ctx, configMap("d", "1"))
	if !errors.As(err, &limit) || limit.Flag != FlagMaxCopies || limit.Use != 3 || !strings.Contains(err.Error(), "--max-copies") {
		t.Fatalf("fourth copy while two are reserved: %v", err)
	}
	// An existing copy may be rewritten at the count cap, within the bytes.
	if _, err := b.Reserve(ctx, configMap("a", strings.Repeat("y", 20))); err != nil {
		t.Errorf("rewriting a copy at the count cap: %v", err)
	}
	if _, err = b.Reserve(ctx, configMap("a", strings.Repeat("y", 40))); !errors.As(err, &limit) || limit.Flag != FlagMaxCopyBytes {
		t.Errorf("growing a copy past the byte cap: %v", err)
	}
	// Released reservations free their room.
	release()
	if _, err := b.Reserve(ctx, configMap("d", "1")); err != nil {
		t.Errorf("after release: %v", err)
	}
}

// Concurrent admissions never admit more than the cap together.
func TestBudgetUnderConcurrency(t *testing.T) {
	b := &Budget{Reader: fake.NewClientBuilder().WithScheme(kube.Scheme).Build(), Namespace: "host", VCluster: "v", Limits: Limits{MaxCopies: 5}}
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := b.Reserve(context.Background(), configMap("c"+string(rune('a'+i)), "1")); err == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 5 {
		t.Errorf("admitted %d copies concurrently, cap 5", admitted)
	}
}

var _ client.Reader = (client.Client)(nil)

// The webhook's cache keeps of host copies only what BudgetFields keeps:
// the budget must count the same from it as from the whole objects, and
// select the same ones by label.
func TestBudgetFieldsKeepWhatTheBudgetReads(t *testing.T) {
	token := translate.HostTokenSecret("p", "ns", translate.Token{ServiceAccount: "default", ExpirationSeconds: 3600, HostSecret: "tok"}, "secret-token-bytes", cfg)
	secret := translate.HostSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", ResourceVersion: "7"}, Data: map[string][]byte{"k": []byte("value")}}, cfg)
	other := configMap("b", "x")
	other.Labels[translate.LabelVCluster] = "another"
	unnamed := configMap("c", "xyz")
	delete(unnamed.Annotations, translate.AnnotationName)
	selector := labels.SelectorFromSet(labels.Set{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "v"})
	for name, obj := range map[string]client.Object{"copy": configMap("a", "12345678"), "secret copy": secret, "token": token, "other cluster": other, "unnamed": unnamed} {
		meta := &metav1.PartialObjectMetadata{ObjectMeta: *obj.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta)}
		meta.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "podbridge-webhook"}}
		meta.Annotations["unrelated"] = strings.Repeat("x", 100)
		out, err := BudgetFields(meta)
		if err != nil {
			t.Fatal(err)
		}
		kept := out.(*metav1.PartialObjectMetadata)
		// What the budget counts: an entry for each listed object
		// copyEntry counts.
		counted := func(m *metav1.PartialObjectMetadata) (entry, bool) {
			if !selector.Matches(labels.Set(m.Labels)) {
				return entry{}, false
			}
			return copyEntry(m)
		}
		wantEntry, wantOK := counted(meta)
		gotEntry, gotOK := counted(kept)
		if gotEntry != wantEntry || gotOK != wantOK {
			t.Errorf("%s: counted %+v %v after the transform, %+v %v before", name, gotEntry, gotOK, wantEntry, wantOK)
		}
		if kept.Name != meta.Name || kept.Namespace != meta.Namespace || kept.ManagedFields != nil || kept.Annotations["unrelated"] != "" {
			t.Errorf("%s: kept %+v", name, kept.ObjectMeta)
		}
	}
	if _, ok := copyEntry(token); ok {
		t.Error("a token Secret counted as a copy")
	}
	if kept, _ := BudgetFields(&metav1.PartialObjectMetadata{ObjectMeta: token.ObjectMeta}); len(kept.(*metav1.PartialObjectMetadata).Labels)+len(kept.(*metav1.PartialObjectMetadata).Annotations) > 0 {
		t.Errorf("a token Secret kept with %+v", kept.(*metav1.PartialObjectMetadata).ObjectMeta)
	}
	if e, ok := copyEntry(secret); !ok || e.bytes != 6 || e.version != "7" {
		t.Errorf("secret copy counted as %+v %v, want 6 bytes of version 7", e, ok)
	}
}

// BenchmarkBudgetFields reports what each cached token Secret costs the
// webhook: the transform allocates only what the cache keeps (B/op).
func BenchmarkBudgetFields(b *testing.B) {
	token := translate.HostTokenSecret("p", "ns", translate.Token{ServiceAccount: "default", ExpirationSeconds: 3600, HostSecret: "tok"}, "secret-token-bytes", cfg)
	meta := &metav1.PartialObjectMetadata{ObjectMeta: token.ObjectMeta}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BudgetFields(meta); err != nil {
			b.Fatal(err)
		}
	}
}
