package vcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/translate"
)

// InitOptions configure the control-plane pod's init container.
type InitOptions struct {
	// Host is the host cluster, as the pod's service account.
	Host client.Client
	// Dir is the claim's mount: Dir/pki receives the certificates and
	// kubeconfigs, Dir/db is kine's.
	Dir string
	// VCluster and Namespace name the virtual cluster.
	VCluster, Namespace string
	// APIServerService and APIServerIP are the Service in front of the
	// virtual apiserver and its ClusterIP; ClusterDomain the virtual
	// cluster's DNS domain.
	APIServerService, APIServerIP, ClusterDomain string
	// KubeconfigSecret receives the admin kubeconfig; ClientCASecret and
	// KubeletCertSecret are podbridge's self-managed Secrets of the webhook
	// client certificate and the kubelet API's serving certificate.
	KubeconfigSecret, ClientCASecret, KubeletCertSecret string
	// PKISecret, when set, is the prefix of the host Secrets holding the
	// CAs and the service-account key all replicas share (sharedpki.go);
	// PKIIssuer says who makes them: IssuerSelfManaged (init, when
	// absent) or IssuerCertManager (also the serving certificate).
	PKISecret, PKIIssuer string
	// PKIWait bounds the wait for cert-manager's Secrets (0:
	// DefaultPKIWait).
	PKIWait time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// Paths under Dir the package's containers read, and the identities Init
// issues.
const (
	pkiDir = "pki"
	// PodbridgeDir, under pki, holds only podbridge.kubeconfig: the webhook
	// and the reflector mount this folder alone (a subPath of the claim),
	// never the CAs' keys or any other identity's credentials.
	PodbridgeDir = "podbridge"
	// CertCopiesDir, under pki, holds the apiserver's copies of
	// podbridge's certificates: WebhookClientFile and KubeletCAFile, which
	// Init writes and the certs container keeps current (KeepCopies).
	CertCopiesDir = "podbridge-certs"
	// WebhookClientFile holds the webhook and kubelet API client
	// certificate and its key in one PEM file, so that one rename replaces
	// both (the apiserver reads the file once for the certificate and once
	// for the key).
	WebhookClientFile = "webhook-client.pem"
	// KubeletCAFile is the kubelet API's CA bundle: its current CA and the
	// previous one while valid.
	KubeletCAFile = "kubelet-ca.crt"
	// AdminUser is the admin kubeconfig's user, in system:masters.
	AdminUser = "podbridge:vcluster-admin"
	// PodbridgeUser is podbridge's identity in the virtual cluster, in no
	// group: the user manifests/virtual/base/rbac.yaml grants what
	// podbridge does there, which the bootstrap step applies (Bootstrap).
	PodbridgeUser = "podbridge"
)

// Init makes everything the control plane reads at start, keeping what a
// previous start made: the virtual cluster's identity (CAs, the
// service-account key, tokens signed with it) outlives the pod.
func Init(ctx context.Context, o InitOptions) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	now := o.Now()
	log := logf.FromContext(ctx)
	pki := filepath.Join(o.Dir, pkiDir)
	for _, dir := range []string{pki, filepath.Join(pki, PodbridgeDir), filepath.Join(pki, CertCopiesDir), filepath.Join(o.Dir, "db")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	if err := syncSharedPKI(ctx, o, pki, now); err != nil {
		return err
	}
	servingCA, err := loadOrMakeCA(pki, "ca", "podbridge-vcluster-ca", now)
	if err != nil {
		return err
	}
	clientCA, err := loadOrMakeCA(pki, "client-ca", "podbridge-vcluster-client-ca", now)
	if err != nil {
		return err
	}
	hosts := servingHosts(o)
	// cert-manager's serving certificate is cert-manager's to renew.
	if current, err := os.ReadFile(filepath.Join(pki, "apiserver.crt")); o.PKIIssuer != IssuerCertManager && (err != nil || !validFor(current, hosts, now)) {
		serving, err := servingCA.serving(hosts, now)
		if err != nil {
			return fmt.Errorf("issuing the apiserver's serving certificate: %w", err)
		}
		if err := writePair(pki, "apiserver", serving); err != nil {
			return err
		}
		log.Info("Issued the virtual apiserver's serving certificate", "hosts", hosts)
	}
	if _, err := os.Stat(filepath.Join(pki, "sa.key")); errors.Is(err, fs.ErrNotExist) {
		private, public, err := newServiceAccountKey()
		if err != nil {
			return fmt.Errorf("making the service-account key: %w", err)
		}
		if err := errors.Join(writeFile(filepath.Join(pki, "sa.pub"), public), writeFile(filepath.Join(pki, "sa.key"), private)); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := issueKubeconfigs(pki, servingCA, clientCA, now); err != nil {
		return err
	}
	// What earlier versions left on the claim: podbridge's kubeconfig in
	// system:masters, and the copies under their old names.
	for _, old := range []string{filepath.Join(pki, "podbridge.kubeconfig"), filepath.Join(pki, "webhook-client"), filepath.Join(pki, "kubelet-ca.crt")} {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("removing %s of an earlier version: %w", old, err)
		}
	}
	// podbridge's self-managed Secrets, issued here when absent so the
	// apiserver has their files at start; the webhook and the reflector
	// then keep and renew them, and the certs container keeps the
	// apiserver's copies current (KeepCopies).
	webhookClient, err := ensureTLSSecret(ctx, o, o.ClientCASecret, func() (*certs.Bundle, error) {
		return certs.NewClient(certs.ClientCommonNameFor(o.Namespace, o.VCluster), now, certValidity)
	})
	if err != nil {
		return err
	}
	kubeletServing, err := ensureTLSSecret(ctx, o, o.KubeletCertSecret, func() (*certs.Bundle, error) {
		return certs.NewSelfSigned([]string{"127.0.0.1"}, now, certValidity)
	})
	if err != nil {
		return err
	}
	if _, err := writeCopies(filepath.Join(pki, CertCopiesDir), webhookClient, kubeletServing, now); err != nil {
		return err
	}
	if err := ensureKubeconfigSecret(ctx, o, servingCA, clientCA, now); err != nil {
		return err
	}
	return nil
}

// Identities Init issues kubeconfigs for, on the apiserver's loopback:
// file under pki, user and groups. podbridge's is in no group: RBAC
// grants what it does (manifests/virtual/base/rbac.yaml, applied by
// Bootstrap).
var identities = []struct {
	file, user string
	groups     []string
}{
	{filepath.Join(PodbridgeDir, "podbridge.kubeconfig"), PodbridgeUser, nil},
	{"controller-manager.kubeconfig", "system:kube-controller-manager", nil},
}

// issueKubeconfigs writes a kubeconfig of each of identities into pki,
// freshly issued (they never leave the pod; a restart issues new ones).
func issueKubeconfigs(pki string, servingCA, clientCA keyPair, now time.Time) error {
	for _, id := range identities {
		pair, err := clientCA.client(id.user, id.groups, now, certValidity)
		if err != nil {
			return fmt.Errorf("issuing %s's client certificate: %w", id.user, err)
		}
		kubeconfig, err := kubeconfig(LocalAPIServer, servingCA.Cert, id.user, pair)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(pki, id.file), kubeconfig); err != nil {
			return err
		}
	}
	return nil
}

