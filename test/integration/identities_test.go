package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

// A platform that signs every virtual apiserver's client certificate with
// one CA (files mode with a CA of its own, or one cert-manager issuer for
// all) gives each the name its own podbridge expects. The certificate
// another virtual cluster's apiserver holds, from the CA the dev podbridge
// trusts, is refused in the handshake; the dev virtual apiserver's is
// answered. With one name for every virtual cluster, each would be
// answered: that apiserver could have the dev podbridge make host pods.
func TestAnotherVirtualClustersClientCertificateIsRefused(t *testing.T) {
	ctx := context.Background()
	reg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtualClient.Get(ctx, client.ObjectKey{Name: "podbridge"}, reg); err != nil {
		t.Fatal(err)
	}
	url, caBundle := *reg.Webhooks[0].ClientConfig.URL, reg.Webhooks[0].ClientConfig.CABundle
	tc := env.Options.Translate
	pod := simplePod("default", "identity-probe")
	// The dev virtual apiserver's own certificate passes both handshakes
	// (once the reflector's kubelet API listens), so the refusals below
	// are the name's doing.
	if status, err := postReview(asVirtualAPIServer(t, caBundle), url, "own-apiserver", pod, true); err != nil || status != http.StatusOK {
		t.Fatalf("the dev virtual apiserver's own certificate: HTTP %d, %v", status, err)
	}
	own := keyPair(t, env.WebhookClient.Bundle)
	eventually(t, 30*time.Second, "the kubelet API to answer the dev virtual apiserver", func(context.Context) (bool, string) {
		resp, err := kubeletClient(&own).Get(kubeletURL("/containerLogs/default/any/app"))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close() // any HTTP answer: the handshake passed
		return true, ""
	})
	for _, other := range []struct{ name, namespace, vcluster string }{
		{"another virtual cluster in this host namespace", tc.HostNamespace, "other"},
		{"a virtual cluster of the same name in another host namespace", "elsewhere", tc.VCluster},
	} {
		t.Run(other.name, func(t *testing.T) {
			// Issued as podbridge issues it, under the CA the dev podbridge trusts.
			theirs, err := env.WebhookClient.Bundle.RenewClient(certs.ClientCommonNameFor(other.namespace, other.vcluster), time.Now(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			cfg := asVirtualAPIServer(t, caBundle)
			cfg.Certificates[0] = keyPair(t, theirs)
			status, err := postReview(cfg, url, "other-apiserver", pod, true)
			if err == nil {
				t.Errorf("the dev podbridge's webhook answered another virtual cluster's apiserver: HTTP %d", status)
			} else if !strings.Contains(err.Error(), "tls:") {
				t.Errorf("the webhook refused, but not in the TLS handshake: %v", err)
			}
			// The kubelet API (logs, exec, attach, port-forward) checks the
			// same name.
			cert := keyPair(t, theirs)
			resp, err := kubeletClient(&cert).Get(kubeletURL("/containerLogs/default/any/app"))
			if err == nil {
				resp.Body.Close()
				t.Errorf("the dev podbridge's kubelet API answered another virtual cluster's apiserver: HTTP %d", resp.StatusCode)
			} else if !strings.Contains(err.Error(), "tls:") {
				t.Errorf("the kubelet API refused, but not in the TLS handshake: %v", err)
			}
		})
	}
}

// A second podbridge in the dev host namespace whose arguments name Secrets
// that are not its own (the dev podbridge's, as when a kustomize namePrefix
// did not reach the arguments, or one nothing marks as anyone's) refuses
// to start, naming the Secret and why, and leaves the Secret as it was.
// Adopting the dev podbridge's client CA would have it answer the dev
// virtual apiserver; adopting its serving Secret, serve with its key.
func TestSelfManagedWebhookAdoptsOnlyItsOwnSecrets(t *testing.T) {
	ctx := context.Background()
	secondVirtual(t)
	ns := env.Options.Translate.HostNamespace
	unmarked := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unmarked-client-tls", Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue}},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			certs.CertFile: env.WebhookClient.Bundle.Cert, certs.KeyFile: env.WebhookClient.Bundle.Key,
			certs.CAFile: env.WebhookClient.Bundle.CA, certs.CAKeyFile: env.WebhookClient.Bundle.CAKey,
		},
	}
	if err := hostClient.Create(ctx, unmarked); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), unmarked) })
	for _, tc := range []struct {
		name                 string
		serving, clientCerts string
		refused, why         string
	}{
		{"the dev podbridge's client CA", "adopter-tls", certs.DefaultClientSecretName, certs.DefaultClientSecretName, `belongs to virtual cluster "dev"`},
		{"the dev podbridge's serving certificate", "podbridge-webhook-tls", "adopter-client-tls", "podbridge-webhook-tls", `belongs to virtual cluster "dev"`},
		{"a Secret with podbridge's label and no owner", "adopter-tls", unmarked.Name, unmarked.Name, "carries no podbridge.io/owner annotation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := &corev1.Secret{}
			if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: tc.refused}, before); err != nil {
				t.Fatal(err)
			}
			translation := env.Options.Translate
			translation.VCluster = "adopter"
			translation = ownAccount(t, translation)
			t.Cleanup(func() {
				for _, name := range []string{"adopter-tls", "adopter-client-tls"} {
					_ = hostClient.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
				}
			})
			startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, err := webhook.New(startCtx, webhook.Options{
				Host: env.Host.Config, Virtual: second.Config, Translate: translation, PodSecurityLevel: "baseline",
				HostTimeout: 5 * time.Second, BindAddress: "127.0.0.1", Port: freeTestPort(t), Limits: caps.Limits{},
				Certs: certs.Options{
					Mode: certs.ModeSelfManaged, SecretName: tc.serving, ClientSecretName: tc.clientCerts,
					ClientCommonName: devClientCommonName(), CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"},
				},
				MetricsBindAddress: "0", HealthProbeBindAddress: "0",
				Registration: webhook.Registration{Name: "adopter"},
			})
			if err == nil {
				t.Fatalf("a podbridge of virtual cluster %q started with Secret %s", translation.VCluster, tc.refused)
			}
			for _, want := range []string{"Secret " + ns + "/" + tc.refused, tc.why} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not say %q", err, want)
				}
			}
			if startCtx.Err() != nil {
				t.Errorf("refused only when its wait ran out: %v", err)
			}
			after := &corev1.Secret{}
			if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: tc.refused}, after); err != nil {
				t.Fatal(err)
			}
			if after.ResourceVersion != before.ResourceVersion {
				t.Errorf("Secret %s was changed (resourceVersion %s → %s)", tc.refused, before.ResourceVersion, after.ResourceVersion)
			}
		})
	}
}

