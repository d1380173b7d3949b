package reflector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podbridge/podbridge/translate"
)

func TestDecideTokens(t *testing.T) {
	cfg := translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"}
	withToken := func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "tok", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}}
	}
	withTwoMoreTokens := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "added", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "a", Audience: "one"}},
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "b", Audience: "two"}},
			}}}})
	}
	tokenSecret := translate.TokenSecretName(testKey.Name, testKey.Namespace, "vc", "tok", "")
	secret := func(name string, boundUID string, age time.Duration, refreshIn time.Duration) metav1.PartialObjectMetadata {
		s := metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(testNow.Add(-age)), Annotations: map[string]string{}}}
		if boundUID != "" {
			s.Annotations[translate.AnnotationTokenBoundUID] = boundUID
			s.Annotations[translate.AnnotationTokenRefreshAt] = testNow.Add(refreshIn).Format(time.RFC3339)
		}
		return s
	}
	tests := []struct {
		name    string
		virtual *corev1.Pod
		secrets []metav1.PartialObjectMetadata
		gone    types.UID
		limit   int // 0: the cap of 2
		want    string
	}{
		{name: "new pod: its token is requested and the Secret created",
			virtual: virtualPod("a", withToken), want: "write(new)"},
		{name: "Secret without a binding (a restore, an operator's copy): written over",
			virtual: virtualPod("a", withToken), secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "", time.Second, 0)}, want: "write(" + tokenSecret + ")"},
		{name: "bound and fresh: nothing until its refresh",
			virtual: virtualPod("a", withToken), secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "virtual-uid", time.Minute, 10*time.Minute)}, want: "requeue=10m0s"},
		{name: "bound and due for refresh: refreshed",
			virtual: virtualPod("a", withToken), secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "virtual-uid", time.Hour, -time.Second)}, want: "write(" + tokenSecret + ")"},
		{name: "bound to an earlier pod of the same name: bound anew",
			virtual: virtualPod("a", withToken), secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "old-uid", time.Hour, time.Hour)}, want: "write(" + tokenSecret + ")"},
		{name: "pod gone, Secret young: wait for the grace period",
			secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "virtual-uid", 5*time.Second, time.Hour)}, want: "requeue=26s"},
		{name: "pod gone, Secret past the grace period: deleted once a live read agrees",
			secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "virtual-uid", time.Minute, time.Hour)}, want: "delete(" + tokenSecret + ")[confirm]"},
		{name: "pod seen deleted: its Secret goes at once",
			secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "virtual-uid", time.Second, time.Hour)}, gone: "virtual-uid", want: "delete(" + tokenSecret + ")"},
		{name: "pod being deleted: its Secrets are unwanted",
			virtual: virtualPod("a", withToken, deleting(0, 30)), secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "virtual-uid", time.Minute, time.Hour)},
			want: "delete(" + tokenSecret + ")[confirm]"},
		{name: "Secret of a volume the pod no longer has goes; the wanted one is written",
			virtual: virtualPod("a", withToken), secrets: []metav1.PartialObjectMetadata{secret("podbridge-token-other", "virtual-uid", time.Minute, time.Hour)},
			want: "delete(podbridge-token-other)[confirm] write(new)"},
		{name: "tokens up to the cap: all requested",
			virtual: virtualPod("a", withToken, withTwoMoreTokens), limit: 3, want: "write(new) write(new) write(new)"},
		{name: "tokens over the cap (a tenant webhook added some after admission): none requested, those written go",
			virtual: virtualPod("a", withToken, withTwoMoreTokens), secrets: []metav1.PartialObjectMetadata{secret(tokenSecret, "virtual-uid", time.Minute, time.Hour)},
			want: "delete(" + tokenSecret + ")[confirm]"},
		{name: "no cap",
			virtual: virtualPod("a", withToken, withTwoMoreTokens), limit: -1, want: "write(new) write(new) write(new)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxPerPod := tt.limit
			if maxPerPod == 0 {
				maxPerPod = 2
			}
			steps, after := decideTokens(tt.virtual, tt.secrets, cfg, maxPerPod, testNow, testGrace, func(uid types.UID) bool { return uid != "" && uid == tt.gone })
			var parts []string
			for _, s := range steps {
				name := "new"
				if s.secret != nil {
					name = s.secret.Name
				}
				switch {
				case s.delete && s.confirm:
					parts = append(parts, "delete("+name+")[confirm]")
				case s.delete:
					parts = append(parts, "delete("+name+")")
				default:
					parts = append(parts, "write("+name+")")
					if s.token.HostSecret != tokenSecret && tt.limit == 0 {
						t.Errorf("token written into %s, want %s", s.token.HostSecret, tokenSecret)
					}
				}
			}
			if after > 0 {
				parts = append(parts, fmt.Sprintf("requeue=%s", after))
			}
			if got := strings.Join(parts, " "); got != tt.want {
				t.Errorf("decision: %s\nwant:     %s", got, tt.want)
			}
		})
	}
}

// Tokens are refreshed at 80% of their lifetime, or sooner when the option
// says so; the option never delays a refresh past 80%.
func TestRefreshDelay(t *testing.T) {
	for _, tc := range []struct {
		lifetime, after, want time.Duration
	}{
		{lifetime: time.Hour, want: 48 * time.Minute},
		{lifetime: 10 * time.Minute, after: 15 * time.Second, want: 15 * time.Second},
		{lifetime: 10 * time.Minute, after: time.Hour, want: 8 * time.Minute},
		{lifetime: 10 * time.Minute, after: 8 * time.Minute, want: 8 * time.Minute},
	} {
		if got := refreshDelay(tc.lifetime, tc.after); got != tc.want {
			t.Errorf("refreshDelay(%s, %s) = %s, want %s", tc.lifetime, tc.after, got, tc.want)
		}
	}
}

// The refresh option is 0 or at least a second: anything shorter would
// request tokens in a loop.
func TestOptionsValidateTokenRefreshAfter(t *testing.T) {
	base := Options{Translate: translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"}, OrphanGracePeriod: time.Minute}
	for after, valid := range map[time.Duration]bool{0: true, time.Second: true, 15 * time.Second: true, time.Millisecond: false, -time.Second: false} {
		o := base
		o.TokenRefreshAfter = after
		err := o.Validate()
		if valid != (err == nil) || (err != nil && !strings.Contains(err.Error(), "tokenRefreshAfter")) {
			t.Errorf("TokenRefreshAfter %s: error %v, want valid %v", after, err, valid)
		}
	}
}