// LocalAPIServer is the virtual apiserver on the pod's loopback.
const LocalAPIServer = "https://127.0.0.1:6443"

// OwnDir hands dir itself (not what is in it) to uid and its group, unless
// it is theirs already: the control-plane pod's first init container,
// root with CAP_CHOWN only, for volumes that ignore fsGroup. Everything
// in it is made afterwards by the containers running as uid.
func OwnDir(dir string, uid int) error {
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == uid {
		return nil
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		return fmt.Errorf("handing %s to user %d: %w", dir, uid, err)
	}
	return nil
}

// loadOrMakeCA reads pki/name.crt and .key, or makes and writes them.
func loadOrMakeCA(pki, name, commonName string, now time.Time) (keyPair, error) {
	cert, certErr := os.ReadFile(filepath.Join(pki, name+".crt"))
	key, keyErr := os.ReadFile(filepath.Join(pki, name+".key"))
	if certErr == nil && keyErr == nil {
		ca := keyPair{Cert: cert, Key: key}
		if _, _, err := ca.parse(); err != nil {
			return keyPair{}, fmt.Errorf("%s in %s: %w", name, pki, err)
		}
		return ca, nil
	}
	if !errors.Is(certErr, fs.ErrNotExist) || !errors.Is(keyErr, fs.ErrNotExist) {
		return keyPair{}, fmt.Errorf("%s in %s: one of certificate and key is missing or unreadable (%w): restore both, or remove both for a new CA", name, pki, errors.Join(certErr, keyErr))
	}
	ca, err := newCA(commonName, now)
	if err != nil {
		return keyPair{}, fmt.Errorf("making %s: %w", name, err)
	}
	return ca, writePair(pki, name, ca)
}

func writePair(dir, name string, p keyPair) error {
	return errors.Join(writeFile(filepath.Join(dir, name+".crt"), p.Cert), writeFile(filepath.Join(dir, name+".key"), p.Key))
}

