package vcluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podbridge/podbridge/certs"
)

// podbridge's certificate in the virtual cluster is in no group (not
// system:masters, which no RBAC can narrow), and it is the user the
// grants the bootstrap step applies are bound to.
func TestPodbridgeIdentityIsInNoGroup(t *testing.T) {
	now := time.Now()
	servingCA, err := newCA("serving", now)
	if err != nil {
		t.Fatal(err)
	}
	clientCA, err := newCA("client", now)
	if err != nil {
		t.Fatal(err)
	}
	pki := t.TempDir()
	if err := os.MkdirAll(filepath.Join(pki, PodbridgeDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := issueKubeconfigs(pki, servingCA, clientCA, now); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(filepath.Join(pki, PodbridgeDir, "podbridge.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.AuthInfos) != 1 {
		t.Fatalf("podbridge's kubeconfig has %d users, want 1", len(cfg.AuthInfos))
	}
	for _, user := range cfg.AuthInfos {
		cert := parsePEM(t, user.ClientCertificateData)
		if cert.Subject.CommonName != PodbridgeUser || len(cert.Subject.Organization) != 0 {
			t.Errorf("podbridge's certificate is for %q in groups %v, want %q in none", cert.Subject.CommonName, cert.Subject.Organization, PodbridgeUser)
		}
	}
	// Only podbridge's kubeconfig is in the folder the webhook and the
	// reflector mount.
	entries, err := os.ReadDir(filepath.Join(pki, PodbridgeDir))
	if err != nil || len(entries) != 1 {
		t.Errorf("the folder podbridge mounts holds %v (%v), want its kubeconfig alone", entries, err)
	}

	grants, err := Grants()
	if err != nil {
		t.Fatal(err)
	}
	var bound bool
	for _, g := range grants {
		if g.GetKind() != "ClusterRoleBinding" {
			continue
		}
		var b rbacv1.ClusterRoleBinding
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(g.Object, &b); err != nil {
			t.Fatal(err)
		}
		bound = bound || slices.Contains(b.Subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: PodbridgeUser})
	}
	if !bound {
		t.Errorf("no grant of manifests/virtual/base/rbac.yaml binds the user %q", PodbridgeUser)
	}
}

// The bootstrap step's administrator lives ten minutes, in memory.
func TestBootstrapConfigIsShortLived(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	pki := filepath.Join(dir, pkiDir)
	if _, err := BootstrapConfig(dir, LocalAPIServer, now); err == nil || !strings.Contains(err.Error(), "client-ca") {
		t.Errorf("without a client CA: %v, want an error naming it", err)
	}
	if err := os.MkdirAll(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca", "client-ca"} {
		if _, err := loadOrMakeCA(pki, name, name, now); err != nil {
			t.Fatal(err)
		}
	}
	before, err := os.ReadDir(pki)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := BootstrapConfig(dir, LocalAPIServer, now)
	if err != nil {
		t.Fatal(err)
	}
	cert := parsePEM(t, cfg.CertData)
	if cert.Subject.CommonName != BootstrapUser || !slices.Equal(cert.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("the bootstrap certificate is for %q in %v", cert.Subject.CommonName, cert.Subject.Organization)
	}
	if life := cert.NotAfter.Sub(now); life > BootstrapValidity {
		t.Errorf("the bootstrap certificate is valid for %s after issue, want at most %s", life, BootstrapValidity)
	}
	after, err := os.ReadDir(pki)
	if err != nil || len(after) != len(before) {
		t.Errorf("BootstrapConfig wrote to the claim: %v before, %v after (%v)", before, after, err)
	}
}

// The apiserver's copies: the client certificate and key in one file it
// loads as a pair; nothing rewritten when nothing changed; a rotated
// kubelet CA beside the previous one; a key that does not match refused.
func TestWriteCopies(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	client, err := certs.NewClient("podbridge-virtual-apiserver.a.ns", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kubelet, err := certs.NewSelfSigned([]string{"127.0.0.1"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := writeCopies(dir, client, kubelet, now); err != nil || !changed {
		t.Fatalf("first write: changed %t, %v", changed, err)
	}
	pair := filepath.Join(dir, WebhookClientFile)
	loaded, err := tls.LoadX509KeyPair(pair, pair)
	if err != nil {
		t.Fatalf("the apiserver's way of loading %s: %v", pair, err)
	}
	if got := parseDER(t, loaded.Certificate[0]); !got.Equal(parsePEM(t, client.Cert)) {
		t.Error("the copy holds another certificate than the Secret's")
	}
	if info, err := os.Stat(pair); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", pair, info, err)
	}
	if changed, err := writeCopies(dir, client, kubelet, now); err != nil || changed {
		t.Errorf("second write of the same: changed %t, %v", changed, err)
	}
	rotated, err := certs.NewSelfSigned([]string{"127.0.0.1"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := writeCopies(dir, client, rotated, now); err != nil || !changed {
		t.Fatalf("rotated kubelet CA: changed %t, %v", changed, err)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, KubeletCAFile))
	if err != nil {
		t.Fatal(err)
	}
	if !certs.BundleWithin(bundle, append(slices.Clone(rotated.CA), kubelet.CA...), nil) {
		t.Errorf("the kubelet CA bundle after a rotation is not the new CA and the previous one:\n%s", bundle)
	}
	other, err := certs.NewClient("podbridge-virtual-apiserver.a.ns", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := &certs.Bundle{CA: client.CA, Cert: client.Cert, Key: other.Key}
	if _, err := writeCopies(dir, mismatched, kubelet, now); err == nil {
		t.Error("a client certificate with another key was written")
	}
	if current, err := tls.LoadX509KeyPair(pair, pair); err != nil || !parseDER(t, current.Certificate[0]).Equal(parsePEM(t, client.Cert)) {
		t.Errorf("the refused pair replaced the copy: %v", err)
	}
}

func parsePEM(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("not PEM")
	}
	return parseDER(t, block.Bytes)
}

func parseDER(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
