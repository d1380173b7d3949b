package integration

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// The tenant, cluster-admin of its virtual cluster, edits or deletes
// podbridge's MutatingWebhookConfiguration in every way that would let pods
// past podbridge's checks; podbridge restores each field, reports it in an
// event and a metric, and pods go through the webhook again afterwards.
func TestTenantCannotUnregisterTheWebhook(t *testing.T) {
	ctx := context.Background()
	key := client.ObjectKey{Name: "podbridge"}
	original := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtualClient.Get(ctx, key, original); err != nil {
		t.Fatal(err)
	}
	otherCA := newServingBundle(t).CA
	cases := []struct {
		name, field, cause string
		attack             func(*admissionregistrationv1.MutatingWebhookConfiguration)
	}{
		{"rules without pods/ephemeralcontainers", "rules", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			removed := false
			for i := range c.Webhooks {
				c.Webhooks[i].Rules = slices.DeleteFunc(c.Webhooks[i].Rules, func(r admissionregistrationv1.RuleWithOperations) bool {
					found := slices.Contains(r.Resources, "pods/ephemeralcontainers")
					removed = removed || found
					return found
				})
			}
			if !removed {
				t.Fatal("no rule for pods/ephemeralcontainers to remove")
			}
		}},
		{"failurePolicy Ignore", "failurePolicy", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
		}},
		{"namespaceSelector excluding every namespace", "namespaceSelector", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].NamespaceSelector = metav1LabelSelectorFor("no-namespace-has", "this-label")
		}},
		{"objectSelector excluding every pod", "objectSelector", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ObjectSelector = metav1LabelSelectorFor("no-pod-has", "this-label")
		}},
		{"timeout of 1 second", "timeoutSeconds", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].TimeoutSeconds = ptr.To[int32](1)
		}},
		{"CA bundle replaced", "caBundle", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = otherCA
			}
		}},
		{"match condition that matches nothing", "matchConditions", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "never", Expression: "false"}}
		}},
		{"webhook entry added to podbridge's configuration", "added", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			extra := *c.Webhooks[1].DeepCopy()
			extra.Name = "tenant.example.com"
			c.Webhooks = append(c.Webhooks, extra)
		}},
		{"create webhook rewired to the update guard's path", "clientConfig.url", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks[0].ClientConfig.URL = c.Webhooks[1].ClientConfig.URL
		}},
		{"ephemeral-container webhook removed", "removed", "edited", func(c *admissionregistrationv1.MutatingWebhookConfiguration) {
			c.Webhooks = slices.DeleteFunc(c.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool {
				return strings.HasPrefix(w.Name, "pod-ephemeralcontainers.")
			})
		}},
		{"configuration deleted", "deleted", "deleted", nil},
	}
	var took []time.Duration
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := metricSum(t, "podbridge_webhook_registration_restores_total", "cause", tc.cause)
			restored, elapsed := attackRegistration(t, key, original, tc.attack)
			took = append(took, elapsed)
			t.Logf("restored %s in %s", tc.name, elapsed)
			eventually(t, 15*time.Second, "the restore counted", func(context.Context) (bool, string) {
				got := metricSum(t, "podbridge_webhook_registration_restores_total", "cause", tc.cause)
				return got > before, fmt.Sprintf("%v restores, %v before", got, before)
			})
			eventually(t, 15*time.Second, "a RegistrationRestored event naming "+tc.field, func(ctx context.Context) (bool, string) {
				events := &eventsv1.EventList{}
				if err := virtualClient.List(ctx, events, client.InNamespace("default")); err != nil {
					return false, err.Error()
				}
				var notes []string
				for _, e := range events.Items {
					if e.Reason == "RegistrationRestored" && e.Regarding.Name == key.Name && e.Regarding.ResourceVersion == restored.ResourceVersion {
						if strings.Contains(e.Note, tc.field) && strings.Contains(e.Note, tc.cause) {
							return true, ""
						}
						notes = append(notes, e.Note)
					}
				}
				return false, fmt.Sprintf("events of this version: %q", notes)
			})
			// Pods go through podbridge again, once the apiserver's own
			// copy of the webhook configurations (an informer) has the
			// restored one: a dry-run create is mutated by podbridge.
			eventually(t, 15*time.Second, "a pod created after the restore goes through podbridge", func(ctx context.Context) (bool, string) {
				pod := simplePod("default", "after-restore-"+strings.ReplaceAll(strings.ToLower(tc.field), ".", "-"))
				if err := virtualClient.Create(ctx, pod, client.DryRunAll); err != nil {
					return false, fmt.Sprintf("pod create after the restore: %v", err)
				}
				return pod.Annotations[translate.AnnotationSyncID] != "", fmt.Sprintf("not through podbridge: annotations %v", pod.Annotations)
			})
		})
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	if len(took) > 0 {
		t.Logf("time to restore over %d attacks: p50 %s, max %s", len(took), took[len(took)/2], took[len(took)-1])
	}
	// A real create after all of that reaches the host.
	ns := namespace(t)
	pod := simplePod(ns, "after-attacks")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if _, err := getHostPod(ctx, pod); err != nil {
		t.Fatalf("host pod of a pod created after the attacks: %v", err)
	}
}

