package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/internal/ownership"
)

// Mode says where the serving certificate comes from.
type Mode string

const (
	// ModeCertManager means a cert-manager Certificate issues the Secret, which
	// is mounted at CertDir; podbridge injects its CA into the virtual
	// cluster and reports the Certificate's readiness.
	ModeCertManager Mode = "cert-manager"
	// ModeSelfManaged means podbridge creates a CA and serving certificate,
	// keeps them in a host Secret shared by replicas, renews them, and
	// writes them to CertDir; likewise a client CA and the virtual
	// apiserver's client certificate, in ClientSecretName.
	ModeSelfManaged Mode = "self-managed"
	// ModeFiles means the certificate and CA are files in CertDir, managed by
	// someone else; podbridge injects the CA.
	ModeFiles Mode = "files"
)

// DefaultClientSecretName is the host Secret holding the virtual
// apiserver's client certificate (tls.crt, tls.key) and its CA (ca.crt).
const DefaultClientSecretName = "podbridge-webhook-client-tls"

// Options configure a Keeper.
type Options struct {
	Mode Mode
	// Host reads and writes the certificate Secret in Namespace.
	Host      client.Client
	Namespace string
	// SecretName is the certificate Secret (cert-manager and self-managed).
	SecretName string
	// CertificateName is the cert-manager Certificate (cert-manager mode).
	CertificateName string
	// CertDir is where the webhook server reads tls.crt and tls.key.
	CertDir string
	// Hosts are the serving certificate's DNS names and IPs (self-managed).
	Hosts []string
	// ClientSecretName is, in self-managed mode, the Secret podbridge issues
	// the virtual apiserver's client certificate and its CA into; in
	// cert-manager mode, the Secret of a client Certificate whose ca.crt
	// callers must chain to. Default DefaultClientSecretName.
	ClientSecretName string
	// ClientCAFile is, in files mode, the CA bundle callers' client
	// certificates must chain to (required there, refused elsewhere).
	ClientCAFile string
	// ClientCommonName is the subject callers' client certificates must
	// carry, and the one self-managed mode issues. Default
	// ClientCommonNameFor(Namespace, VCluster).
	ClientCommonName string
	// VCluster is the virtual cluster this podbridge serves (its name,
	// unique in Namespace): self-managed mode marks the Secrets it creates
	// as its own (package ownership) and uses no other.
	VCluster string
	// Validity of self-managed certificates; renewed when a third is left.
	Validity time.Duration
	// Inject puts a CA bundle into the virtual cluster's webhook
	// configuration.
	Inject func(ctx context.Context, caBundle []byte) error
	// Interval between checks for renewal and drift.
	Interval time.Duration
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
}

// Keeper keeps the webhook's serving certificate current and the virtual
// cluster's trust in it current. It is a manager Runnable.
type Keeper struct {
	o        Options
	clients  *ClientVerifier
	injected []byte
	notReady bool
}

