package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names in a certificate directory and keys of a certificate Secret,
// as controller-runtime's webhook server and cert-manager use them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
	// CAKeyFile is kept only in self-managed Secrets, so any replica can
	// renew the serving certificate under the same CA.
	CAKeyFile = "ca.key"
)

// Bundle is a CA and a certificate it signed (serving or client),
// PEM-encoded.
type Bundle struct {
	CA, CAKey, Cert, Key []byte
}

// caLifetimes is how many serving-certificate lifetimes a CA lives, so that
// renewing the serving certificate rarely changes what clients trust.
const caLifetimes = 10

// NewSelfSigned creates a fresh CA and a serving certificate for hosts (DNS
// names or IP addresses) valid for validity from now.
func NewSelfSigned(hosts []string, now time.Time, validity time.Duration) (*Bundle, error) {
	ca, caKey, err := newCA("podbridge-webhook-ca", now, caLifetimes*validity)
	if err != nil {
		return nil, err
	}
	return issue(ca, caKey, servingTemplate(hosts), now, validity)
}

// Renew issues a new serving certificate for hosts under b's CA.
func (b *Bundle) Renew(hosts []string, now time.Time, validity time.Duration) (*Bundle, error) {
	ca, caKey, err := b.parseCA()
	if err != nil {
		return nil, err
	}
	return issue(ca, caKey, servingTemplate(hosts), now, validity)
}

// NewClient creates a fresh client CA, of its own so that nothing but the
// virtual apiserver's certificate chains to it, and a client certificate
// for commonName valid for validity from now.
func NewClient(commonName string, now time.Time, validity time.Duration) (*Bundle, error) {
	ca, caKey, err := newCA("podbridge-webhook-client-ca", now, caLifetimes*validity)
	if err != nil {
		return nil, err
	}
	return issue(ca, caKey, clientTemplate(commonName), now, validity)
}

// RenewClient issues a new client certificate for commonName under b's CA.
func (b *Bundle) RenewClient(commonName string, now time.Time, validity time.Duration) (*Bundle, error) {
	ca, caKey, err := b.parseCA()
	if err != nil {
		return nil, err
	}
	return issue(ca, caKey, clientTemplate(commonName), now, validity)
}

func (b *Bundle) parseCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	ca, err := parseCert(b.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	block, _ := pem.Decode(b.CAKey)
	if block == nil {
		return nil, nil, errors.New("CA key: no PEM data")
	}
	caKey, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	return ca, caKey, nil
}

func servingTemplate(hosts []string) *x509.Certificate {
	template := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "podbridge-webhook"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else {
			template.DNSNames = append(template.DNSNames, h)
		}
	}
	return template
}

// clientTemplate is for client authentication only: a client certificate
// that could also serve would let its holder impersonate a webhook.
func clientTemplate(commonName string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func newCA(commonName string, now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	template := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return ca, key, nil
}

// issue signs template (subject, usages, names) under ca, valid for
// validity from now but never beyond the CA.
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, template *x509.Certificate, now time.Time, validity time.Duration) (*Bundle, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	template.SerialNumber = serial()
	template.NotBefore = now.Add(-time.Minute)
	template.NotAfter = notAfter
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %s: %w", template.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}
	return &Bundle{
		CA:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
		CAKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
		Cert:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// WriteDir writes the serving certificate, its key and the CA into dir,
// each file replaced atomically so the webhook server's certificate
// watcher never reads half a file.
func (b *Bundle) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating certificate directory: %w", err)
	}
	// The key first: the watcher reloads on the certificate's change.
	for _, f := range []struct {
		name string
		data []byte
	}{{KeyFile, b.Key}, {CAFile, b.CA}, {CertFile, b.Cert}} {
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return fmt.Errorf("replacing %s: %w", f.name, err)
		}
	}
	return nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	return x509.ParseCertificate(block.Bytes)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}
