package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

// certTestLabel selects the pods a certificate test's webhook sees, so it
// stays out of every other test's way.
const certTestLabel = "podbridge-cert-test"

// In cert-manager mode, podbridge injects the CA of a Secret shaped like
// cert-manager's into the virtual cluster, follows a renewal to a new CA
// while the webhook keeps answering, and reports a Certificate that is not
// ready.
func TestCertManagerModeInjectsAndFollowsRenewal(t *testing.T) {
	ctx := context.Background()
	installCertManagerCRDs(t)
	ns := env.Options.Translate.HostNamespace
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: "cm-test", Namespace: ns},
		Spec: cmapi.CertificateSpec{
			SecretName: "cm-test-tls", DNSNames: []string{"localhost"}, IPAddresses: []string{"127.0.0.1"},
			IssuerRef: cmmeta.IssuerReference{Name: "podbridge-ca", Kind: "Issuer"},
		},
	}
	if err := hostClient.Create(ctx, crt); err != nil {
		t.Fatal(err)
	}
	setCertificateReady(t, crt, cmmeta.ConditionTrue)

	certDir := t.TempDir()
	first := newServingBundle(t)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cm-test-tls", Namespace: ns, Annotations: map[string]string{"cert-manager.io/certificate-name": "cm-test"}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{certs.CertFile: first.Cert, certs.KeyFile: first.Key, certs.CAFile: first.CA},
	}
	if err := hostClient.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	mountSecret(t, secret, certDir) // what the kubelet does with the mounted Secret

	hook := startCertTestWebhook(t, "zz-cert-manager", certs.Options{
		Mode: certs.ModeCertManager, SecretName: secret.Name, CertificateName: crt.Name, CertDir: certDir, Interval: 200 * time.Millisecond,
	})
	waitForBundle(t, hook.name, first.CA)
	hook.mustAnswer(t)

	// Renewal to a new CA: cert-manager updates the Secret, podbridge
	// injects the new CA (keeping the old one), then the kubelet updates
	// the mounted files and the server reloads them.
	second := newServingBundle(t)
	secret.Data = map[string][]byte{certs.CertFile: second.Cert, certs.KeyFile: second.Key, certs.CAFile: second.CA}
	if err := hostClient.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	waitForBundle(t, hook.name, second.CA, first.CA)
	hook.mustAnswer(t)
	mountSecret(t, secret, certDir)
	eventually(t, 30*time.Second, "the server to serve the renewed certificate", func(context.Context) (bool, string) {
		served, err := servedCertificate(hook.port)
		return err == nil && bytes.Equal(served, pemBody(t, second.Cert)), fmt.Sprint(err)
	})
	hook.mustAnswer(t)

	setCertificateReady(t, crt, cmmeta.ConditionFalse)
	eventually(t, 30*time.Second, "a CertificateNotReady event", func(ctx context.Context) (bool, string) {
		events := &corev1.EventList{}
		if err := hostClient.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Reason == "CertificateNotReady" && e.InvolvedObject.Name == crt.Name {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(events.Items))
	})
}

// In self-managed mode, two replicas share one certificate through a host
// Secret and both follow its renewal, while the webhook keeps answering.
func TestSelfManagedModeSharesAndRenews(t *testing.T) {
	ctx := context.Background()
	opts := func() certs.Options {
		return certs.Options{
			Mode: certs.ModeSelfManaged, SecretName: "self-test-tls", CertDir: t.TempDir(),
			Hosts: []string{"127.0.0.1", "localhost"}, Validity: 9 * time.Second, Interval: 200 * time.Millisecond,
		}
	}
	a := startCertTestWebhook(t, "zz-self-managed", opts())
	b := startCertTestWebhook(t, "zz-self-managed-b", opts())
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: env.Options.Translate.HostNamespace, Name: "self-test-tls"}
	if err := hostClient.Get(ctx, key, secret); err != nil {
		t.Fatalf("shared Secret: %v", err)
	}
	for _, hook := range []*certTestWebhook{a, b} {
		if ca, _ := os.ReadFile(filepath.Join(hook.certDir, certs.CAFile)); !bytes.Equal(ca, secret.Data[certs.CAFile]) {
			t.Errorf("replica %s does not serve under the shared CA", hook.name)
		}
		waitForBundle(t, hook.name, secret.Data[certs.CAFile])
		hook.mustAnswer(t)
	}
	firstCert := secret.Data[certs.CertFile]
	eventually(t, 30*time.Second, "the shared certificate to be renewed", func(ctx context.Context) (bool, string) {
		err := hostClient.Get(ctx, key, secret)
		return err == nil && !bytes.Equal(secret.Data[certs.CertFile], firstCert), fmt.Sprint(err)
	})
	for _, hook := range []*certTestWebhook{a, b} {
		eventually(t, 30*time.Second, hook.name+" to serve the renewed certificate", func(context.Context) (bool, string) {
			served, err := servedCertificate(hook.port)
			return err == nil && !bytes.Equal(served, pemBody(t, firstCert)), fmt.Sprint(err)
		})
		hook.mustAnswer(t)
	}
}

type certTestWebhook struct {
	name, certDir string
	port          int
}