// NewKeeper checks options and returns a Keeper.
func NewKeeper(o Options) (*Keeper, error) {
	switch o.Mode {
	case ModeCertManager, ModeSelfManaged:
		if o.SecretName == "" {
			return nil, fmt.Errorf("certificate mode %s needs a Secret name", o.Mode)
		}
	case ModeFiles:
	default:
		return nil, fmt.Errorf("unknown certificate mode %q: use %s, %s or %s", o.Mode, ModeCertManager, ModeSelfManaged, ModeFiles)
	}
	if o.Mode == ModeSelfManaged && len(o.Hosts) == 0 {
		return nil, errors.New("self-managed certificates need at least one host name")
	}
	if o.Mode == ModeFiles && o.ClientCAFile == "" {
		return nil, errors.New("certificate mode files needs a client CA file: the webhook accepts only callers with a client certificate")
	}
	if o.Mode != ModeFiles && o.ClientCAFile != "" {
		return nil, fmt.Errorf("a client CA file is for certificate mode files; mode %s reads the client CA from the Secret %s", o.Mode, o.ClientSecretName)
	}
	if o.ClientSecretName == "" {
		o.ClientSecretName = DefaultClientSecretName
	}
	if o.Mode == ModeSelfManaged && o.VCluster == "" {
		return nil, errors.New("self-managed certificates need the virtual cluster's name: podbridge uses only the Secrets it marked as that virtual cluster's")
	}
	if o.ClientCommonName == "" {
		name, err := defaultClientCommonName(o.Namespace, o.VCluster)
		if err != nil {
			return nil, err
		}
		o.ClientCommonName = name
	}
	clients, err := newClientVerifier(o.ClientCommonName)
	if err != nil {
		return nil, err
	}
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if o.Interval == 0 {
		o.Interval = time.Minute
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Keeper{o: o, clients: clients}, nil
}

// ClientVerifier is what the webhook server checks callers with; the
// Keeper keeps its CAs current.
func (k *Keeper) ClientVerifier() *ClientVerifier { return k.clients }

// Prepare makes sure CertDir holds a certificate and the client CA is
// loaded before the webhook server starts, which needs both: self-managed
// mode creates or loads them, cert-manager mode waits for the issued
// Secrets (the serving one mounted).
// A Secret of another virtual cluster's, or one nothing shows is this
// one's, ends the wait at once with the reason: waiting would not change it.
func (k *Keeper) Prepare(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		if err := k.sync(ctx); err != nil {
			if notOwned := (*NotOwnedError)(nil); errors.As(err, &notOwned) {
				return false, err
			}
			logf.FromContext(ctx).Info("Waiting for the serving certificate", "error", err.Error())
			return false, nil
		}
		_, err := os.Stat(filepath.Join(k.o.CertDir, CertFile))
		return err == nil && len(k.clients.CAs()) > 0, nil
	})
}

// Start keeps everything current until ctx is done.
func (k *Keeper) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("certs")
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := k.sync(ctx); err != nil {
			log.Error(err, "Certificate check failed; retrying", "mode", k.o.Mode)
		}
	}, k.o.Interval)
	return nil
}

// sync runs one pass: gather the current certificates, renew them or write
// them out where this mode owns that, trust the current client CA, and
// inject the serving CA. The client certificate comes before the
// injection, which needs the virtual apiserver up: an apiserver that waits
// for its client certificate Secret then gets it on the first pass.
func (k *Keeper) sync(ctx context.Context) error {
	if err := k.syncClientCA(ctx); err != nil {
		return err
	}
	var ca []byte
	switch k.o.Mode {
	case ModeSelfManaged:
		b, err := k.selfManaged(ctx, k.servingIssuer())
		if err != nil {
			return err
		}
		if err := writeIfChanged(k.o.CertDir, b); err != nil {
			return err
		}
		ca = b.CA
	case ModeCertManager:
		k.reportCertificate(ctx)
		secret := &corev1.Secret{}
		if err := k.o.Host.Get(ctx, types.NamespacedName{Namespace: k.o.Namespace, Name: k.o.SecretName}, secret); err != nil {
			return fmt.Errorf("reading certificate Secret %s: %w", k.o.SecretName, err)
		}
		if ca = secret.Data[CAFile]; len(ca) == 0 {
			return fmt.Errorf("certificate Secret %s has no %s: use an issuer that publishes its CA", k.o.SecretName, CAFile)
		}
	case ModeFiles:
		data, err := os.ReadFile(filepath.Join(k.o.CertDir, CAFile))
		if err != nil {
			return fmt.Errorf("reading CA: %w", err)
		}
		ca = data
	}
	if k.o.Inject == nil {
		return nil
	}
	bundle := MergeCABundle(ca, k.injected, k.o.Clock.Now())
	if bytes.Equal(bundle, k.injected) {
		return nil
	}
	if err := k.o.Inject(ctx, bundle); err != nil {
		return fmt.Errorf("injecting CA bundle: %w", err)
	}
	k.injected = bundle
	logf.FromContext(ctx).Info("Injected webhook CA bundle into the virtual cluster", "mode", k.o.Mode)
	return nil
}

// CA reads, now, the CA the serving certificate is issued under, from
// where this mode keeps it; it neither creates nor renews anything.
func (k *Keeper) CA(ctx context.Context) ([]byte, error) {
	if k.o.Mode == ModeFiles {
		return os.ReadFile(filepath.Join(k.o.CertDir, CAFile))
	}
	secret := &corev1.Secret{}
	if err := k.o.Host.Get(ctx, types.NamespacedName{Namespace: k.o.Namespace, Name: k.o.SecretName}, secret); err != nil {
		return nil, fmt.Errorf("reading certificate Secret %s: %w", k.o.SecretName, err)
	}
	return secret.Data[CAFile], nil
}