// attackRegistration makes the tenant's write (change, or a delete when
// change is nil) and waits, on a watch opened before the write, until the
// configuration's webhooks are original's again. It returns the restored
// object and the time from the write to seeing it.
func attackRegistration(t *testing.T, key client.ObjectKey, original *admissionregistrationv1.MutatingWebhookConfiguration, change func(*admissionregistrationv1.MutatingWebhookConfiguration)) (*admissionregistrationv1.MutatingWebhookConfiguration, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watcher, err := client.NewWithWatch(env.Virtual.Config, client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	current := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtualClient.Get(ctx, key, current); err != nil {
		t.Fatal(err)
	}
	w, err := watcher.Watch(ctx, &admissionregistrationv1.MutatingWebhookConfigurationList{},
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", key.Name)}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: current.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	start := time.Now()
	var tenantVersion string
	if change == nil {
		if err := virtualClient.Delete(ctx, current); err != nil {
			t.Fatalf("tenant's delete: %v", err)
		}
	} else {
		change(current)
		if err := virtualClient.Update(ctx, current); err != nil {
			t.Fatalf("tenant's edit: %v", err)
		}
		tenantVersion = current.ResourceVersion
	}
	sawAttack := false
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("configuration not restored within 30s (tenant's write seen: %v)", sawAttack)
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			cfg, isCfg := ev.Object.(*admissionregistrationv1.MutatingWebhookConfiguration)
			if !isCfg {
				continue
			}
			if ev.Type == watch.Deleted || cfg.ResourceVersion == tenantVersion {
				sawAttack = true
				continue
			}
			if sawAttack && ev.Type != watch.Deleted && apiequality.Semantic.DeepEqual(cfg.Webhooks, original.Webhooks) {
				return cfg, time.Since(start)
			}
		}
	}
}

// In GitOps mode (no registration URL) podbridge owns only the CA bundle
// of a configuration someone else applied: a replaced bundle comes back,
// the tenant's other changes stay.
func TestGitOpsRegistrationKeepsOnlyTheCABundle(t *testing.T) {
	ctx := context.Background()
	hook := startCertTestWebhook(t, "zz-gitops-keep", certsSelfManaged(t, "gitops-keep-tls"))
	secret := &corev1.Secret{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: env.Options.Translate.HostNamespace, Name: "gitops-keep-tls"}, secret); err != nil {
		t.Fatal(err)
	}
	waitForBundle(t, hook.name, secret.Data["ca.crt"])
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := secondClient.Get(ctx, client.ObjectKey{Name: hook.name}, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks[0].ClientConfig.CABundle = newServingBundle(t).CA
	cfg.Webhooks[0].TimeoutSeconds = ptr.To[int32](3)
	if err := secondClient.Update(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitForBundle(t, hook.name, secret.Data["ca.crt"])
	if err := secondClient.Get(ctx, client.ObjectKey{Name: hook.name}, cfg); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(cfg.Webhooks[0].TimeoutSeconds, 0); got != 3 {
		t.Errorf("GitOps-owned timeoutSeconds changed to %d", got)
	}
	if n := strings.Count(string(cfg.Webhooks[0].ClientConfig.CABundle), "BEGIN CERTIFICATE"); n != 1 {
		t.Errorf("restored bundle holds %d certificates, want podbridge's one", n)
	}
	hook.mustAnswer(t)
	if !slices.ContainsFunc(cfg.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool {
		return w.Name == "pods."+hook.name+".podbridge.io"
	}) {
		t.Errorf("webhook entry renamed: %v", cfg.Webhooks)
	}
}

func certsSelfManaged(t *testing.T, secret string) certs.Options {
	return certs.Options{
		Mode: certs.ModeSelfManaged, SecretName: secret, CertDir: t.TempDir(),
		Hosts: []string{"127.0.0.1", "localhost"}, Interval: 200 * time.Millisecond,
	}
}
