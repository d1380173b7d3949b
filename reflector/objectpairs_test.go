package reflector

import (
	"cmp"
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// TestObjectPairsGather: the host object of a key is the one of the name
// the webhook gives it, or of the key's own name when the key has no
// namespace, and never another virtual cluster's.
func TestObjectPairsGather(t *testing.T) {
	cfg := translate.Config{HostNamespace: "host", VCluster: "vc1"}
	hostName := translate.HostServiceName("web", "shop", cfg.VCluster)
	hostSvc := func(name, vcluster string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: cfg.HostNamespace, Name: name, Labels: map[string]string{translate.LabelVCluster: vcluster}}}
	}
	tests := []struct {
		name        string
		key         types.NamespacedName
		virtual     []client.Object
		host        []client.Object
		wantVirtual bool
		wantHost    string
	}{
		{name: "both", key: types.NamespacedName{Namespace: "shop", Name: "web"},
			virtual: []client.Object{&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}},
			host:    []client.Object{hostSvc(hostName, "vc1")}, wantVirtual: true, wantHost: hostName},
		{name: "host only", key: types.NamespacedName{Namespace: "shop", Name: "web"},
			host: []client.Object{hostSvc(hostName, "vc1")}, wantHost: hostName},
		{name: "another virtual cluster's host object", key: types.NamespacedName{Namespace: "shop", Name: "web"},
			host: []client.Object{hostSvc(hostName, "vc2")}},
		{name: "key of a host object naming no virtual one", key: types.NamespacedName{Name: "stray"},
			host: []client.Object{hostSvc("stray", "vc1")}, wantHost: "stray"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newServiceReconciler(pairDeps{
				Host:    fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(tt.host...).Build(),
				Virtual: fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(tt.virtual...).Build(),
				Config:  cfg,
			})
			virtual, host, err := r.gather(context.Background(), tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if (virtual != nil) != tt.wantVirtual {
				t.Errorf("virtual = %v, want one: %v", virtual, tt.wantVirtual)
			}
			switch {
			case tt.wantHost == "" && host != nil:
				t.Errorf("host = %s, want none", host.Name)
			case tt.wantHost != "" && (host == nil || host.Name != tt.wantHost):
				t.Errorf("host = %v, want %s", host, tt.wantHost)
			}
		})
	}
}

// TestObjectPairsKeys: the full pass lists the key every host object in
// the host namespace names and every virtual object's own.
func TestObjectPairsKeys(t *testing.T) {
	cfg := translate.Config{HostNamespace: "host", VCluster: "vc1"}
	r := newClaimReconciler(pairDeps{
		Host: fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "host", Name: "h1",
				Annotations: map[string]string{translate.AnnotationNamespace: "app", translate.AnnotationName: "data"}}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "host", Name: "stray"}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "other"}},
		).Build(),
		Virtual: fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "logs"}},
		).Build(),
		Config: cfg,
	})
	keys, err := r.pairKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.Request{
		{NamespacedName: types.NamespacedName{Namespace: "app", Name: "data"}},
		{NamespacedName: types.NamespacedName{Name: "stray"}},
		{NamespacedName: types.NamespacedName{Namespace: "app", Name: "logs"}},
	}
	byKey := func(a, b reconcile.Request) int { return cmp.Compare(a.String(), b.String()) }
	slices.SortFunc(keys, byKey)
	slices.SortFunc(want, byKey)
	if !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
}
