package vcluster

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
	"time"
)

// The virtual apiserver's own PKI, kept on the control-plane pod's claim:
// a serving CA (also the root CA pods get in their token volume), a client
// CA for the identities below, and the service-account signing key.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 365 * 24 * time.Hour
)

// keyPair is a PEM certificate and its PEM key.
type keyPair struct{ Cert, Key []byte }

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// newCA makes a self-signed CA.
func newCA(commonName string, now time.Time) (keyPair, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return keyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return keyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: keyPEM}, nil
}

// issue signs a certificate from tmpl with ca, valid from an hour before
// now for validity.
func (ca keyPair) issue(tmpl *x509.Certificate, now time.Time, validity time.Duration) (keyPair, error) {
	caCert, caKey, err := ca.parse()
	if err != nil {
		return keyPair{}, err
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return keyPair{}, err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return keyPair{}, err
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: keyPEM}, nil
}

func (ca keyPair) parse() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certBlock, _ := pem.Decode(ca.Cert)
	keyBlock, _ := pem.Decode(ca.Key)
	if certBlock == nil || keyBlock == nil {
		return nil, nil, errors.New("a CA's certificate or key is not PEM")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing a CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing a CA key: %w", err)
	}
	return cert, key, nil
}

// serving is the apiserver's serving certificate for hosts.
func (ca keyPair) serving(hosts []string, now time.Time) (keyPair, error) {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "kube-apiserver"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, now, certValidity)
}

// client is a client certificate of user in groups, valid for validity.
func (ca keyPair) client(user string, groups []string, now time.Time, validity time.Duration) (keyPair, error) {
	return ca.issue(&x509.Certificate{Subject: pkix.Name{CommonName: user, Organization: groups}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, now, validity)
}

// validFor says whether the PEM certificate cert is valid at now for at
// least the third of its validity, and names every one of hosts.
func validFor(cert []byte, hosts []string, now time.Time) bool {
	c, err := parsePEMCert(cert)
	if err != nil || c.NotAfter.Sub(now) < c.NotAfter.Sub(c.NotBefore)/3 {
		return false
	}
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// newServiceAccountKey is the service-account signing key pair: the
// private key (PEM) and its public key (PEM).
func newServiceAccountKey() (private, public []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	public, err = publicKeyPEM(key)
	return keyPEM, public, err
}

// publicKeyPEM is key's public key as PEM, as the apiserver's
// --service-account-key-file reads it.
func publicKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// servingHosts are the names and addresses the apiserver's serving
// certificate holds: every way the apiserver is reached (loopback in the
// pod, the Service by name and address, and kubernetes.default.svc,
// which tenant pods use).
func servingHosts(o InitOptions) []string {
	return append([]string{"127.0.0.1", o.APIServerIP}, servingDNSNames(o.APIServerService, o.Namespace, o.ClusterDomain)...)
}

// signedBy says whether the PEM certificate cert was signed by ca.
func signedBy(cert []byte, ca *x509.Certificate) bool {
	c, err := parsePEMCert(cert)
	return err == nil && c.CheckSignatureFrom(ca) == nil
}