// syncClientCA trusts the client CA this mode names: the self-managed
// client Secret's (created or renewed here), the cert-manager client
// Secret's ca.crt, or the files-mode CA file.
func (k *Keeper) syncClientCA(ctx context.Context) error {
	var ca []byte
	switch k.o.Mode {
	case ModeSelfManaged:
		b, err := k.selfManaged(ctx, k.clientIssuer())
		if err != nil {
			return err
		}
		ca = b.CA
	case ModeCertManager:
		secret := &corev1.Secret{}
		if err := k.o.Host.Get(ctx, types.NamespacedName{Namespace: k.o.Namespace, Name: k.o.ClientSecretName}, secret); err != nil {
			return fmt.Errorf("reading client certificate Secret %s: %w", k.o.ClientSecretName, err)
		}
		if ca = secret.Data[CAFile]; len(ca) == 0 {
			return fmt.Errorf("client certificate Secret %s has no %s: use an issuer that publishes its CA", k.o.ClientSecretName, CAFile)
		}
	case ModeFiles:
		data, err := os.ReadFile(k.o.ClientCAFile)
		if err != nil {
			return fmt.Errorf("reading client CA: %w", err)
		}
		ca = data
	}
	changed, err := k.clients.SetCAs(ca, k.o.Clock.Now())
	if err != nil {
		return fmt.Errorf("client CA of mode %s: %w", k.o.Mode, err)
	}
	if changed {
		logf.FromContext(ctx).Info("Loaded the client CA callers must present a certificate of", "mode", k.o.Mode, "commonName", k.o.ClientCommonName)
	}
	return nil
}

// issuer is what selfManaged keeps in one Secret: the serving certificate
// or the virtual apiserver's client certificate.
type issuer struct {
	what   string
	secret string
	fresh  func(now time.Time, validity time.Duration) (*Bundle, error)
	renew  func(b *Bundle, now time.Time, validity time.Duration) (*Bundle, error)
}

func (k *Keeper) servingIssuer() issuer {
	return issuer{
		what:   "webhook serving certificate",
		secret: k.o.SecretName,
		fresh: func(now time.Time, validity time.Duration) (*Bundle, error) {
			return NewSelfSigned(k.o.Hosts, now, validity)
		},
		renew: func(b *Bundle, now time.Time, validity time.Duration) (*Bundle, error) {
			return b.Renew(k.o.Hosts, now, validity)
		},
	}
}

func (k *Keeper) clientIssuer() issuer {
	return issuer{
		what:   "virtual apiserver client certificate",
		secret: k.o.ClientSecretName,
		fresh: func(now time.Time, validity time.Duration) (*Bundle, error) {
			return NewClient(k.o.ClientCommonName, now, validity)
		},
		renew: func(b *Bundle, now time.Time, validity time.Duration) (*Bundle, error) {
			return b.RenewClient(k.o.ClientCommonName, now, validity)
		},
	}
}

