package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// A corpus of hostile pods, created through the real virtual apiserver:
// each is refused with a message naming the field, or admitted in a form
// that cannot escape the tenant's reach on the host.
func TestHostilePods(t *testing.T) {
	ns := namespace(t)
	container := func(p *corev1.Pod) *corev1.Container { return &p.Spec.Containers[0] }
	refused := []struct {
		name   string
		mutate func(*corev1.Pod)
		field  string
	}{
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "hostNetwork"},
		{"host PID", func(p *corev1.Pod) { p.Spec.HostPID = true }, "hostPID"},
		{"host IPC", func(p *corev1.Pod) { p.Spec.HostIPC = true }, "hostIPC"},
		{"privileged", func(p *corev1.Pod) { container(p).SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)} }, "privileged"},
		{"host path", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		}, "hostPath"},
		{"host port", func(p *corev1.Pod) { container(p).Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}} }, "hostPort"},
		{"capabilities", func(p *corev1.Pod) {
			container(p).SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
		}, "SYS_ADMIN"},
		{"unsafe sysctl", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "0"}, {Name: "net.core.somaxconn", Value: "1"}}}
		}, "sysctl"},
		{"unmasked proc", func(p *corev1.Pod) {
			container(p).SecurityContext = &corev1.SecurityContext{ProcMount: ptr.To(corev1.UnmaskedProcMount)}
		}, "procMount"},
		{"node name", func(p *corev1.Pod) { p.Spec.NodeName = "kwok-node-0" }, "spec.nodeName"},
		{"spoofed vcluster label", func(p *corev1.Pod) { p.Labels[translate.LabelVCluster] = "other" }, translate.LabelVCluster},
		{"spoofed managed-by", func(p *corev1.Pod) { p.Labels[translate.LabelManagedBy] = translate.ManagedByValue }, translate.LabelManagedBy},
		{"spoofed name annotation", func(p *corev1.Pod) { p.Annotations = map[string]string{translate.AnnotationName: "victim"} }, translate.AnnotationName},
		{"forged sync ID", func(p *corev1.Pod) { p.Annotations = map[string]string{translate.AnnotationSyncID: "someone-else"} }, translate.AnnotationSyncID},
		{"nfs volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "n", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "127.0.0.1", Path: "/"}}}}
		}, "nfs"},
		{"podbridge's scheduling gate", func(p *corev1.Pod) {
			p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: translate.GateVirtualPod}}
		}, "schedulingGates"},
		{"namespace selector in affinity", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				TopologyKey: "zone", LabelSelector: &metav1LabelSelector, NamespaceSelector: &metav1LabelSelector,
			}}}}
		}, "namespaceSelector"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			pod := simplePod(ns, "hostile-"+strings.ReplaceAll(strings.ToLower(tc.name), " ", "-"))
			tc.mutate(pod)
			createRefused(t, pod, tc.field)
		})
	}

	admitted := []struct {
		name   string
		mutate func(*corev1.Pod)
	}{
		{"host-only secret name", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "podbridge-webhook-tls"}}}}
		}},
		{"host service account name", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "default" }},
		{"token for another audience", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
				ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t", Audience: "https://host.example"},
			}}}}}}
		}},
		{"longest name", func(p *corev1.Pod) { p.Name = strings.Repeat("a", 253) }},
		{"unicode annotation", func(p *corev1.Pod) { p.Annotations = map[string]string{"note": "héllo ☃ \u202e"} }},
		{"large spec", func(p *corev1.Pod) {
			for i := range 500 {
				container(p).Env = append(container(p).Env, corev1.EnvVar{Name: "V" + strings.Repeat("X", 3) + string(rune('A'+i%26)) + itoa(i), Value: strings.Repeat("v", 500)})
			}
		}},
	}
	for _, tc := range admitted {
		t.Run("contained/"+tc.name, func(t *testing.T) {
			pod := simplePod(ns, "contained-"+strings.ReplaceAll(tc.name, " ", "-"))
			tc.mutate(pod)
			createContained(t, pod)
		})
	}
}

var metav1LabelSelector = *metav1LabelSelectorFor("app", "x")

// assertContained checks what keeps an admitted pod inside the tenant's
// reach on the host.
func assertContained(t *testing.T, virtual, host *corev1.Pod) {
	t.Helper()
	cfg := env.Options.Translate
	s := &host.Spec
	if s.HostNetwork || s.HostPID || s.HostIPC || s.ServiceAccountName != cfg.HostServiceAccount || s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Errorf("host pod escapes: %+v", s)
	}
	if host.Labels[translate.LabelVCluster] != cfg.VCluster || host.Labels[translate.LabelNamespace] != virtual.Namespace {
		t.Errorf("host pod labels %v", host.Labels)
	}
	for _, v := range s.Volumes {
		switch {
		case v.HostPath != nil:
			t.Errorf("host pod mounts a host path")
		case v.Secret != nil && !strings.HasSuffix(v.Secret.SecretName, "-x-"+cfg.VCluster) && !strings.HasPrefix(v.Secret.SecretName, "podbridge-token-") && len(v.Secret.SecretName) != 63:
			t.Errorf("host pod mounts host Secret %q that is not one of the tenant's copies", v.Secret.SecretName)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil {
					t.Errorf("host pod projects a host token")
				}
			}
		}
	}
}

