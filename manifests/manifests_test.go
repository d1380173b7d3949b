// Package manifests holds podbridge's kustomize bases, components and
// overlays; its test checks that every overlay builds (`make manifests`).
// test/integration applies them to real apiservers with server-side dry-run.
package manifests

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podbridge/podbridge/internal/render"
	"github.com/podbridge/podbridge/webhook"
)

// TestOverlaysBuild builds every overlay and checks what a deployment of
// podbridge cannot do without.
func TestOverlaysBuild(t *testing.T) {
	overlays, err := filepath.Glob("overlays/*")
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objects, err := render.Kustomization(dir)
			if err != nil {
				t.Fatal(err)
			}
			prefix := ""
			if !strings.HasSuffix(dir, "-virtual") {
				prefix = instancePrefix(t, objects)
			}
			var kinds []string
			for _, o := range objects {
				kinds = append(kinds, o.GetKind()+"/"+strings.TrimPrefix(o.GetName(), prefix))
				if strings.Contains(o.GetName(), "NAMESPACE") {
					t.Errorf("%s/%s keeps a placeholder name", o.GetKind(), o.GetName())
				}
			}
			want := []string{"Deployment/podbridge-webhook", "Deployment/podbridge-reflector", "Service/podbridge-webhook", "PodDisruptionBudget/podbridge-webhook", "Role/podbridge", "ServiceAccount/podbridge",
				"NetworkPolicy/podbridge-webhook", "ConfigMap/podbridge-virtual-apiserver-admission"}
			if strings.HasSuffix(dir, "-virtual") {
				want = []string{"MutatingWebhookConfiguration/podbridge", "ClusterRole/podbridge", "ClusterRoleBinding/podbridge"}
			}
			for _, w := range want {
				if !slices.Contains(kinds, w) {
					t.Errorf("%s lacks %s (has %v)", dir, w, kinds)
				}
			}
		})
	}
}

// The GitOps registration registers what podbridge registers itself:
// the same webhooks, rules, match conditions, failure policies and side effects.
func TestVirtualRegistrationMatchesPodbridge(t *testing.T) {
	objects, err := render.Kustomization("overlays/example-virtual")
	if err != nil {
		t.Fatal(err)
	}
	var got *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objects {
		if o.GetKind() == "MutatingWebhookConfiguration" {
			got = &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, got); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got == nil {
		t.Fatal("no MutatingWebhookConfiguration in overlays/example-virtual")
	}
	want := webhook.Registration{Name: got.Name, TimeoutSeconds: 10}.Configuration()
	if len(got.Webhooks) != len(want.Webhooks) {
		t.Fatalf("%d webhooks, podbridge registers %d", len(got.Webhooks), len(want.Webhooks))
	}
	for i, w := range want.Webhooks {
		g := got.Webhooks[i]
		if g.Name != w.Name || *g.FailurePolicy != *w.FailurePolicy || *g.SideEffects != *w.SideEffects ||
			*g.TimeoutSeconds != *w.TimeoutSeconds || !apiequality.Semantic.DeepEqual(g.Rules, w.Rules) ||
			!apiequality.Semantic.DeepEqual(g.MatchConditions, w.MatchConditions) {
			t.Errorf("webhook %d: %s failurePolicy %s sideEffects %s timeout %d rules %+v matchConditions %+v; podbridge registers %s %s %s %d %+v %+v",
				i, g.Name, *g.FailurePolicy, *g.SideEffects, *g.TimeoutSeconds, g.Rules, g.MatchConditions, w.Name, *w.FailurePolicy, *w.SideEffects, *w.TimeoutSeconds, w.Rules, w.MatchConditions)
		}
		if g.ClientConfig.URL == nil || strings.Contains(*g.ClientConfig.URL, "NAMESPACE") {
			t.Errorf("webhook %s keeps the placeholder URL %v", g.Name, g.ClientConfig.URL)
		} else if !strings.HasSuffix(*g.ClientConfig.URL, *w.ClientConfig.URL) {
			// w's URL is its path alone: the registration above has no server URL.
			t.Errorf("webhook %s at %s, podbridge serves it at path %s", g.Name, *g.ClientConfig.URL, *w.ClientConfig.URL)
		}
	}
}

// Each host overlay admits webhook traffic only from the virtual control
// plane: a selector the overlay set, that no tenant host pod (same
// namespace, any labels the tenant likes, but podbridge's managed-by)
// matches; and tells the virtual apiserver to present its client
// certificate to the webhook's Service name.
func TestHostOverlaysLockTheWebhookDown(t *testing.T) {
	eachHostOverlay(t, func(t *testing.T, objects []*unstructured.Unstructured, prefix string) {
		var policy *networkingv1.NetworkPolicy
		var admission *corev1.ConfigMap
		for _, o := range objects {
			switch o.GetKind() + "/" + strings.TrimPrefix(o.GetName(), prefix) {
			case "NetworkPolicy/podbridge-webhook":
				policy = &networkingv1.NetworkPolicy{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, policy); err != nil {
					t.Fatal(err)
				}
			case "ConfigMap/podbridge-virtual-apiserver-admission":
				admission = &corev1.ConfigMap{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, admission); err != nil {
					t.Fatal(err)
				}
			}
		}
		if policy == nil || admission == nil {
			t.Fatalf("network policy %v, admission ConfigMap %v", policy != nil, admission != nil)
		}
		var webhookPeers []networkingv1.NetworkPolicyPeer
		for _, rule := range policy.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && p.Port.String() == "webhook" {
					if len(rule.From) == 0 {
						t.Fatal("the webhook port is open to every source")
					}
					webhookPeers = append(webhookPeers, rule.From...)
				}
			}
		}
		if len(webhookPeers) == 0 {
			t.Fatal("no ingress rule for the webhook port")
		}
		// A tenant pod copying every label of the allowed selector.
		for _, peer := range webhookPeers {
			if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil {
				t.Fatalf("webhook peer %+v reaches beyond this namespace's pods", peer)
			}
			selector, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil {
				t.Fatal(err)
			}
			if selector.Empty() || strings.Contains(selector.String(), "SET-BY-OVERLAY") {
				t.Fatalf("webhook peer selector %q: the overlay must set it", selector)
			}
			forged := labels.Set{}
			for k, v := range peer.PodSelector.MatchLabels {
				forged[k] = v
			}
			forged["app.kubernetes.io/managed-by"] = "podbridge" // podbridge sets it on every tenant host pod.
			if selector.Matches(forged) {
				t.Errorf("a tenant host pod with the labels %v passes the selector %q", forged, selector)
			}
		}

		kubeconfig, err := clientcmd.Load([]byte(admission.Data["webhook-client.kubeconfig"]))
		if err != nil {
			t.Fatal(err)
		}
		want := prefix + "podbridge-webhook." + policy.Namespace + ".svc"
		if _, ok := kubeconfig.AuthInfos[want]; !ok || len(kubeconfig.AuthInfos) != 1 {
			t.Errorf("the virtual apiserver's webhook kubeconfig names %v, want only %s", slices.Collect(maps.Keys(kubeconfig.AuthInfos)), want)
		}
	})
}