// selfManaged loads the shared Secret of is, creating it or renewing its
// certificate when a third of its validity is left. Replicas race on the
// Secret's resource version: the loser reads the winner's certificate.
func (k *Keeper) selfManaged(ctx context.Context, is issuer) (*Bundle, error) {
	now := k.o.Clock.Now()
	key := types.NamespacedName{Namespace: k.o.Namespace, Name: is.secret}
	secret := &corev1.Secret{}
	err := k.o.Host.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		b, err := is.fresh(now, k.o.Validity)
		if err != nil {
			return nil, err
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "podbridge"}},
			Type:       corev1.SecretTypeTLS,
			Data:       b.secretData(),
		}
		ownership.Mark(&secret.ObjectMeta, k.o.VCluster)
		if err := k.o.Host.Create(ctx, secret); err != nil {
			return nil, fmt.Errorf("creating %s Secret %s: %w", is.what, key.Name, err) // AlreadyExists: another replica won; next pass reads it.
		}
		logf.FromContext(ctx).Info("Created self-managed certificate", "certificate", is.what, "secret", key.Name)
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s Secret %s: %w", is.what, key.Name, err)
	}
	// Neither trusted nor renewed unless it is this virtual cluster's: a
	// Secret of the same name may be another podbridge's in this namespace.
	if err := ownership.Check(secret, "Secret", k.o.VCluster); err != nil {
		return nil, &NotOwnedError{What: is.what, Err: err}
	}
	b := bundleFrom(secret.Data)
	cert, certErr := parseCert(b.Cert)
	if certErr == nil && cert.NotAfter.Sub(now) > k.o.Validity/3 {
		return b, nil
	}
	renew := is.renew
	if ca, err := parseCert(b.CA); err != nil || ca.NotAfter.Sub(now) < k.o.Validity {
		// The CA would cut the new certificate short: start a new CA. The
		// old one stays trusted (injected bundle, client CAs) while it is
		// valid.
		renew = func(_ *Bundle, now time.Time, validity time.Duration) (*Bundle, error) {
			return is.fresh(now, validity)
		}
	}
	renewed, err := renew(b, now, k.o.Validity)
	if err != nil {
		return nil, fmt.Errorf("renewing %s: %w", is.what, err)
	}
	secret.Data = renewed.secretData()
	if err := k.o.Host.Update(ctx, secret); err != nil {
		return nil, fmt.Errorf("storing renewed %s: %w", is.what, err) // Conflict: another replica renewed first.
	}
	logf.FromContext(ctx).Info("Renewed self-managed certificate", "certificate", is.what, "secret", key.Name, "notAfter", now.Add(k.o.Validity))
	return renewed, nil
}

// NotOwnedError says a self-managed Secret of the expected name is not
// this virtual cluster's: podbridge neither uses nor overwrites it.
type NotOwnedError struct {
	What string // which certificate the Secret was to hold
	Err  error
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("refusing the Secret for the %s: %v", e.What, e.Err)
}

func (e *NotOwnedError) Unwrap() error { return e.Err }

// reportCertificate tells, once per change, whether cert-manager has the
// Certificate ready: an event on it and a log line when it is not.
func (k *Keeper) reportCertificate(ctx context.Context) {
	if k.o.CertificateName == "" {
		return
	}
	crt := &cmapi.Certificate{}
	if err := k.o.Host.Get(ctx, types.NamespacedName{Namespace: k.o.Namespace, Name: k.o.CertificateName}, crt); err != nil {
		logf.FromContext(ctx).Error(err, "Reading Certificate failed", "certificate", k.o.CertificateName)
		return
	}
	ready, reason, message := false, "NoReadyCondition", "cert-manager has not reported on the Certificate yet"
	for _, c := range crt.Status.Conditions {
		if c.Type == cmapi.CertificateConditionReady {
			ready, reason, message = c.Status == cmmeta.ConditionTrue, c.Reason, c.Message
		}
	}
	if ready == !k.notReady {
		return
	}
	k.notReady = !ready
	if ready {
		logf.FromContext(ctx).Info("Certificate is ready", "certificate", k.o.CertificateName)
		return
	}
	logf.FromContext(ctx).Info("Certificate is not ready: the webhook keeps its current certificate", "certificate", k.o.CertificateName, "reason", reason, "message", message)
	if k.o.Recorder != nil {
		k.o.Recorder.Eventf(crt, nil, corev1.EventTypeWarning, "CertificateNotReady", "WaitForCertificate", "podbridge is waiting for this Certificate: %s: %s", reason, message)
	}
}

func (b *Bundle) secretData() map[string][]byte {
	return map[string][]byte{CertFile: b.Cert, KeyFile: b.Key, CAFile: b.CA, CAKeyFile: b.CAKey}
}

func bundleFrom(data map[string][]byte) *Bundle {
	return &Bundle{CA: data[CAFile], CAKey: data[CAKeyFile], Cert: data[CertFile], Key: data[KeyFile]}
}

// writeIfChanged writes b into dir unless dir holds it already.
func writeIfChanged(dir string, b *Bundle) error {
	current, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err == nil && bytes.Equal(current, b.Cert) {
		return nil
	}
	return b.WriteDir(dir)
}
