package webhook

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/podbridge/podbridge/translate"
)

// Each kind of pod request has its own webhook at its own path, with the
// failure policy its users rely on; a --register-url that names the create
// path, as it did when there was one path, names the same server.
func TestRegistrationOneWebhookPerPath(t *testing.T) {
	type hook struct {
		name, url, failure, operation, resource string
	}
	want := []hook{
		{"pods.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPath, "Fail", "CREATE", "pods"},
		{"pod-updates.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathPodUpdate, "Ignore", "UPDATE", "pods"},
		{"pod-ephemeralcontainers.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathEphemeralContainers, "Fail", "UPDATE", "pods/ephemeralcontainers"},
		{"services.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathService, "Fail", "CREATE", "services"},
		{"service-updates.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathServiceUpdate, "Fail", "UPDATE", "services"},
		{"networkpolicies.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathNetworkPolicy, "Fail", "CREATE", "networkpolicies"},
		{"networkpolicy-updates.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathNetworkPolicyUpdate, "Fail", "UPDATE", "networkpolicies"},
		{"persistentvolumeclaims.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathClaim, "Fail", "CREATE", "persistentvolumeclaims"},
		{"persistentvolumeclaim-updates.podbridge.podbridge.io", "https://h.example:8443/base" + translate.WebhookPathClaimUpdate, "Fail", "UPDATE", "persistentvolumeclaims"},
	}
	for _, url := range []string{"https://h.example:8443/base", "https://h.example:8443/base/", "https://h.example:8443/base" + translate.WebhookPath} {
		t.Run(url, func(t *testing.T) {
			cfg := Registration{Name: "podbridge", URL: url, TimeoutSeconds: 10}.Configuration()
			if len(cfg.Webhooks) != len(want) {
				t.Fatalf("%d webhooks, want %d", len(cfg.Webhooks), len(want))
			}
			for i, w := range cfg.Webhooks {
				if len(w.Rules) != 1 || len(w.Rules[0].Operations) != 1 || len(w.Rules[0].Resources) != 1 {
					t.Fatalf("webhook %s: rules %+v, want one operation on one resource", w.Name, w.Rules)
				}
				got := hook{w.Name, *w.ClientConfig.URL, string(*w.FailurePolicy), string(w.Rules[0].Operations[0]), w.Rules[0].Resources[0]}
				if got != want[i] {
					t.Errorf("webhook %d: %+v, want %+v", i, got, want[i])
				}
				// Only the update guard is spared calls (issue 25): every
				// other webhook writes to the host or checks what reaches it.
				if conditioned := len(w.MatchConditions) > 0; conditioned != (w.Name == "pod-updates.podbridge.podbridge.io") {
					t.Errorf("webhook %s: matchConditions %+v", w.Name, w.MatchConditions)
				}
				if *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
					t.Errorf("webhook %s: sideEffects %s", w.Name, *w.SideEffects)
				}
			}
		})
	}
}