// startCertTestWebhook runs a second podbridge webhook for virtual cluster
// "certtest" (see startExtraWebhook).
func startCertTestWebhook(t *testing.T, name string, certOpts certs.Options) *certTestWebhook {
	t.Helper()
	tc := env.Options.Translate
	tc.VCluster = "certtest"
	return startExtraWebhook(t, name, tc, certOpts)
}

// startExtraWebhook runs another podbridge webhook with translation tc,
// registered in the second virtual cluster for pods labelled
// certTestLabel=name (one virtual cluster has one podbridge: a second one
// would rightly refuse the first one's sync IDs).
func startExtraWebhook(t *testing.T, name string, tc translate.Config, certOpts certs.Options) *certTestWebhook {
	t.Helper()
	return startExtraWebhookWithLimits(t, name, tc, certOpts, caps.Limits{})
}

// startExtraWebhookWithLimits is startExtraWebhook with caps.
func startExtraWebhookWithLimits(t *testing.T, name string, tc translate.Config, certOpts certs.Options, limits caps.Limits) *certTestWebhook {
	t.Helper()
	tc = ownAccount(t, tc)
	ctx, cancel := context.WithCancel(context.Background())
	port := freeTestPort(t)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pods." + name + ".podbridge.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:" + strconv.Itoa(port) + webhook.Path)},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{certTestLabel: name}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	}
	virtual := secondVirtual(t)
	if err := virtual.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if certOpts.Mode != certs.ModeFiles && certOpts.ClientSecretName == "" {
		certOpts = secondClientCerts(t, tc, certOpts)
	}
	mgr, err := webhook.New(ctx, webhook.Options{
		Host: env.Host.Config, Virtual: second.Config, Translate: tc, PodSecurityLevel: "baseline",
		HostTimeout: 5 * time.Second, BindAddress: "127.0.0.1", Port: port, Certs: certOpts,
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", Limits: limits,
		Registration: webhook.Registration{Name: name}, // GitOps style: inject the CA only
	})
	if err != nil {
		t.Fatalf("starting webhook %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook %s: %v", name, err)
		}
		_ = virtual.Delete(context.Background(), cfg)
	})
	// Callers create pods at once: wait until the server listens.
	eventually(t, 30*time.Second, "webhook "+name+" to listen", func(context.Context) (bool, string) {
		_, err := servedCertificate(port)
		return err == nil, fmt.Sprint(err)
	})
	return &certTestWebhook{name: name, certDir: certOpts.CertDir, port: port}
}

// mustAnswer proves the webhook is trusted and answering: a dry-run create
// of a selected pod comes back with this webhook's host name.
func (h *certTestWebhook) mustAnswer(t *testing.T) {
	t.Helper()
	pod := simplePod("default", "cert-probe")
	pod.Labels[certTestLabel] = h.name
	if err := secondClient.Create(context.Background(), pod, client.DryRunAll); err != nil {
		t.Fatalf("webhook %s did not answer: %v", h.name, err)
	}
	if want := translate.HostName("cert-probe", "default", "certtest"); pod.Annotations[translate.AnnotationHostName] != want {
		t.Fatalf("webhook %s did not handle the pod: annotations %v", h.name, pod.Annotations)
	}
}

func waitForBundle(t *testing.T, name string, cas ...[]byte) {
	t.Helper()
	eventually(t, 30*time.Second, "CA bundle of "+name, func(ctx context.Context) (bool, string) {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := secondClient.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
			return false, err.Error()
		}
		bundle := cfg.Webhooks[0].ClientConfig.CABundle
		for _, ca := range cas {
			if !bytes.Contains(bundle, bytes.TrimSpace(ca)) {
				return false, fmt.Sprintf("bundle of %d bytes lacks an expected CA", len(bundle))
			}
		}
		return true, ""
	})
}

func newServingBundle(t *testing.T) *certs.Bundle {
	t.Helper()
	b, err := certs.NewSelfSigned([]string{"127.0.0.1", "localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mountSecret(t *testing.T, secret *corev1.Secret, dir string) {
	t.Helper()
	b := &certs.Bundle{CA: secret.Data[certs.CAFile], Cert: secret.Data[certs.CertFile], Key: secret.Data[certs.KeyFile]}
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
}

func setCertificateReady(t *testing.T, crt *cmapi.Certificate, status cmmeta.ConditionStatus) {
	t.Helper()
	ctx := context.Background()
	if err := hostClient.Get(ctx, client.ObjectKeyFromObject(crt), crt); err != nil {
		t.Fatal(err)
	}
	crt.Status.Conditions = []cmapi.CertificateCondition{{Type: cmapi.CertificateConditionReady, Status: status, Reason: "Test", Message: "set by the test", LastTransitionTime: ptr.To(metav1.Now())}}
	if err := hostClient.Status().Update(ctx, crt); err != nil {
		t.Fatal(err)
	}
}

// installCertManagerCRDs installs cert-manager's CRDs from its Go module
// into the host control plane.
func installCertManagerCRDs(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("locating the cert-manager module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := envtest.InstallCRDs(env.Host.Config, envtest.CRDInstallOptions{Paths: []string{dir}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing cert-manager CRDs: %v", err)
	}
}
