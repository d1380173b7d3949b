package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/translate"
)

// injectLabel selects the pods the test's sidecar injector changes; its
// value says what it adds.
const injectLabel = "test.podbridge.io/inject"

// startSidecarInjector runs a mutating webhook in this process on loopback,
// registered in the virtual cluster under a name that sorts after
// podbridge's configuration ("podbridge"), so the apiserver calls it after
// podbridge's webhook made the host pod: a tenant's sidecar injector.
// Pods labelled injectLabel=sidecar get a container "sidecar";
// injectLabel=privileged a privileged one; injectLabel=tokens a projected
// volume with one token more than the cap per pod; injectLabel=tolerate-all
// a toleration of every taint.
func startSidecarInjector(t *testing.T) {
	t.Helper()
	bundle := newServingBundle(t)
	cert, err := tls.X509KeyPair(bundle.Cert, bundle.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(injectSidecar),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-test-sidecar-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "sidecar.test.podbridge.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				URL:      ptr.To(fmt.Sprintf("https://%s/inject", ln.Addr())),
				CABundle: bundle.CA,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: injectLabel, Operator: metav1.LabelSelectorOpExists}}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
		}},
	}
	ctx := context.Background()
	if err := virtualClient.Create(ctx, cfg); err != nil {
		t.Fatalf("registering the sidecar injector: %v", err)
	}
	t.Cleanup(func() {
		if err := virtualClient.Delete(context.Background(), cfg); client.IgnoreNotFound(err) != nil {
			t.Errorf("removing the sidecar injector: %v", err)
		}
	})
	// The apiserver picks registrations up from a watch: wait until a
	// dry-run create comes back with the sidecar.
	ns := namespace(t)
	eventually(t, 30*time.Second, "sidecar injector active", func(ctx context.Context) (bool, string) {
		probe := simplePod(ns, "probe")
		probe.Labels[injectLabel] = "sidecar"
		if err := virtualClient.Create(ctx, probe, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return len(probe.Spec.Containers) == 2, fmt.Sprintf("%d containers", len(probe.Spec.Containers))
	})
}

