package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podbridge/podbridge/internal/kube"
)

// testCommonName is what a podbridge of virtual cluster vc in host
// namespace ns accepts by default.
var testCommonName = ClientCommonNameFor("ns", "vc")

func TestNewClientIsForClientAuthOnly(t *testing.T) {
	now := time.Now()
	b, err := NewClient(testCommonName, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(b.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != testCommonName || !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("client certificate for %q with usages %v", cert.Subject.CommonName, cert.ExtKeyUsage)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CA)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Errorf("does not verify for client auth: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CurrentTime: now}); err == nil {
		t.Error("verifies as a serving certificate: its holder could pose as a webhook")
	}
	serving, err := NewSelfSigned([]string{"127.0.0.1"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(serving.CA, b.CA) {
		t.Error("the client CA is the serving CA")
	}
	renewed, err := b.RenewClient(testCommonName, now.Add(50*time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(renewed.CA, b.CA) || bytes.Equal(renewed.Cert, b.Cert) {
		t.Error("renewal should issue a new client certificate under the same CA")
	}
}

// The handshake refuses every caller but one with a client-auth
// certificate for the expected name from a trusted CA.
func TestClientVerifierHandshakes(t *testing.T) {
	now := time.Now()
	good, err := NewClient(testCommonName, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	attacker, err := NewClient(testCommonName, now, time.Hour) // same name, its own CA
	if err != nil {
		t.Fatal(err)
	}
	otherName, err := good.RenewClient("someone-else", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	servingUsage := signUnder(t, good, &x509.Certificate{Subject: pkix.Name{CommonName: testCommonName}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	noUsage := signUnder(t, good, &x509.Certificate{Subject: pkix.Name{CommonName: testCommonName}})

	v, err := newClientVerifier(testCommonName)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, v)
	if err := call(addr, good); err == nil {
		t.Fatal("a handshake passed before any client CA was loaded")
	}
	if _, err := v.SetCAs(good.CA, now); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client *Bundle
		ok     bool
	}{
		{"no client certificate", nil, false},
		{"certificate of another CA", attacker, false},
		{"right CA, server-auth usage", servingUsage, false},
		{"right CA, no extended key usage", noUsage, false},
		{"right CA, another common name", otherName, false},
		{"the virtual apiserver's certificate", good, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := call(addr, tt.client)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}

	// Reload: a new CA is trusted at once, the previous one too while a
	// client may still hold its certificates; the one before is dropped.
	second, err := NewClient(testCommonName, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := v.SetCAs(second.CA, now); err != nil || !changed {
		t.Fatalf("SetCAs: changed %v, %v", changed, err)
	}
	for _, b := range []*Bundle{second, good} {
		if err := call(addr, b); err != nil {
			t.Errorf("refused after the rotation: %v", err)
		}
	}
	third, err := NewClient(testCommonName, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.SetCAs(third.CA, now); err != nil {
		t.Fatal(err)
	}
	if err := call(addr, good); err == nil {
		t.Error("a certificate of a CA two rotations old is still accepted")
	}
	if changed, _ := v.SetCAs(third.CA, now); changed {
		t.Error("setting the same CA reported a change")
	}
}

// Self-managed mode issues the client certificate into its Secret, trusts
// its CA, and renews it when a third of its validity is left.
func TestKeeperIssuesAndRenewsClientCertificate(t *testing.T) {
	ctx := context.Background()
	clock := clocktesting.NewFakePassiveClock(time.Now())
	host := fake.NewClientBuilder().WithScheme(kube.Scheme).Build()
	k, err := NewKeeper(Options{
		Mode: ModeSelfManaged, Host: host, Namespace: "ns", VCluster: "vc", SecretName: "serving", CertDir: t.TempDir(),
		Hosts: []string{"127.0.0.1"}, Validity: time.Hour, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: "ns", Name: DefaultClientSecretName}
	if err := host.Get(ctx, key, secret); err != nil {
		t.Fatalf("client Secret: %v", err)
	}
	first := bundleFrom(secret.Data)
	cert, err := parseCert(first.Cert)
	if err != nil || cert.Subject.CommonName != testCommonName {
		t.Fatalf("client certificate %v: %v", cert, err)
	}
	if !bytes.Equal(k.ClientVerifier().CAs(), first.CA) {
		t.Fatal("the keeper does not trust the client CA it issued")
	}
	serving := &corev1.Secret{}
	if err := host.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "serving"}, serving); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(serving.Data[CAFile], first.CA) {
		t.Fatal("client and serving certificates share a CA")
	}

	clock.SetTime(clock.Now().Add(30 * time.Minute)) // more than a third left
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := host.Get(ctx, key, secret); err != nil || !bytes.Equal(secret.Data[CertFile], first.Cert) {
		t.Fatalf("renewed too early (%v)", err)
	}
	clock.SetTime(clock.Now().Add(15 * time.Minute)) // a quarter left
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := host.Get(ctx, key, secret); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(secret.Data[CertFile], first.Cert) || !bytes.Equal(secret.Data[CAFile], first.CA) {
		t.Fatal("the client certificate was not renewed under the same CA")
	}
}

// Files mode re-reads the client CA file, so a replaced CA is trusted
// without a restart.
func TestKeeperReloadsClientCAFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	serving, err := NewSelfSigned([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := serving.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "client-ca.crt")
	first, _ := NewClient(testCommonName, time.Now(), time.Hour)
	if err := os.WriteFile(caFile, first.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := NewKeeper(Options{Mode: ModeFiles, Namespace: "ns", VCluster: "vc", CertDir: dir, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(k.ClientVerifier().CAs(), first.CA) {
		t.Fatal("the client CA file was not loaded")
	}
	second, _ := NewClient(testCommonName, time.Now(), time.Hour)
	if err := os.WriteFile(caFile, second.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(k.ClientVerifier().CAs(), second.CA) {
		t.Fatal("the replaced client CA file was not reloaded")
	}
}

func TestNewKeeperClientOptions(t *testing.T) {
	if _, err := NewKeeper(Options{Mode: ModeFiles}); err == nil {
		t.Error("files mode without a client CA file was accepted")
	}
	if _, err := NewKeeper(Options{Mode: ModeCertManager, SecretName: "s", ClientCAFile: "ca.crt"}); err == nil {
		t.Error("a client CA file outside files mode was accepted")
	}
}

// signUnder issues template under b's CA, for certificates podbridge
// would never issue.
func signUnder(t *testing.T, b *Bundle, template *x509.Certificate) *Bundle {
	t.Helper()
	ca, caKey, err := b.parseCA()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = serial()
	template.NotBefore, template.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	template.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Bundle{CA: b.CA, Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}
}

// serveTLS serves HTTPS on loopback with v checking clients.
func serveTLS(t *testing.T, v *ClientVerifier) string {
	t.Helper()
	serving, err := NewSelfSigned([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(serving.Cert, serving.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	v.ConfigureServer(cfg)
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ErrorLog:    nil,
		ReadTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// call sends one request, presenting client's certificate if not nil.
func call(addr string, client *Bundle) error {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // the test is about the server checking the client
	if client != nil {
		cert, err := tls.X509KeyPair(client.Cert, client.Key)
		if err != nil {
			return err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DialContext: (&net.Dialer{}).DialContext}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}