// After creation, updates through the real virtual apiserver may change
// the tenant's labels and annotations but not set podbridge's: the pairing
// (sync ID) cannot be forged by an update either. An update that drops
// them, as kubectl replace of the tenant's own manifest does, is admitted
// with them kept, and the pair holds.
func TestUpdatesCannotForgePodbridgeKeys(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "keys")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	forged := []struct {
		name   string
		change func(p *corev1.Pod)
		field  string
	}{
		{"sync ID", func(p *corev1.Pod) { p.Annotations[translate.AnnotationSyncID] = "someone-else" }, translate.AnnotationSyncID},
		{"vcluster label", func(p *corev1.Pod) { p.Labels[translate.LabelVCluster] = "other" }, translate.LabelVCluster},
	}
	update := func(change func(p *corev1.Pod)) error { return updateVirtualPod(ctx, pod, "", change) }
	for _, tt := range forged {
		t.Run(tt.name, func(t *testing.T) {
			if err := update(tt.change); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("update: %v, want it refused as invalid naming %s", err, tt.field)
			}
		})
	}
	if err := update(func(p *corev1.Pod) { p.Labels["tier"] = "front" }); err != nil {
		t.Errorf("updating a tenant label: %v", err)
	}

	before := &corev1.Pod{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), before); err != nil {
		t.Fatal(err)
	}
	if err := update(func(p *corev1.Pod) { p.Annotations = map[string]string{"owner": "team-a"} }); err != nil {
		t.Fatalf("replacing the annotations with the tenant's own: %v", err)
	}
	after := &corev1.Pod{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), after); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{translate.AnnotationSyncID, translate.AnnotationHostName} {
		if after.Annotations[key] == "" || after.Annotations[key] != before.Annotations[key] {
			t.Errorf("annotation %s: %q after the replace, want %q kept", key, after.Annotations[key], before.Annotations[key])
		}
	}
	if after.Annotations["owner"] != "team-a" {
		t.Errorf("the tenant's annotation was not stored: %v", after.Annotations)
	}
	assertPaired(t, after)
}

// The admission endpoint answers garbage from the virtual apiserver with a
// clean 4xx and keeps serving.
func TestAdmissionEndpointUnderGarbage(t *testing.T) {
	reg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtualClient.Get(context.Background(), client.ObjectKey{Name: "podbridge"}, reg); err != nil {
		t.Fatal(err)
	}
	url := *reg.Webhooks[0].ClientConfig.URL
	// Garbage from the one authenticated caller: others do not get as far
	// as the HTTP layer (TestWebhookRefusesUnauthenticatedCallers).
	httpsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: asVirtualAPIServer(t, reg.Webhooks[0].ClientConfig.CABundle)}}
	review := func(object string) string {
		return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","object":` + object + `}}`
	}
	cases := []struct {
		name, contentType string
		body              []byte
	}{
		{"malformed JSON", "application/json", []byte(`{"apiVersion":`)},
		{"empty body", "application/json", nil},
		{"wrong content type", "text/plain", []byte(review(`{}`))},
		{"not a review", "application/json", []byte(`{"kind":"Pod","apiVersion":"v1"}`)},
		{"wrong kind of object", "application/json", []byte(review(`{"kind":"Service","apiVersion":"v1","metadata":{"name":"x"},"spec":{"ports":"nope"}}`))},
		{"object is a string", "application/json", []byte(review(`"pod"`))},
		{"huge body", "application/json", bytes.Repeat([]byte("x"), 8<<20)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := httpsClient.Post(url, tc.contentType, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatalf("the webhook did not answer: %v", err)
			}
			defer resp.Body.Close()
			code := resp.StatusCode
			if code == http.StatusOK {
				out := struct {
					Response *struct {
						Allowed bool
						Status  *struct{ Code int32 }
					}
				}{}
				if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.Response == nil || out.Response.Status == nil {
					t.Fatalf("answer is not an AdmissionReview with a status: %v", err)
				}
				if out.Response.Allowed {
					t.Fatalf("garbage was admitted")
				}
				code = int(out.Response.Status.Code)
			}
			if code < 400 || code >= 500 {
				t.Errorf("answered %d, want a 4xx", code)
			}
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(strings.Replace(url, "https://", "http://", 1), "application/json", strings.NewReader(review(`{}`)))
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP answered %d, want 400", resp.StatusCode)
		}
	})
	// Still serving after all that.
	if err := virtualClient.Create(context.Background(), simplePod(namespace(t), "after-garbage"), client.DryRunAll); err != nil {
		t.Fatalf("the webhook stopped serving: %v", err)
	}
}
