package vcluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/translate"
)

// The shared PKI (components/shared-pki): the CAs and the service-account
// key in host Secrets every replica reads, instead of one replica's
// claim. init copies them to the files the containers read (Dir/pki, the
// same paths as on the claim) at each start; it makes the Secrets when
// absent, or, when cert-manager makes them, waits for them and makes none.

// CertManagerCertificateAnnotation is the annotation cert-manager puts on
// a Secret it writes: the name of its Certificate.
const CertManagerCertificateAnnotation = "cert-manager.io/certificate-name"

// DefaultPKIWait bounds init's wait for cert-manager's Secrets
// (InitOptions.PKIWait); the container then fails and the kubelet starts
// it again.
const DefaultPKIWait = 2 * time.Minute

// sharedPKIFiles are the shared Secrets (after the prefix) and the files
// under Dir/pki they become.
var sharedPKIFiles = []struct{ suffix, file, commonName string }{
	{"-ca", "ca", "podbridge-vcluster-ca"},
	{"-client-ca", "client-ca", "podbridge-vcluster-client-ca"},
	{"-service-account", "sa", "podbridge-vcluster-service-account"},
}

// syncSharedPKI writes the shared Secrets' keys to pki: ca.crt/.key,
// client-ca.crt/.key, sa.key/sa.pub and, from cert-manager, the serving
// certificate apiserver.crt/.key. Nothing when o.PKISecret is empty.
func syncSharedPKI(ctx context.Context, o InitOptions, pki string, now time.Time) error {
	if o.PKISecret == "" {
		if o.PKIIssuer == IssuerCertManager {
			return errors.New("--pki-issuer=cert-manager needs --pki-secret: the prefix of the Secrets cert-manager writes")
		}
		return nil
	}
	if o.PKIIssuer != "" && o.PKIIssuer != IssuerSelfManaged && o.PKIIssuer != IssuerCertManager {
		return fmt.Errorf("--pki-issuer %q: want %s or %s", o.PKIIssuer, IssuerSelfManaged, IssuerCertManager)
	}
	certManager := o.PKIIssuer == IssuerCertManager
	var serving keyPair
	for _, s := range sharedPKIFiles {
		pair, err := sharedKeyPair(ctx, o, o.PKISecret+s.suffix, s.commonName, certManager, now)
		if err != nil {
			return err
		}
		if s.file == "sa" {
			key, err := parseECKey(pair.Key)
			if err != nil {
				return fmt.Errorf("host Secret %s/%s%s: %w", o.Namespace, o.PKISecret, s.suffix, err)
			}
			public, err := publicKeyPEM(key)
			if err != nil {
				return err
			}
			if err := errors.Join(writeFile(filepath.Join(pki, "sa.key"), pair.Key), writeFile(filepath.Join(pki, "sa.pub"), public)); err != nil {
				return err
			}
			continue
		}
		if s.file == "ca" {
			serving = pair
		}
		if err := writePair(pki, s.file, pair); err != nil {
			return err
		}
	}
	if !certManager {
		return nil
	}
	// cert-manager's serving certificate, which init then keeps: it must
	// chain to the serving CA (tenants trust that one) and name every way
	// the apiserver is reached.
	name := o.PKISecret + "-apiserver"
	pair, err := sharedKeyPair(ctx, o, name, "", true, now)
	if err != nil {
		return err
	}
	caCert, _, err := serving.parse()
	if err != nil {
		return err
	}
	if !signedBy(pair.Cert, caCert) {
		return fmt.Errorf("host Secret %s/%s: its certificate is not signed by the serving CA of %s%s (the Certificate's issuerRef must be the CA Issuer)", o.Namespace, name, o.PKISecret, "-ca")
	}
	hosts := servingHosts(o)
	cert, err := parsePEMCert(pair.Cert)
	if err != nil {
		return fmt.Errorf("host Secret %s/%s: %w", o.Namespace, name, err)
	}
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return fmt.Errorf("host Secret %s/%s: its certificate does not name %s (the Certificate's dnsNames and ipAddresses must hold %v)", o.Namespace, name, h, hosts)
		}
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("host Secret %s/%s: its certificate is valid from %s to %s, not now (is cert-manager renewing it?)", o.Namespace, name, cert.NotBefore, cert.NotAfter)
	}
	logf.FromContext(ctx).Info("Read the shared PKI from host Secrets", "prefix", o.PKISecret, "issuer", o.PKIIssuer)
	return writePair(pki, "apiserver", pair)
}

