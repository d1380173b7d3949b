package vcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/ownership"
)

// The virtual apiserver reads podbridge's certificates by path: the
// webhook client certificate (for podbridge's webhook and its kubelet
// API) and the kubelet API's CA. client-go, which the apiserver's webhook
// and kubelet clients use, reads a client certificate given as files on
// every new connection (at most once a second) and closes its connections
// when it sees the file change (checked every five minutes); it reloads a
// CA file every five minutes (ClientsAllowCARotation, on by default since
// Kubernetes 1.36). So keeping the files current is all a renewal needs:
// KeepCopies does that while the pod runs.

// CopyCerts writes the apiserver's copies of podbridge's certificates
// from their host Secrets (o.ClientCASecret, o.KubeletCertSecret, marked
// as o.VCluster's) into Dir/pki/CertCopiesDir, each file only when it
// differs. It creates no Secret: Init and podbridge's certificate keepers
// do. It reports whether it wrote anything.
func CopyCerts(ctx context.Context, o InitOptions) (bool, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	client, err := readTLSSecret(ctx, o, o.ClientCASecret)
	if err != nil {
		return false, err
	}
	kubelet, err := readTLSSecret(ctx, o, o.KubeletCertSecret)
	if err != nil {
		return false, err
	}
	return writeCopies(filepath.Join(o.Dir, pkiDir, CertCopiesDir), client, kubelet, o.Now())
}

// KeepCopies runs CopyCerts every interval until ctx ends: the
// control-plane pod's certs container. A failed pass is logged and the
// next one tries again; nothing is retried faster than interval.
func KeepCopies(ctx context.Context, o InitOptions, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("the interval between checks must be positive, not %s", interval)
	}
	log := logf.FromContext(ctx)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		changed, err := CopyCerts(ctx, o)
		switch {
		case err != nil:
			log.Error(err, "Refreshing the apiserver's copies of podbridge's certificates failed; retrying", "interval", interval)
		case changed:
			log.Info("Refreshed the apiserver's copies of podbridge's certificates", "dir", filepath.Join(o.Dir, pkiDir, CertCopiesDir))
		}
	}, interval)
	return nil
}

// readTLSSecret reads the host Secret name, which must be marked as this
// virtual cluster's and hold a certificate, its key and its CA.
func readTLSSecret(ctx context.Context, o InitOptions, name string) (*certs.Bundle, error) {
	secret := &corev1.Secret{}
	if err := o.Host.Get(ctx, types.NamespacedName{Namespace: o.Namespace, Name: name}, secret); err != nil {
		return nil, fmt.Errorf("reading host Secret %s/%s: %w", o.Namespace, name, err)
	}
	if err := ownership.Check(secret, "Secret", o.VCluster); err != nil {
		return nil, err
	}
	b := &certs.Bundle{CA: secret.Data[certs.CAFile], CAKey: secret.Data[certs.CAKeyFile], Cert: secret.Data[certs.CertFile], Key: secret.Data[certs.KeyFile]}
	if len(b.CA) == 0 || len(b.Cert) == 0 || len(b.Key) == 0 {
		return nil, fmt.Errorf("host Secret %s/%s lacks %s, %s or %s", o.Namespace, name, certs.CAFile, certs.CertFile, certs.KeyFile)
	}
	return b, nil
}

// writeCopies writes into dir the webhook client's certificate and key as
// one file (WebhookClientFile: one rename swaps both) and the kubelet
// API's CA bundle (KubeletCAFile: its current CA, then the previous one
// while valid, so a CA rotated in the Secret does not fail the apiserver's
// calls before the reflector serves from it), each only when it differs.
// A client certificate whose key does not match is refused: the apiserver
// would fail every handshake with it.
func writeCopies(dir string, client, kubelet *certs.Bundle, now time.Time) (bool, error) {
	if _, err := tlsPair(client); err != nil {
		return false, fmt.Errorf("the webhook client certificate: %w", err)
	}
	pair := slices.Concat(bytes.TrimRight(client.Cert, "\n"), []byte("\n"), client.Key)
	previousCA, err := os.ReadFile(filepath.Join(dir, KubeletCAFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	bundle := certs.MergeCABundle(kubelet.CA, previousCA, now)
	if len(bundle) == 0 {
		return false, errors.New("the kubelet API's Secret holds no PEM CA certificate")
	}
	changed := false
	for file, data := range map[string][]byte{WebhookClientFile: pair, KubeletCAFile: bundle} {
		path := filepath.Join(dir, file)
		if current, err := os.ReadFile(path); err == nil && bytes.Equal(current, data) {
			continue
		}
		if err := writeFile(path, data); err != nil {
			return changed, fmt.Errorf("writing %s: %w", path, err)
		}
		changed = true
	}
	return changed, nil
}

// tlsPair parses b's certificate and key as a pair.
func tlsPair(b *certs.Bundle) (tls.Certificate, error) {
	return tls.X509KeyPair(b.Cert, b.Key)
}
