package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/vcluster"
)

// The control-plane pod's virtual apiserver keeps presenting podbridge's
// webhook client certificate after podbridge renews it, without a
// restart: a real kube-apiserver reads the copy the certs container keeps
// (vcluster.KeepCopies, from the host Secret, into the file its
// admission kubeconfig names). After the Secret is replaced by a
// certificate of a new CA and the webhook trusts only that CA, admission
// goes on working, and every request presents the new certificate's
// serial.
func TestAPIServerPresentsTheRenewedWebhookClientCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const ns, name = "vc-rotate", "rotate"
	if err := hostClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// What the control-plane pod's init container makes, on a real host.
	dir := t.TempDir()
	o := vcluster.InitOptions{
		Host: hostClient, Dir: dir, VCluster: name, Namespace: ns,
		APIServerService: name + "-apiserver", APIServerIP: "10.0.3.19", ClusterDomain: "cluster.local",
		KubeconfigSecret: name + "-kubeconfig", ClientCASecret: name + "-webhook-client-tls", KubeletCertSecret: name + "-kubelet-tls",
	}
	if err := vcluster.Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	old := readClientSecret(ctx, t, ns, o.ClientCASecret)

	// A webhook that records the serial of the client certificate each
	// request presents and trusts only the CAs it is told to, answering
	// each request on a connection of its own (no keep-alive), so each
	// request is a handshake with the certificate the apiserver holds then.
	hook := newSerialWebhook(t, old.CA)

	// A real virtual apiserver whose admission kubeconfig names the copy,
	// as the control-plane pod's does.
	pair := filepath.Join(dir, "pki", vcluster.CertCopiesDir, vcluster.WebhookClientFile)
	planeDir, err := os.MkdirTemp("", "podbridge-rotate-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(planeDir)
	plane, err := controlplane.StartVirtual(ctx, controlplane.Options{Assets: env.Options.Assets, Dir: planeDir,
		WebhookClient: &controlplane.WebhookClient{Names: []string{"*"}, CertFile: pair, KeyFile: pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := plane.Stop(); err != nil {
			t.Errorf("stopping the virtual control plane: %v", err)
		}
	}()
	virtual, err := testClient(plane.Config)
	if err != nil {
		t.Fatal(err)
	}
	const watched = "rotation"
	if err := virtual.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: watched}}); err != nil {
		t.Fatal(err)
	}
	// Mutating: the admission configuration gives the client certificate
	// to the MutatingAdmissionWebhook plugin, podbridge's.
	registration := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "serials"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "serials.podbridge.io",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds:          ptr.To[int32](5),
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(hook.url), CABundle: hook.servingCA},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: watched}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
		}},
	}
	if err := virtual.Create(ctx, registration); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	admitted := func(want *big.Int) func(ctx context.Context) (bool, string) {
		return func(ctx context.Context) (bool, string) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: fmt.Sprintf("cm-%d", n.Add(1))}}
			if err := virtual.Create(ctx, cm); err != nil {
				return false, err.Error()
			}
			got := hook.last()
			return got != nil && got.Cmp(want) == 0, fmt.Sprintf("admitted presenting serial %v, want %v", got, want)
		}
	}
	eventually(t, time.Minute, "a ConfigMap admitted with the first client certificate", admitted(serialOf(t, old.Cert)))

	// podbridge renews the certificate, here under a new CA (as
	// self-managed mode does when the CA would cut it short); the webhook
	// then trusts that CA alone.
	renewed, err := certs.NewClient(certs.ClientCommonNameFor(ns, name), time.Now(), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.ClientCASecret}, secret); err != nil {
		t.Fatal(err)
	}
	secret.Data = map[string][]byte{certs.CAFile: renewed.CA, certs.CAKeyFile: renewed.CAKey, certs.CertFile: renewed.Cert, certs.KeyFile: renewed.Key}
	if err := hostClient.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	hook.trustOnly(renewed.CA)
	// Nothing has copied the renewal yet: the apiserver still presents
	// the old certificate, which the webhook now refuses.
	refused := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "before-the-copy"}}
	if err := virtual.Create(ctx, refused); err == nil || !strings.Contains(err.Error(), `failed calling webhook "serials.podbridge.io"`) {
		t.Fatalf("a create before the copy was refreshed: %v, want the webhook call to fail", err)
	}
	// The certs container, checking often, refreshes the copy; the
	// apiserver, still running, presents the renewed certificate.
	copies, stopCopies := context.WithCancel(ctx)
	copiesDone := make(chan error, 1)
	go func() { copiesDone <- vcluster.KeepCopies(copies, o, 200*time.Millisecond) }()
	defer func() {
		stopCopies()
		if err := <-copiesDone; err != nil {
			t.Errorf("KeepCopies: %v", err)
		}
	}()
	newSerial := serialOf(t, renewed.Cert)
	eventually(t, 30*time.Second, "a ConfigMap admitted with the renewed client certificate", admitted(newSerial))
	// From then on, every request presents the renewed certificate.
	for range 5 {
		if ok, seen := admitted(newSerial)(ctx); !ok {
			t.Fatalf("after the renewal was picked up: %s", seen)
		}
	}
}

func readClientSecret(ctx context.Context, t *testing.T, namespace, name string) *certs.Bundle {
	t.Helper()
	secret := &corev1.Secret{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret); err != nil {
		t.Fatal(err)
	}
	return &certs.Bundle{CA: secret.Data[certs.CAFile], Cert: secret.Data[certs.CertFile], Key: secret.Data[certs.KeyFile]}
}

func serialOf(t *testing.T, certPEM []byte) *big.Int {
	t.Helper()
	return parseCert(t, certPEM).SerialNumber
}

// serialWebhook is a mutating webhook on loopback that admits
// everything from a client certificate of the CAs it trusts and records
// the serial each request presented.
type serialWebhook struct {
	url       string
	servingCA []byte

	mu         sync.Mutex
	pool       *x509.CertPool
	lastSerial *big.Int
}

func newSerialWebhook(t *testing.T, clientCA []byte) *serialWebhook {
	t.Helper()
	serving, err := certs.NewSelfSigned([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.Cert, serving.Key)
	if err != nil {
		t.Fatal(err)
	}
	w := &serialWebhook{servingCA: serving.CA}
	w.trustOnly(clientCA)
	base := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientAuth = tls.RequireAndVerifyClientCert
		w.mu.Lock()
		c.ClientCAs = w.pool
		w.mu.Unlock()
		return c, nil
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.url = "https://" + listener.Addr().String() + "/"
	// Refused handshakes are the point of the test, not news.
	srv := &http.Server{Handler: http.HandlerFunc(w.serve), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	srv.SetKeepAlivesEnabled(false)
	srv.TLSConfig = base
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(listener, "", "") }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the serial webhook: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("the serial webhook: %v", err)
		}
	})
	return w
}

func (w *serialWebhook) trustOnly(ca []byte) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	w.mu.Lock()
	w.pool = pool
	w.mu.Unlock()
}

func (w *serialWebhook) last() *big.Int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastSerial
}

func (w *serialWebhook) serve(rw http.ResponseWriter, r *http.Request) {
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(r.Body).Decode(review); err != nil || review.Request == nil {
		http.Error(rw, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.lastSerial = r.TLS.PeerCertificates[0].SerialNumber
	w.mu.Unlock()
	review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	review.Request = nil
	rw.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(rw).Encode(review); err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
	}
}
