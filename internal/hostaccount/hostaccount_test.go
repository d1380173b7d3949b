package hostaccount

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
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
