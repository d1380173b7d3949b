package certs

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/ownership"
)

// A self-managed keeper uses, and renews, only a Secret marked as its own
// virtual cluster's; any other Secret of the expected name is refused with
// its name and the reason, and left exactly as it was, even when its
// certificate is due for renewal.
func TestSelfManagedAdoptsOnlyItsOwnSecrets(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	// Issued an hour ago for an hour: due for renewal now.
	due, err := NewClient(ClientCommonNameFor("ns", "other"), now.Add(-time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        string // substring of the refusal; empty: adopted
	}{
		{"marked as this virtual cluster's", map[string]string{ownership.Annotation: "vc"}, ""},
		{"managed-by label alone (made by an earlier podbridge, or another's)", nil, "carries no podbridge.io/owner annotation"},
		{"marked as another virtual cluster's", map[string]string{ownership.Annotation: "other"}, `belongs to virtual cluster "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			existing := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: "ns", Name: DefaultClientSecretName, Annotations: tc.annotations,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "podbridge"},
				},
				Type: corev1.SecretTypeTLS,
				Data: due.secretData(),
			}
			host := fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(existing.DeepCopy()).Build()
			k, err := NewKeeper(Options{
				Mode: ModeSelfManaged, Host: host, Namespace: "ns", VCluster: "vc", SecretName: "serving",
				CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"}, Validity: time.Hour,
			})
			if err != nil {
				t.Fatal(err)
			}
			prepareCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err = k.Prepare(prepareCtx)
			after := &corev1.Secret{}
			if getErr := host.Get(ctx, types.NamespacedName{Namespace: "ns", Name: DefaultClientSecretName}, after); getErr != nil {
				t.Fatal(getErr)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused its own Secret: %v", err)
				}
				if !bytes.Equal(k.ClientVerifier().CAs(), due.CA) {
					t.Error("its own client CA is not trusted")
				}
				if bytes.Equal(after.Data[CertFile], due.Cert) {
					t.Error("its own Secret's certificate, due, was not renewed")
				}
				return
			}
			var notOwned *NotOwnedError
			if !errors.As(err, &notOwned) {
				t.Fatalf("Prepare returned %v, want a refusal of the Secret", err)
			}
			for _, want := range []string{"Secret ns/" + DefaultClientSecretName, tc.want, "virtual apiserver client certificate"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not say %q", err, want)
				}
			}
			if len(k.ClientVerifier().CAs()) != 0 {
				t.Error("the refused Secret's CA is trusted")
			}
			if !bytes.Equal(after.Data[CertFile], due.Cert) || !bytes.Equal(after.Data[CAKeyFile], due.CAKey) || after.Annotations[ownership.Annotation] != tc.annotations[ownership.Annotation] {
				t.Error("the refused Secret was changed")
			}
		})
	}
}

// A Secret the keeper creates carries its virtual cluster's mark, so the
// next pass (and every replica) adopts it.
func TestSelfManagedMarksWhatItCreates(t *testing.T) {
	ctx := context.Background()
	host := fake.NewClientBuilder().WithScheme(kube.Scheme).Build()
	k, err := NewKeeper(Options{
		Mode: ModeSelfManaged, Host: host, Namespace: "ns", VCluster: "vc", SecretName: "serving",
		CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"}, Validity: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := k.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"serving", DefaultClientSecretName} {
		s := &corev1.Secret{}
		if err := host.Get(ctx, types.NamespacedName{Namespace: "ns", Name: name}, s); err != nil {
			t.Fatal(err)
		}
		if s.Annotations[ownership.Annotation] != "vc" {
			t.Errorf("Secret %s: annotations %v", name, s.Annotations)
		}
	}
}

func TestDefaultClientCommonName(t *testing.T) {
	long := strings.Repeat("n", 40)
	for _, tc := range []struct {
		namespace, vcluster string
		want                string // the name, or a substring of the refusal
		ok                  bool
	}{
		{"tenant-a", "tenant-a", "podbridge-virtual-apiserver.tenant-a.tenant-a", true},
		{"shared", "one", "podbridge-virtual-apiserver.one.shared", true},
		{"shared", "two", "podbridge-virtual-apiserver.two.shared", true},
		{"", "vc", "both are needed", false},
		{"ns", "", "both are needed", false},
		{long, "vc", "over the 64", false},
	} {
		got, err := defaultClientCommonName(tc.namespace, tc.vcluster)
		switch {
		case tc.ok && (err != nil || got != tc.want):
			t.Errorf("%q/%q: %q, %v; want %q", tc.namespace, tc.vcluster, got, err, tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q/%q: %q, %v; want an error saying %q", tc.namespace, tc.vcluster, got, err, tc.want)
		}
	}
}

// Two virtual clusters in one namespace, or one of each name in two
// namespaces, expect different callers by default.
func TestKeepersOfTwoVirtualClustersExpectDifferentClients(t *testing.T) {
	names := map[string]bool{}
	for _, o := range []Options{
		{Namespace: "shared", VCluster: "one"}, {Namespace: "shared", VCluster: "two"}, {Namespace: "other", VCluster: "one"},
	} {
		o.Mode, o.ClientCAFile = ModeFiles, "ca.crt"
		k, err := NewKeeper(o)
		if err != nil {
			t.Fatal(err)
		}
		if names[k.o.ClientCommonName] {
			t.Errorf("%s/%s expects %q, as another does", o.Namespace, o.VCluster, k.o.ClientCommonName)
		}
		names[k.o.ClientCommonName] = true
	}
	if _, err := NewKeeper(Options{Mode: ModeSelfManaged, SecretName: "s", Hosts: []string{"h"}, Namespace: "ns"}); err == nil {
		t.Error("a self-managed keeper without its virtual cluster's name was made")
	}
}