func injectSidecar(w http.ResponseWriter, r *http.Request) {
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(r.Body).Decode(review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(review.Request.Object.Raw, pod); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sidecar := corev1.Container{Name: "sidecar", Image: "proxy"}
	ops := []map[string]any{{"op": "add", "path": "/spec/containers/-", "value": sidecar}}
	switch pod.Labels[injectLabel] {
	case "privileged":
		sidecar.SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		ops[0]["value"] = sidecar
	case "tokens":
		ops = []map[string]any{{"op": "add", "path": "/spec/volumes/-", "value": overCapTokens()}}
	case "tolerate-all":
		ops = []map[string]any{{"op": "add", "path": "/spec/tolerations/-", "value": corev1.Toleration{Operator: corev1.TolerationOpExists}}}
	}
	patch, _ := json.Marshal(ops)
	review.Response = &admissionv1.AdmissionResponse{
		UID: review.Request.UID, Allowed: true,
		Patch: patch, PatchType: ptr.To(admissionv1.PatchTypeJSONPatch),
	}
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

// A tenant's webhook that runs after podbridge's adds a sidecar after the
// host pod was made. Every host pod waits behind podbridge's gate until
// the reflector compared it with the stored pod, so the sidecar reaches
// the host pod and runs, with or without a token to bind; a sidecar the
// host-side gate refuses never reaches the host, and the tenant is told.
func TestLaterWebhookSidecarReachesHost(t *testing.T) {
	startSidecarInjector(t)
	ns := namespace(t)
	ctx := context.Background()

	for _, tc := range []struct {
		name      string
		automount bool
	}{
		{name: "with-token", automount: true},     // held for its token too
		{name: "without-token", automount: false}, // held only for the comparison
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(ns, tc.name)
			pod.Labels[injectLabel] = "sidecar"
			pod.Spec.AutomountServiceAccountToken = ptr.To(tc.automount)
			if err := virtualClient.Create(ctx, pod); err != nil {
				t.Fatalf("creating pod: %v", err)
			}
			if names := containerNames(pod.Spec.Containers); !slices.Equal(names, []string{"app", "sidecar"}) {
				t.Fatalf("stored virtual pod has containers %v, want app and sidecar", names)
			}
			got := waitRunningBound(t, pod)
			eventually(t, 30*time.Second, "virtual pod 2/2 ready", func(ctx context.Context) (bool, string) {
				if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
					return false, err.Error()
				}
				ready := 0
				for _, s := range got.Status.ContainerStatuses {
					if s.Ready {
						ready++
					}
				}
				return ready == 2 && len(got.Status.ContainerStatuses) == 2, fmt.Sprintf("%d/%d ready", ready, len(got.Status.ContainerStatuses))
			})
			host, err := getHostPod(ctx, got)
			if err != nil {
				t.Fatal(err)
			}
			if names := containerNames(host.Spec.Containers); !slices.Equal(names, []string{"app", "sidecar"}) {
				t.Errorf("host pod has containers %v, want app and sidecar", names)
			}
			if host.Annotations[translate.AnnotationSyncID] != got.Annotations[translate.AnnotationSyncID] {
				t.Errorf("host pod sync ID %q, virtual %q", host.Annotations[translate.AnnotationSyncID], got.Annotations[translate.AnnotationSyncID])
			}
			if c := hostSyncCondition(got); c != nil {
				t.Errorf("virtual pod has %s: %+v", translate.ConditionHostSync, c)
			}
			waitEvent(t, got, "HostPodRecreated")
			assertPaired(t, got)
		})
	}

	// A host pod that started as admitted while the stored pod differs (a
	// host pod made before every pod was held; simulated by its
	// fingerprint) cannot be changed: the tenant is told, not left to guess.
	t.Run("started-differs-reported", func(t *testing.T) {
		// No later webhook: the fingerprint the webhook took before its own
		// patch (a generated name, podbridge's annotations) is the stored
		// pod's, so the host pod is not made twice.
		recreated := actionCount(t, "recreate_host")
		pod := simplePod(ns, "")
		pod.GenerateName = "started-"
		if err := virtualClient.Create(ctx, pod); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		pod = waitRunningBound(t, pod)
		host, err := getHostPod(ctx, pod)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := host.Annotations[translate.AnnotationAdmittedSpec], translate.AdmittedSpecOf(pod).String(); got != want {
			t.Errorf("host pod admitted %q, stored pod's fingerprint %q", got, want)
		}
		if n := actionCount(t, "recreate_host"); n != recreated {
			t.Errorf("%v host pods re-created for a pod no webhook changed", n-recreated)
		}
		asAdmitted := pod.DeepCopy()
		asAdmitted.Spec.Containers = asAdmitted.Spec.Containers[:0]
		patch := client.MergeFrom(host.DeepCopy())
		host.Annotations[translate.AnnotationAdmittedSpec] = translate.AdmittedSpecOf(asAdmitted).String()
		if err := hostClient.Patch(ctx, host, patch); err != nil {
			t.Fatal(err)
		}
		msg := waitEvent(t, pod, translate.ReasonHostSpecDiffers)
		eventually(t, 20*time.Second, "HostSync condition", func(ctx context.Context) (bool, string) {
			got := &corev1.Pod{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
				return false, err.Error()
			}
			c := hostSyncCondition(got)
			return c != nil && c.Status == corev1.ConditionFalse && c.Reason == translate.ReasonHostSpecDiffers, fmt.Sprintf("%+v", c)
		})
		if want := "containers added: app"; !strings.Contains(msg, want) {
			t.Errorf("event %q does not say %q", msg, want)
		}
	})

	// Hostile: the later webhook adds a privileged container. The host pod
	// is never made with it and never starts; the tenant gets the refusal.
	t.Run("privileged-sidecar-refused", func(t *testing.T) {
		pod := simplePod(ns, "privileged")
		pod.Labels[injectLabel] = "privileged"
		if err := virtualClient.Create(ctx, pod); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		got := &corev1.Pod{}
		eventually(t, 30*time.Second, "HostSync refused", func(ctx context.Context) (bool, string) {
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
				return false, err.Error()
			}
			c := hostSyncCondition(got)
			return c != nil && c.Status == corev1.ConditionFalse && c.Reason == translate.ReasonHostSyncRefused, fmt.Sprintf("%+v", c)
		})
		waitEvent(t, got, translate.ReasonHostSyncRefused)
		host, err := getHostPod(ctx, got)
		if err != nil {
			t.Fatal(err)
		}
		if names := containerNames(host.Spec.Containers); !slices.Equal(names, []string{"app"}) || !translate.HeldForVirtualPod(host) || host.Spec.NodeName != "" {
			t.Errorf("host pod: containers %v, held %v, node %q; want app only, held, unscheduled", names, translate.HeldForVirtualPod(host), host.Spec.NodeName)
		}
	})

	// Hostile: the later webhook adds more projected tokens than the cap
	// (each a token request and a host Secret). The reflector, which would
	// make the host pod again from the stored pod, meets the same cap as
	// the webhook: the host pod stays held without them, the tenant is
	// told, and no token of the pod is requested.
	t.Run("tokens-over-cap-refused", func(t *testing.T) {
		pod := simplePod(ns, "tokens")
		pod.Labels[injectLabel] = "tokens"
		if err := virtualClient.Create(ctx, pod); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		got := waitHostSyncRefused(t, pod, "--max-tokens-per-pod")
		host, err := getHostPod(ctx, got)
		if err != nil {
			t.Fatal(err)
		}
		if !translate.HeldForVirtualPod(host) || host.Spec.NodeName != "" || slices.ContainsFunc(host.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "extra-tokens" }) {
			t.Errorf("host pod: held %v, node %q, volumes %v; want held, unscheduled, without extra-tokens", translate.HeldForVirtualPod(host), host.Spec.NodeName, host.Spec.Volumes)
		}
		// A pod admitted after it gets its token: the token controller has
		// passed the refused pod by then.
		control := simplePod(ns, "tokens-control")
		if err := virtualClient.Create(ctx, control); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		waitRunningBound(t, control)
		secrets := &corev1.SecretList{}
		if err := hostClient.List(ctx, secrets, client.InNamespace(env.Options.Translate.HostNamespace)); err != nil {
			t.Fatal(err)
		}
		for _, name := range tokenSecretNames(got) {
			if slices.ContainsFunc(secrets.Items, func(s corev1.Secret) bool { return s.Name == name }) {
				t.Errorf("token Secret %s requested for a pod over the cap", name)
			}
		}
	})

	// Hostile: the later webhook adds a toleration of every taint, which
	// would put the pod on nodes the platform keeps tenants off.
	t.Run("toleration-of-every-taint-refused", func(t *testing.T) {
		pod := simplePod(ns, "tolerate-all")
		pod.Labels[injectLabel] = "tolerate-all"
		if err := virtualClient.Create(ctx, pod); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		got := waitHostSyncRefused(t, pod, "spec.tolerations")
		host, err := getHostPod(ctx, got)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(host.Spec.Tolerations, func(tol corev1.Toleration) bool { return tol.Key == "" }) || host.Spec.NodeName != "" {
			t.Errorf("host pod tolerates %v on node %q; want no blanket toleration, unscheduled", host.Spec.Tolerations, host.Spec.NodeName)
		}
	})
}

