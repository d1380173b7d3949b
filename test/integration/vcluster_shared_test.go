package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/vcluster"
)

// podbridge create in a namespace others use takes over none of their
// objects: a ConfigMap, a claim or a Secret of a name the virtual cluster
// would own (another cluster's Secret marked as its own among them) is
// refused before anything is written, and stays as it was.
func TestCreateTakesOverNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns, name = "vc-shared-takeover", "tk"
	if err := hostClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	foreign := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name + "-config", Namespace: ns}, Data: map[string]string{"owner": "someone else"}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-" + name + "-control-plane-0", Namespace: ns}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}},
		// Labelled like tk's, but marked as another cluster's.
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-webhook-client-tls", Namespace: ns,
			Labels:      map[string]string{vcluster.LabelInstance: name, vcluster.LabelPartOf: vcluster.PartOfValue},
			Annotations: map[string]string{ownership.Annotation: "other"}}},
	}
	for _, obj := range foreign {
		if err := hostClient.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	_, err := vcluster.Create(ctx, env.Host.Config, vcluster.CreateOptions{Options: vcluster.Options{Name: name, Namespace: ns}, Timeout: 10 * time.Second, SkipDNS: true}, testLog{t})
	for _, want := range []string{"ConfigMap " + ns + "/tk-config", "PersistentVolumeClaim " + ns + "/data-tk-control-plane-0", "Secret " + ns + "/tk-webhook-client-tls", `marked podbridge.io/owner="other"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("create over others' objects: %v, want a refusal naming %s", err, want)
		}
	}
	var cm corev1.ConfigMap
	if err := hostClient.Get(ctx, client.ObjectKeyFromObject(foreign[0]), &cm); err != nil || cm.Data["owner"] != "someone else" || cm.Labels[vcluster.LabelInstance] != "" {
		t.Errorf("the foreign ConfigMap after the refused create: %+v (%v)", cm.ObjectMeta, err)
	}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: vcluster.APIServerService(name)}, &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused create wrote its Service: %v", err)
	}
}

// podbridge delete removes the host namespace only when podbridge create
// made it and nothing else is in it: a namespace podbridge did not make
// stays though empty, and one that holds anything else (a ConfigMap, an
// EndpointSlice someone wrote) stays though podbridge made it; what every
// namespace holds and the slices of a Service that is gone do not count.
func TestReleaseNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	made := map[string]string{vcluster.AnnotationCreatedFor: "rel"}
	slice := func(name, service, manager string) client.Object {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: manager}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.2.3"}}},
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](443)}},
		}
	}
	for _, tc := range []struct {
		name, ns    string
		annotations map[string]string
		holds       []client.Object
		deleted     bool
		says        string
	}{
		{"made by podbridge, empty", "vc-rel-empty", made, nil, true, "deleted host namespace vc-rel-empty: podbridge create made it (for rel)"},
		{"not made by podbridge, empty", "vc-rel-unmade", nil, nil, false, "kept host namespace vc-rel-unmade: podbridge create did not make it"},
		{"made by podbridge, holding a ConfigMap", "vc-rel-cm", made, []client.Object{&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep-me"}}}, false, "it holds ConfigMap keep-me"},
		{"made by podbridge, holding what every namespace holds", "vc-rel-defaults", made, []client.Object{
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
			slice("rel-apiserver-abcde", "rel-apiserver", "endpointslice-controller.k8s.io"),
		}, true, "deleted host namespace vc-rel-defaults"},
		{"made by podbridge, holding a slice someone wrote", "vc-rel-slice", made, []client.Object{slice("by-hand", "gone", "someone")}, false, "it holds EndpointSlice by-hand"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := tc.ns
			if err := hostClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Annotations: tc.annotations}}); err != nil {
				t.Fatal(err)
			}
			for _, obj := range tc.holds {
				obj.SetNamespace(ns)
				if err := hostClient.Create(ctx, obj); err != nil {
					t.Fatal(err)
				}
			}
			var log strings.Builder
			deleted, err := vcluster.ReleaseNamespace(ctx, env.Host.Config, ns, &log)
			if err != nil {
				t.Fatal(err)
			}
			if deleted != tc.deleted || !strings.Contains(log.String(), tc.says) {
				t.Errorf("deleted %t, said %q; want %t and %q", deleted, log.String(), tc.deleted, tc.says)
			}
			// The host of these tests runs no namespace controller: a
			// deleted namespace stays Terminating.
			var got corev1.Namespace
			err = hostClient.Get(ctx, client.ObjectKey{Name: ns}, &got)
			if gone := apierrors.IsNotFound(err) || (err == nil && got.DeletionTimestamp != nil); gone != tc.deleted {
				t.Errorf("namespace %s going: %t (%v), want %t", ns, gone, err, tc.deleted)
			}
		})
	}
}
