package vcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/translate"
)

// Which host Secrets init takes as the shared PKI: its own marked ones, or
// cert-manager's for the Certificate of the same name; never another
// cluster's, an unmarked one, or podbridge's copy of a tenant's Secret,
// whatever marks and annotations the tenant gave it.
func TestCheckSharedSecret(t *testing.T) {
	tenantCopy := map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "alpha"}
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		certManager bool
		want        string // empty: accepted
	}{
		{"podbridge's own", nil, map[string]string{ownership.Annotation: "alpha"}, false, ""},
		{"unmarked", nil, nil, false, "carries no"},
		{"another cluster's", nil, map[string]string{ownership.Annotation: "beta"}, false, "belongs to"},
		{"a tenant copy marked as the cluster's", tenantCopy, map[string]string{ownership.Annotation: "alpha"}, false, "copy of a tenant's Secret"},
		{"cert-manager's", nil, map[string]string{CertManagerCertificateAnnotation: "alpha-pki-ca"}, true, ""},
		{"cert-manager's for another Certificate", nil, map[string]string{CertManagerCertificateAnnotation: "other"}, true, CertManagerCertificateAnnotation},
		{"podbridge's own in cert-manager mode", nil, map[string]string{ownership.Annotation: "alpha"}, true, CertManagerCertificateAnnotation},
		{"a tenant copy with cert-manager's annotation", tenantCopy, map[string]string{CertManagerCertificateAnnotation: "alpha-pki-ca"}, true, "copy of a tenant's Secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alpha-pki-ca", Namespace: "tenants", Labels: tc.labels, Annotations: tc.annotations}}
			err := checkSharedSecret(s, "alpha", tc.certManager)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestParseECKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"SEC 1":   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"PKCS #8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	} {
		got, err := parseECKey(data)
		if err != nil || !got.Equal(ec) {
			t.Errorf("%s: %v", name, err)
		}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseECKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err == nil || !strings.Contains(err.Error(), "ECDSA") {
		t.Errorf("an RSA key: %v, want a refusal asking for ECDSA", err)
	}
	if _, err := parseECKey([]byte("not pem")); err == nil {
		t.Error("not PEM: accepted")
	}
}
