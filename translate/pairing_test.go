package translate

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOrphanGracePeriodOutlivesEveryCreate(t *testing.T) {
	for _, tc := range []struct {
		requestTimeout, want time.Duration
	}{
		{0, time.Minute + 10*time.Second},
		{time.Minute, time.Minute + 10*time.Second},
		{15 * time.Second, 25 * time.Second},
		{-time.Second, time.Minute + 10*time.Second},
	} {
		if got := OrphanGracePeriod(tc.requestTimeout); got != tc.want {
			t.Errorf("OrphanGracePeriod(%s) = %s, want %s", tc.requestTimeout, got, tc.want)
		}
	}
}

// The host Service, NetworkPolicy and claim of a tenant's object carry the
// same metadata (pairedHostMeta): in the host namespace under their host
// name, the tenant's labels under tenant keys with podbridge's, and the
// annotations pairing them; a Service and a NetworkPolicy also name the
// selector scheme.
func TestPairedHostMeta(t *testing.T) {
	cfg := Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "sa"}
	meta := metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "db"}, Annotations: map[string]string{"note": "mine"}}
	want := func(name string, selectorScheme bool) metav1.ObjectMeta {
		m := metav1.ObjectMeta{
			Name: name, Namespace: "host",
			Labels: map[string]string{TenantKey("app"): "db", LabelManagedBy: ManagedByValue, LabelVCluster: "vc", LabelNamespace: "shop"},
			Annotations: map[string]string{
				AnnotationSyncID: "id", AnnotationName: "web", AnnotationNamespace: "shop", AnnotationVCluster: "vc",
			},
		}
		if selectorScheme {
			m.Annotations[AnnotationSelectorScheme] = SelectorScheme
		}
		return m
	}
	svc, errs := HostService(&corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, cfg, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	np, errs := HostNetworkPolicy(&networkingv1.NetworkPolicy{ObjectMeta: meta}, cfg, "id", nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	claim, errs := HostClaim(&corev1.PersistentVolumeClaim{ObjectMeta: meta}, cfg, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, tt := range []struct {
		kind      string
		got, want metav1.ObjectMeta
	}{
		{"Service", svc.ObjectMeta, want(HostServiceName("web", "shop", "vc"), true)},
		{"NetworkPolicy", np.ObjectMeta, want(HostNetworkPolicyName("web", "shop", "vc"), true)},
		{"PersistentVolumeClaim", claim.ObjectMeta, want(HostClaimName("web", "shop", "vc"), false)},
	} {
		if !apiequality.Semantic.DeepEqual(tt.got, tt.want) {
			t.Errorf("host %s metadata %+v, want %+v", tt.kind, tt.got, tt.want)
		}
	}
}
