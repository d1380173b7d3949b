package hostaccount

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/ownership"
)

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		sa   corev1.ServiceAccount
		want []string // substrings of the errors; none: fit
	}{
		{"no pull secrets, no token", corev1.ServiceAccount{AutomountServiceAccountToken: ptr.To(false)}, nil},
		{"pull secrets", corev1.ServiceAccount{AutomountServiceAccountToken: ptr.To(false), ImagePullSecrets: []corev1.LocalObjectReference{{Name: "platform-registry"}}},
			[]string{"imagePullSecrets", "private images"}},
		{"token mounted by default (a namespace's default account)", corev1.ServiceAccount{}, []string{"automountServiceAccountToken", "must be false"}},
		{"token mounted", corev1.ServiceAccount{AutomountServiceAccountToken: ptr.To(true)}, []string{"automountServiceAccountToken"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := Errors(&tt.sa)
			if len(tt.want) == 0 {
				if len(errs) > 0 {
					t.Fatalf("refused: %v", errs.ToAggregate())
				}
				return
			}
			if len(errs) == 0 {
				t.Fatal("accepted")
			}
			msg := errs.ToAggregate().Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors do not name %q: %s", w, msg)
				}
			}
		})
	}
}

// Check refuses an unfit account, and one not marked as the
// virtual cluster's, naming every reason at once.
func TestCheck(t *testing.T) {
	fit := func(annotations map[string]string) *corev1.ServiceAccount {
		return &corev1.ServiceAccount{
			ObjectMeta:                   metav1.ObjectMeta{Namespace: "ns", Name: "sa", Annotations: annotations},
			AutomountServiceAccountToken: ptr.To(false),
		}
	}
	unfitOwned := fit(map[string]string{ownership.Annotation: "vc"})
	unfitOwned.AutomountServiceAccountToken = nil
	tests := []struct {
		name string
		sa   *corev1.ServiceAccount // nil: none
		want []string               // substrings of the error; none: accepted
	}{
		{"fit and this virtual cluster's", fit(map[string]string{ownership.Annotation: "vc"}), nil},
		{"fit, another virtual cluster's", fit(map[string]string{ownership.Annotation: "other"}), []string{"--host-service-account", "ServiceAccount ns/sa", `belongs to virtual cluster "other"`}},
		{"fit, nobody's", fit(nil), []string{"ServiceAccount ns/sa", "carries no podbridge.io/owner", "kubectl annotate -n ns serviceaccount/sa podbridge.io/owner=vc"}},
		{"unfit, this virtual cluster's", unfitOwned, []string{"unfit for tenant pods", "automountServiceAccountToken"}},
		{"unfit and nobody's: both said", func() *corev1.ServiceAccount { sa := unfitOwned.DeepCopy(); sa.Annotations = nil; return sa }(), []string{"automountServiceAccountToken", "carries no podbridge.io/owner"}},
		{"missing", nil, []string{"reading host service account ns/sa", "not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(kube.Scheme)
			if tt.sa != nil {
				b = b.WithObjects(tt.sa)
			}
			err := Check(context.Background(), b.Build(), "ns", "sa", "vc")
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
		})
	}
}

func TestDefaultNamesDiffer(t *testing.T) {
	if a, b := DefaultName("one"), DefaultName("two"); a == b || a != "podbridge-workloads-one" {
		t.Errorf("default accounts %q and %q", a, b)
	}
}
