package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ClientCommonNamePrefix begins the subject of the client certificate
// podbridge (or the cert-manager Certificate in manifests/) issues to the
// virtual apiserver; ClientCommonNameFor completes it.
const ClientCommonNamePrefix = "podbridge-virtual-apiserver"

// maxCommonNameBytes is X.509's upper bound on a common name (RFC 5280
// ub-common-name), which cert-manager enforces.
const maxCommonNameBytes = 64

// ClientCommonNameFor is the subject of the virtual apiserver's client
// certificate for virtual cluster vcluster in host namespace namespace,
// and the subject its podbridge accepts by default:
// podbridge-virtual-apiserver.VCLUSTER.NAMESPACE. Each virtual cluster
// has its own, so a podbridge never accepts another virtual apiserver
// whose certificate a shared CA signed.
func ClientCommonNameFor(namespace, vcluster string) string {
	return ClientCommonNamePrefix + "." + vcluster + "." + namespace
}

// defaultClientCommonName is ClientCommonNameFor, refused when it cannot
// be a common name.
func defaultClientCommonName(namespace, vcluster string) (string, error) {
	if namespace == "" || vcluster == "" {
		return "", fmt.Errorf("the client certificate's common name is made of the host namespace (%q) and the virtual cluster's name (%q): both are needed", namespace, vcluster)
	}
	name := ClientCommonNameFor(namespace, vcluster)
	if len(name) > maxCommonNameBytes {
		return "", fmt.Errorf("the client certificate's default common name %q is %d bytes, over the %d a common name may hold: set one unique to this virtual cluster (--client-common-name)", name, len(name), maxCommonNameBytes)
	}
	return name, nil
}

// ClientVerifier decides who may call the webhook: only a client that
// presents a certificate for client authentication, for the expected
// subject, chaining to a trusted client CA. The CAs are replaced while the
// server runs (renewal, rotation), so it answers each handshake from the
// CAs current then.
type ClientVerifier struct {
	commonName string

	mu   sync.Mutex
	pem  []byte // the trusted CAs, as last set
	pool *x509.CertPool
}

// newClientVerifier returns a verifier that accepts client certificates
// for commonName once CAs are set; until then it refuses every client.
func newClientVerifier(commonName string) (*ClientVerifier, error) {
	if commonName == "" {
		return nil, errors.New("the client certificate's common name must not be empty: any certificate of the CA would do")
	}
	return &ClientVerifier{commonName: commonName}, nil
}

// SetCAs trusts the PEM certificates of current, plus the newest one of
// the CAs trusted so far that current lacks and that is valid at now: a
// client still presenting a certificate of the old CA stays accepted
// while the new one rolls out to it. It reports whether the trusted set
// changed.
func (v *ClientVerifier) SetCAs(current []byte, now time.Time) (bool, error) {
	if len(certificates(current)) == 0 {
		return false, errors.New("no PEM certificate in the client CA bundle")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	merged := MergeCABundle(current, v.pem, now)
	if v.pool != nil && bytes.Equal(merged, v.pem) {
		return false, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(merged) {
		return false, errors.New("the client CA bundle does not parse")
	}
	v.pem, v.pool = merged, pool
	return true, nil
}

// CAs returns the trusted CAs, PEM-encoded.
func (v *ClientVerifier) CAs() []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.pem)
}

func (v *ClientVerifier) currentPool() *x509.CertPool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pool
}

// ConfigureServer makes a TLS server config require and verify a client
// certificate on every handshake, against the CAs current at that moment.
// base must be the config the server listens with; its other settings
// (serving certificate, versions) are kept.
func (v *ClientVerifier) ConfigureServer(base *tls.Config) {
	base.ClientAuth = tls.RequireAndVerifyClientCert
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := v.currentPool()
		if pool == nil {
			return nil, errors.New("no client CA loaded yet: refusing every client")
		}
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.VerifyConnection = v.verifyConnection
		return c, nil
	}
}

// verifyConnection runs after Go has verified the chain to a trusted CA
// for client authentication. Go accepts a leaf with no extended key usage
// at all as good for any use; podbridge wants client authentication
// stated, and the expected subject, so that another certificate the same
// CA signed (a shared CA in files mode) does not pass.
func (v *ClientVerifier) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return errors.New("client certificate not verified")
	}
	leaf := cs.VerifiedChains[0][0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("client certificate %q is not for client authentication", leaf.Subject.CommonName)
	}
	if leaf.Subject.CommonName != v.commonName {
		return fmt.Errorf("client certificate is for %q, not %q", leaf.Subject.CommonName, v.commonName)
	}
	return nil
}