// writeFile replaces path with data at once (a reader sees the old or the
// new file), readable by its owner only.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ensureTLSSecret reads the host Secret name, marked as this virtual
// cluster's, or creates it from fresh; a Secret of that name without the
// mark is refused, as podbridge's self-managed mode refuses it.
func ensureTLSSecret(ctx context.Context, o InitOptions, name string, fresh func() (*certs.Bundle, error)) (*certs.Bundle, error) {
	b, err := readTLSSecret(ctx, o, name)
	if err == nil || !apierrors.IsNotFound(err) {
		return b, err
	}
	b, err = fresh()
	if err != nil {
		return nil, fmt.Errorf("issuing %s: %w", name, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: instanceLabels(o.VCluster)},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{certs.CAFile: b.CA, certs.CAKeyFile: b.CAKey, certs.CertFile: b.Cert, certs.KeyFile: b.Key},
	}
	ownership.Mark(&secret.ObjectMeta, o.VCluster)
	if err := o.Host.Create(ctx, secret); err != nil {
		return nil, fmt.Errorf("creating host Secret %s/%s: %w", o.Namespace, name, err)
	}
	return b, nil
}

// instanceLabels mark what a virtual cluster's control plane makes on the
// host, so `podbridge delete` finds it.
func instanceLabels(vcluster string) map[string]string {
	return map[string]string{LabelInstance: vcluster, LabelPartOf: PartOfValue, translate.LabelManagedBy: translate.ManagedByValue}
}

// ensureKubeconfigSecret writes the admin kubeconfig (the Service's DNS
// name, port 443) into the host Secret, unless it holds one for the same
// CAs already.
func ensureKubeconfigSecret(ctx context.Context, o InitOptions, servingCA, clientCA keyPair, now time.Time) error {
	key := types.NamespacedName{Namespace: o.Namespace, Name: o.KubeconfigSecret}
	secret := &corev1.Secret{}
	err := o.Host.Get(ctx, key, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading host Secret %s: %w", key, err)
	}
	exists := err == nil
	if exists {
		if err := ownership.Check(secret, "Secret", o.VCluster); err != nil {
			return err
		}
		if current, err := clientcmd.Load(secret.Data[KubeconfigKey]); err == nil && kubeconfigTrusts(current, servingCA.Cert, clientCA, now) {
			return nil
		}
	}
	admin, err := clientCA.client(AdminUser, []string{"system:masters"}, now, certValidity)
	if err != nil {
		return fmt.Errorf("issuing the admin client certificate: %w", err)
	}
	server := "https://" + o.APIServerService + "." + o.Namespace + ".svc:443"
	kubeconfig, err := kubeconfig(server, servingCA.Cert, o.VCluster, admin)
	if err != nil {
		return err
	}
	secret.Name, secret.Namespace = key.Name, key.Namespace
	secret.Labels = instanceLabels(o.VCluster)
	ownership.Mark(&secret.ObjectMeta, o.VCluster)
	secret.Data = map[string][]byte{KubeconfigKey: kubeconfig}
	if exists {
		err = o.Host.Update(ctx, secret)
	} else {
		err = o.Host.Create(ctx, secret)
	}
	if err != nil {
		return fmt.Errorf("writing the admin kubeconfig to host Secret %s: %w", key, err)
	}
	return nil
}

// kubeconfigTrusts says whether cfg's cluster CA is ca and its client
// certificate is from clientCA and valid for a third of its life yet.
func kubeconfigTrusts(cfg *clientcmdapi.Config, ca []byte, clientCA keyPair, now time.Time) bool {
	for _, cluster := range cfg.Clusters {
		if !bytes.Equal(cluster.CertificateAuthorityData, ca) {
			return false
		}
	}
	caCert, _, err := clientCA.parse()
	if err != nil {
		return false
	}
	for _, user := range cfg.AuthInfos {
		if !validFor(user.ClientCertificateData, nil, now) {
			return false
		}
		if !signedBy(user.ClientCertificateData, caCert) {
			return false
		}
	}
	return len(cfg.Clusters) > 0 && len(cfg.AuthInfos) > 0
}

// kubeconfig is a kubeconfig for server (trusting ca) as a client
// certificate's user; its context is named context.
func kubeconfig(server string, ca []byte, context string, user keyPair) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[context] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[context] = &clientcmdapi.AuthInfo{ClientCertificateData: user.Cert, ClientKeyData: user.Key}
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: context, AuthInfo: context}
	cfg.CurrentContext = context
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding a kubeconfig: %w", err)
	}
	return data, nil
}
