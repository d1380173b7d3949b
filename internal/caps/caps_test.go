package caps

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