// The virtual apiserver dials kubelets trusting only the kubelet API's CA
// and presents the client certificate the webhook also accepts. Were the
// webhook's serving certificate from that CA too, a tenant's Node
// advertising the webhook's Service would pass the apiserver's check, and
// nodes/proxy would carry the tenant's own AdmissionReviews to the webhook
// as the apiserver: the two serving certificates come from different CAs.
func TestKubeletAndWebhookServingCAsDiffer(t *testing.T) {
	overlays, err := filepath.Glob("overlays/*")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, dir := range overlays {
		objects, err := render.Kustomization(dir)
		if err != nil {
			t.Fatal(err)
		}
		prefix := ""
		if !strings.HasSuffix(dir, "-virtual") {
			prefix = instancePrefix(t, objects)
		}
		issuerOf := map[string]string{} // Certificate → Issuer
		caOf := map[string]string{}     // CA Issuer → its Secret
		for _, o := range objects {
			switch o.GetKind() {
			case "Certificate":
				name, _, _ := unstructured.NestedString(o.Object, "spec", "issuerRef", "name")
				issuerOf[o.GetName()] = name
			case "Issuer":
				if secret, ok, _ := unstructured.NestedString(o.Object, "spec", "ca", "secretName"); ok {
					caOf[o.GetName()] = secret
				}
			}
		}
		webhookIssuer, hasWebhook := issuerOf[prefix+"podbridge-webhook"]
		kubeletIssuer, hasKubelet := issuerOf[prefix+"podbridge-kubelet"]
		if !hasWebhook || !hasKubelet {
			continue // not issued by cert-manager here
		}
		checked++
		if caOf[webhookIssuer] == "" || caOf[webhookIssuer] == caOf[kubeletIssuer] {
			t.Errorf("%s: the webhook (issuer %s, CA %q) and the kubelet API (issuer %s, CA %q) share a serving CA", dir, webhookIssuer, caOf[webhookIssuer], kubeletIssuer, caOf[kubeletIssuer])
		}
	}
	if checked == 0 {
		t.Fatal("no overlay issues both serving certificates with cert-manager")
	}
}

// instancePrefix is the namePrefix a host overlay gives its podbridge: the
// name of its ServiceAccount podbridge runs as, less "podbridge".
func instancePrefix(t *testing.T, objects []*unstructured.Unstructured) string {
	t.Helper()
	for _, o := range objects {
		if o.GetKind() == "ServiceAccount" && strings.HasSuffix(o.GetName(), "podbridge") {
			return strings.TrimSuffix(o.GetName(), "podbridge")
		}
	}
	t.Fatal("no ServiceAccount podbridge runs as")
	return ""
}

// eachHostOverlay runs check in a subtest for the build of every host
// overlay (overlays/*, the virtual cluster's left out), with the name
// prefix its objects carry, and returns how many it ran.
func eachHostOverlay(t *testing.T, check func(t *testing.T, objects []*unstructured.Unstructured, prefix string)) int {
	t.Helper()
	overlays, err := filepath.Glob("overlays/*")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, dir := range overlays {
		if strings.HasSuffix(dir, "-virtual") {
			continue
		}
		ran++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objects, err := render.Kustomization(dir)
			if err != nil {
				t.Fatal(err)
			}
			check(t, objects, instancePrefix(t, objects))
		})
	}
	return ran
}
