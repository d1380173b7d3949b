package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

// Issue 12's attack: a hand-written AdmissionReview POSTed over HTTPS to
// the webhook, by anyone who can reach it but the virtual apiserver, asks
// for a host pod that mounts a Secret of a virtual namespace. Every such
// caller is refused in the TLS handshake, and nothing reaches the host.
func TestWebhookRefusesUnauthenticatedCallers(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-password", Namespace: ns}, StringData: map[string]string{"password": "hunter2"}}
	if err := virtualClient.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	pod := simplePod(ns, "stolen")
	pod.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret.Name}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "s", MountPath: "/s"}}

	reg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtualClient.Get(ctx, client.ObjectKey{Name: "podbridge"}, reg); err != nil {
		t.Fatal(err)
	}
	url, caBundle := *reg.Webhooks[0].ClientConfig.URL, reg.Webhooks[0].ClientConfig.CABundle
	apiserverCA := env.WebhookClient.Bundle

	attacker, err := certs.NewClient(devClientCommonName(), time.Now(), time.Hour) // its own CA, the expected name
	if err != nil {
		t.Fatal(err)
	}
	callers := []struct {
		name string
		cert *certs.Bundle
	}{
		{"no client certificate", nil},
		{"certificate of the attacker's own CA", attacker},
		{"certificate of the right CA for server auth", signUnder(t, apiserverCA, x509.ExtKeyUsageServerAuth)},
		{"certificate of the right CA without extended key usage", signUnder(t, apiserverCA)},
	}
	for i, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: certPool(caBundle), MinVersion: tls.VersionTLS12}
			if c.cert != nil {
				cfg.Certificates = []tls.Certificate{keyPair(t, c.cert)}
			}
			status, err := postReview(cfg, url, "attack-"+strconv.Itoa(i), pod, false)
			if err == nil {
				t.Fatalf("the webhook answered HTTP %d", status)
			}
			if !strings.Contains(err.Error(), "tls:") {
				t.Errorf("refused, but not in the TLS handshake: %v", err)
			}
		})
	}
	// Control: the same review, as a dry run, from the virtual apiserver's
	// certificate gets an answer, so the refusals above are the client
	// certificate's doing and not a broken request.
	if status, err := postReview(asVirtualAPIServer(t, caBundle), url, "control", pod, true); err != nil || status != http.StatusOK {
		t.Fatalf("the virtual apiserver's certificate: HTTP %d, %v", status, err)
	}

	hostNS, vc := env.Options.Translate.HostNamespace, env.Options.Translate.VCluster
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: hostNS, Name: translate.HostName(pod.Name, ns, vc)}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("host pod of the forged review: %v, want NotFound", err)
	}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: hostNS, Name: translate.HostName(secret.Name, ns, vc)}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("host copy of the Secret: %v, want NotFound", err)
	}
}

// Self-managed mode issues the virtual apiserver's client certificate into
// its Secret when there is none, and the webhook accepts exactly the
// certificates of that Secret's CA.
func TestSelfManagedModeIssuesTheClientCertificate(t *testing.T) {
	ctx := context.Background()
	hook := startCertTestWebhook(t, "zz-client-issuer", certs.Options{
		Mode: certs.ModeSelfManaged, SecretName: "client-test-tls", ClientSecretName: "client-test-client-tls",
		CertDir: t.TempDir(), Hosts: []string{"127.0.0.1", "localhost"}, Interval: 200 * time.Millisecond,
	})
	issued := &corev1.Secret{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: env.Options.Translate.HostNamespace, Name: "client-test-client-tls"}, issued); err != nil {
		t.Fatalf("the client certificate Secret: %v", err)
	}
	serving := &corev1.Secret{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: env.Options.Translate.HostNamespace, Name: "client-test-tls"}, serving); err != nil {
		t.Fatal(err)
	}
	own := &certs.Bundle{CA: issued.Data[certs.CAFile], Cert: issued.Data[certs.CertFile], Key: issued.Data[certs.KeyFile]}
	url := "https://127.0.0.1:" + strconv.Itoa(hook.port) + webhook.Path
	pod := simplePod("default", "issuer-probe")
	for _, c := range []struct {
		name   string
		cert   *certs.Bundle
		answer bool
	}{
		{"the issued certificate", own, true},
		{"the dev virtual apiserver's certificate (another CA)", env.WebhookClient.Bundle, false},
	} {
		cfg := &tls.Config{RootCAs: certPool(serving.Data[certs.CAFile]), MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{keyPair(t, c.cert)}}
		_, err := postReview(cfg, url, "issuer", pod, true)
		if c.answer && err != nil {
			t.Errorf("%s: refused: %v", c.name, err)
		}
		if !c.answer && err == nil {
			t.Errorf("%s: answered", c.name)
		}
	}
}

// asVirtualAPIServer is a TLS client configuration that presents the
// client certificate the dev virtual apiserver presents, trusting the
// webhook's serving CA bundle.
func asVirtualAPIServer(t *testing.T, caBundle []byte) *tls.Config {
	t.Helper()
	return &tls.Config{RootCAs: certPool(caBundle), MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{keyPair(t, env.WebhookClient.Bundle)}}
}

// asSecondVirtualAPIServer is asVirtualAPIServer for the second virtual
// apiserver, whose podbridges trust its client certificate only.
func asSecondVirtualAPIServer(t *testing.T, caBundle []byte) *tls.Config {
	t.Helper()
	return &tls.Config{RootCAs: certPool(caBundle), MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{keyPair(t, secondClientCreds.Bundle)}}
}

// postReview POSTs an AdmissionReview creating pod and returns the HTTP
// status; err is set when no HTTP answer came.
func postReview(cfg *tls.Config, url, uid string, pod *corev1.Pod, dryRun bool) (int, error) {
	raw, err := json.Marshal(pod)
	if err != nil {
		return 0, err
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("forged-" + uid), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: pod.Namespace, Name: pod.Name, Operation: admissionv1.Create,
			Object: runtimeRaw(raw), DryRun: &dryRun,
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return 0, err
	}
	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer httpClient.CloseIdleConnections()
	resp, err := httpClient.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

func certPool(pemCerts []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCerts)
	return pool
}

func keyPair(t *testing.T, b *certs.Bundle) tls.Certificate {
	t.Helper()
	cert, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// signUnder issues a certificate for the expected name under b's CA with
// the given extended key usages: what a holder of that CA's key, or a
// shared CA, could hand out, though podbridge never would.
func signUnder(t *testing.T, b *certs.Bundle, usages ...x509.ExtKeyUsage) *certs.Bundle {
	t.Helper()
	caBlock, _ := pem.Decode(b.CA)
	keyBlock, _ := pem.Decode(b.CAKey)
	if caBlock == nil || keyBlock == nil {
		t.Fatal("the client CA or its key is not PEM")
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	leaf, key := newTestCert(t, &x509.Certificate{
		Subject:  pkix.Name{CommonName: devClientCommonName()},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
	}, &testPKI{cert: ca, key: caKey})
	return &certs.Bundle{CA: b.CA, Cert: leaf.pem, Key: key}
}

// devClientCommonName is the name on the dev virtual apiserver's client
// certificate, which its podbridge expects.
func devClientCommonName() string {
	return certs.ClientCommonNameFor(env.Options.Translate.HostNamespace, env.Options.Translate.VCluster)
}