// waitHostSyncRefused waits until the reflector's gate refused pod's host
// pod, naming want, and returns the stored pod.
func waitHostSyncRefused(t *testing.T, pod *corev1.Pod, want string) *corev1.Pod {
	t.Helper()
	got := &corev1.Pod{}
	eventually(t, 30*time.Second, "HostSync refused naming "+want, func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
			return false, err.Error()
		}
		c := hostSyncCondition(got)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == translate.ReasonHostSyncRefused && strings.Contains(c.Message, want), fmt.Sprintf("%+v", c)
	})
	waitEvent(t, got, translate.ReasonHostSyncRefused)
	return got
}

// tokenSecretNames names the host Secrets of pod's projected tokens.
func tokenSecretNames(pod *corev1.Pod) []string {
	var names []string
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				names = append(names, translate.TokenSecretName(pod.Name, pod.Namespace, env.Options.Translate.VCluster, v.Name, src.ServiceAccountToken.Audience))
			}
		}
	}
	return names
}

// overCapTokens is a projected volume with one service-account token
// more than the cap per pod, each for another audience.
func overCapTokens() corev1.Volume {
	src := &corev1.ProjectedVolumeSource{}
	for i := range caps.Defaults().MaxTokensPerPod + 1 {
		audience := fmt.Sprintf("aud-%d", i)
		src.Sources = append(src.Sources, corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: audience, Path: audience}})
	}
	return corev1.Volume{Name: "extra-tokens", VolumeSource: corev1.VolumeSource{Projected: src}}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// assertPaired runs podbridge check and fails on any violation naming pod.
func assertPaired(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	eventually(t, 20*time.Second, "check finds no violation for "+pod.Name, func(ctx context.Context) (bool, string) {
		violations, err := check.Run(ctx, hostClient, virtualClient, check.Options{Config: env.Options.Translate, OrphanGracePeriod: orphanGrace, Statuses: true, Now: time.Now()})
		if err != nil {
			return false, err.Error()
		}
		var mine []string
		for _, v := range violations {
			if v.Virtual == pod.Namespace+"/"+pod.Name {
				mine = append(mine, fmt.Sprint(v))
			}
		}
		return len(mine) == 0, fmt.Sprint(mine)
	})
}
