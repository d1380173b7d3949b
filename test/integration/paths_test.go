package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// The tenant, cluster-admin of its virtual cluster, wires webhooks of its
// own to podbridge's paths with the wrong rules: a pod create sent to the
// update guard or to the ephemeral-container check, a pod update and an
// ephemeral container sent to the create path. The virtual apiserver calls
// them with its client certificate, as it calls podbridge's own webhooks
// (and as it would call podbridge's, rewired, until the keeper restores
// them). Each path refuses the request naming itself, and nothing is
// created on the host: no host pod for the refused creates, and still the
// one host pod, unchanged, for the refused updates.
func TestRewiredWebhookCannotCrossPaths(t *testing.T) {
	ctx := context.Background()
	reg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtualClient.Get(ctx, client.ObjectKey{Name: "podbridge"}, reg); err != nil {
		t.Fatal(err)
	}
	urls := map[string]admissionregistrationv1.WebhookClientConfig{}
	for _, w := range reg.Webhooks {
		for _, path := range []string{translate.WebhookPath, translate.WebhookPathPodUpdate, translate.WebhookPathEphemeralContainers} {
			if strings.HasSuffix(*w.ClientConfig.URL, path) {
				urls[path] = w.ClientConfig
			}
		}
	}
	if len(urls) != 3 {
		t.Fatalf("podbridge's registration has webhooks at %d of its 3 paths: %v", len(urls), urls)
	}
	const label = "rewired.example.com/case"
	rewired := func(name, path string, op admissionregistrationv1.OperationType, resource string) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name + ".rewired.example.com",
			ClientConfig:            urls[path],
			AdmissionReviewVersions: []string{"v1"},
			// Fail-open, as a tenant would set it: a refusal is an answer,
			// not a failure, so it still refuses.
			FailurePolicy:  ptr.To(admissionregistrationv1.Ignore),
			SideEffects:    ptr.To(admissionregistrationv1.SideEffectClassNone),
			ObjectSelector: metav1LabelSelectorFor(label, name),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{op},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{resource}},
			}},
		}
	}
	// Named to sort before "podbridge": the apiserver calls mutating
	// webhooks in the order of their configurations' names, so a refused
	// create never reaches podbridge's own create webhook.
	tenant := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "a-tenant-rewired"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			rewired("create-to-update-guard", translate.WebhookPathPodUpdate, admissionregistrationv1.Create, "pods"),
			rewired("create-to-ephemeral-check", translate.WebhookPathEphemeralContainers, admissionregistrationv1.Create, "pods"),
			rewired("update-to-create", translate.WebhookPath, admissionregistrationv1.Update, "pods"),
			rewired("ephemeral-to-create", translate.WebhookPath, admissionregistrationv1.Update, "pods/ephemeralcontainers"),
		},
	}
	if err := virtualClient.Create(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), tenant) })
	ns := namespace(t)

	for _, tc := range []struct{ name, path string }{
		{"create-to-update-guard", translate.WebhookPathPodUpdate},
		{"create-to-ephemeral-check", translate.WebhookPathEphemeralContainers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(ns, tc.name)
			pod.Labels[label] = tc.name
			// The virtual apiserver may not see the new configuration yet:
			// until it does, the create goes through podbridge alone.
			eventuallyRefused(t, pod, tc.path)
			if hosts := hostPodsOf(t, pod); len(hosts) != 0 {
				t.Errorf("host pods after the refused create: %v", hosts)
			}
		})
	}

	for _, tc := range []struct {
		name, subresource string
		change            func(*corev1.Pod)
	}{
		{"update-to-create", "", func(p *corev1.Pod) { p.Labels["tier"] = "front" }},
		{"ephemeral-to-create", "ephemeralcontainers", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
				EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox"}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(ns, tc.name)
			pod.Labels[label] = tc.name
			if err := virtualClient.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
			before, err := getHostPod(ctx, pod)
			if err != nil {
				t.Fatal(err)
			}
			// The creates above were refused: the apiserver calls the
			// tenant's webhooks by now.
			err = updateVirtualPod(ctx, pod, tc.subresource, tc.change)
			if err == nil {
				t.Fatalf("admitted a %s sent to %s", tc.name, translate.WebhookPath)
			}
			if !strings.Contains(err.Error(), translate.WebhookPath) {
				t.Errorf("refusal does not name %s: %v", translate.WebhookPath, err)
			}
			hosts := hostPodsOf(t, pod)
			if len(hosts) != 1 || hosts[0].UID != before.UID || hosts[0].Annotations[translate.AnnotationSyncID] != before.Annotations[translate.AnnotationSyncID] {
				t.Errorf("host pods after the refused %s: %d, want the one made at its create (uid %s)", tc.name, len(hosts), before.UID)
			}
		})
	}
}

// eventuallyRefused creates pod until the virtual apiserver refuses it
// naming path (it may not see a new webhook configuration at once): a
// create admitted meanwhile is deleted, with its host pod, and tried again.
func eventuallyRefused(t *testing.T, pod *corev1.Pod, path string) {
	t.Helper()
	eventually(t, 20*time.Second, pod.Name+" refused by "+path, func(ctx context.Context) (bool, string) {
		try := pod.DeepCopy()
		err := virtualClient.Create(ctx, try)
		if err == nil {
			_ = virtualClient.Delete(ctx, try, client.GracePeriodSeconds(0))
			waitGone(t, virtualClient, try, 20*time.Second)
			if host, err := getHostPod(ctx, try); err == nil {
				waitGone(t, hostClient, host, 20*time.Second)
			}
			return false, "admitted: the apiserver did not call the tenant's webhook yet"
		}
		return strings.Contains(err.Error(), path), err.Error()
	})
}

// hostPodsOf lists the host pods that name pod as their virtual pod,
// whatever their host name.
func hostPodsOf(t *testing.T, pod *corev1.Pod) []corev1.Pod {
	t.Helper()
	cfg := env.Options.Translate
	list := &corev1.PodList{}
	if err := hostClient.List(context.Background(), list, client.InNamespace(cfg.HostNamespace),
		client.MatchingLabels{translate.LabelVCluster: cfg.VCluster, translate.LabelNamespace: pod.Namespace}); err != nil {
		t.Fatal(err)
	}
	var of []corev1.Pod
	for _, h := range list.Items {
		if h.Annotations[translate.AnnotationName] == pod.Name {
			of = append(of, h)
		}
	}
	return of
}