// A second podbridge in the dev host namespace told to run its host pods
// as the dev virtual cluster's account (as the one default account did for
// every virtual cluster), or as an account nothing marks as its own,
// refuses to start, naming the account and why: host policies that tell
// tenants apart by service account (a mesh's or a CNI's identities, a
// cloud's workload identity) would take its tenant's pods for the dev
// tenant's. Its own account, fit and marked, is accepted.
func TestHostServiceAccountOfAnotherVirtualClusterIsRefused(t *testing.T) {
	ctx := context.Background()
	secondVirtual(t)
	ns := env.Options.Translate.HostNamespace
	unmarked := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unmarked-workloads"}, AutomountServiceAccountToken: ptr.To(false)}
	if err := hostClient.Create(ctx, unmarked); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), unmarked) })
	borrower := env.Options.Translate
	borrower.VCluster = "borrower"
	own := ownAccount(t, borrower).HostServiceAccount
	for _, tc := range []struct {
		name, account, why string
	}{
		{"the dev virtual cluster's account", env.Options.Translate.HostServiceAccount, `belongs to virtual cluster "dev"`},
		{"an account nothing marks as anyone's", unmarked.Name, "carries no podbridge.io/owner annotation"},
		{"its own account", own, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			translation := borrower
			translation.HostServiceAccount = tc.account
			startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			t.Cleanup(func() {
				for _, name := range []string{"borrower-tls"} {
					_ = hostClient.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
				}
			})
			_, err := webhook.New(startCtx, webhook.Options{
				Host: env.Host.Config, Virtual: second.Config, Translate: translation, PodSecurityLevel: "baseline",
				HostTimeout: 5 * time.Second, BindAddress: "127.0.0.1", Port: freeTestPort(t), Limits: caps.Limits{},
				Certs: secondClientCerts(t, translation, certs.Options{
					Mode: certs.ModeSelfManaged, SecretName: "borrower-tls", CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"},
				}),
				MetricsBindAddress: "0", HealthProbeBindAddress: "0",
				Registration: webhook.Registration{Name: "borrower"},
			})
			// The reflector makes host pods again from stored pods: it checks
			// the account as the webhook does.
			_, reflectorErr := reflector.NewManager(reflector.Options{
				Host: env.Host.Config, Virtual: second.Config, Translate: translation, OrphanGracePeriod: time.Minute,
				MetricsBindAddress: "0", HealthProbeBindAddress: "0", SkipControllerNameValidation: true,
			})
			for component, err := range map[string]error{"webhook": err, "reflector": reflectorErr} {
				if tc.why == "" {
					if err != nil {
						t.Errorf("the %s refused its own account: %v", component, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("the %s of virtual cluster %q started to run its host pods as %s/%s", component, translation.VCluster, ns, tc.account)
					continue
				}
				for _, want := range []string{"--host-service-account", "ServiceAccount " + ns + "/" + tc.account, tc.why} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the %s's refusal %q does not say %q", component, err, want)
					}
				}
			}
		})
	}
}