// sharedKeyPair reads host Secret name's tls.crt and tls.key (an ECDSA
// key). A Secret podbridge makes is marked as this virtual cluster's; one
// cert-manager writes names its Certificate, and is never a tenant's copy.
// When absent: made (self-signed, a CA) unless cert-manager makes it,
// then waited for.
func sharedKeyPair(ctx context.Context, o InitOptions, name, commonName string, certManager bool, now time.Time) (keyPair, error) {
	key := types.NamespacedName{Namespace: o.Namespace, Name: name}
	var secret corev1.Secret
	var err error
	if certManager {
		bound := o.PKIWait
		if bound <= 0 {
			bound = DefaultPKIWait
		}
		waitCtx, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		err = wait.PollUntilContextCancel(waitCtx, time.Second, true, func(ctx context.Context) (bool, error) {
			err := o.Host.Get(ctx, key, &secret)
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			return keyPair{}, fmt.Errorf("waiting for cert-manager to write host Secret %s (Certificate %s; is cert-manager installed and the Certificate ready?): %w", key, name, err)
		}
	} else {
		err = o.Host.Get(ctx, key, &secret)
	}
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		ca, err := newCA(commonName, now)
		if err != nil {
			return keyPair{}, fmt.Errorf("making %s: %w", name, err)
		}
		secret = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: instanceLabels(o.VCluster)},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: ca.Cert, corev1.TLSPrivateKeyKey: ca.Key, "ca.crt": ca.Cert},
		}
		ownership.Mark(&secret.ObjectMeta, o.VCluster)
		switch err := o.Host.Create(ctx, &secret); {
		case apierrors.IsAlreadyExists(err):
			// Another replica made it first: use that one.
			if err := o.Host.Get(ctx, key, &secret); err != nil {
				return keyPair{}, fmt.Errorf("reading host Secret %s: %w", key, err)
			}
		case err != nil:
			return keyPair{}, fmt.Errorf("creating host Secret %s: %w", key, err)
		default:
			logf.FromContext(ctx).Info("Created a shared PKI Secret", "secret", key)
		}
	default:
		return keyPair{}, fmt.Errorf("reading host Secret %s: %w", key, err)
	}
	if err := checkSharedSecret(&secret, o.VCluster, certManager); err != nil {
		return keyPair{}, err
	}
	pair := keyPair{Cert: secret.Data[corev1.TLSCertKey], Key: secret.Data[corev1.TLSPrivateKeyKey]}
	ecKey, err := parseECKey(pair.Key)
	if err != nil {
		return keyPair{}, fmt.Errorf("host Secret %s: %w", key, err)
	}
	der, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		return keyPair{}, err
	}
	// One encoding on disk whatever cert-manager's privateKey.encoding.
	pair.Key = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if cert, err := parsePEMCert(pair.Cert); err != nil {
		return keyPair{}, fmt.Errorf("host Secret %s: %w", key, err)
	} else if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&ecKey.PublicKey) {
		return keyPair{}, fmt.Errorf("host Secret %s: %s and %s are not one pair", key, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	return pair, nil
}

// checkSharedSecret refuses a Secret that is not the shared PKI's: in
// podbridge's mode one not marked as vcluster's; in cert-manager's one
// without cert-manager's annotation naming the Certificate of its name,
// and any copy podbridge made of a tenant's Secret (whose name a
// tenant chooses a part of).
func checkSharedSecret(secret *corev1.Secret, vcluster string, certManager bool) error {
	if secret.Labels[translate.LabelManagedBy] == translate.ManagedByValue && secret.Labels[translate.LabelVCluster] != "" {
		return fmt.Errorf("host Secret %s/%s is podbridge's copy of a tenant's Secret (label %s %s), never a virtual cluster's CA", secret.Namespace, secret.Name, translate.LabelVCluster, secret.Labels[translate.LabelVCluster])
	}
	if !certManager {
		return ownership.Check(secret, "Secret", vcluster)
	}
	if got := secret.Annotations[CertManagerCertificateAnnotation]; got != secret.Name {
		return fmt.Errorf("host Secret %s/%s: annotation %s is %q, want %q: cert-manager mode reads only the Secrets cert-manager writes for the package's Certificates", secret.Namespace, secret.Name, CertManagerCertificateAnnotation, got, secret.Name)
	}
	return nil
}

// parseECKey reads a PEM ECDSA private key, SEC 1 or PKCS #8 (cert-manager
// writes either, by privateKey.encoding).
func parseECKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s is not a PEM key", corev1.TLSPrivateKeyKey)
	}
	if key, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", corev1.TLSPrivateKeyKey, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is a %T key: the virtual cluster's PKI is ECDSA (privateKey.algorithm: ECDSA)", corev1.TLSPrivateKeyKey, key)
	}
	return ec, nil
}

// parsePEMCert reads the first certificate of a PEM tls.crt.
func parsePEMCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s is not a PEM certificate", corev1.TLSCertKey)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", corev1.TLSCertKey, err)
	}
	return cert, nil
}
