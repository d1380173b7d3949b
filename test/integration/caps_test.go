package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/translate"
)

// A tenant tries to fill the host: ConfigMap copies past the count cap,
// a Secret past the byte cap, a pod with more tokens than allowed, and an
// admission request past the size cap. Each is refused with an error that
// names the cap and the use, and nothing of a refused pod is on the host.
func TestCapsOnWhatATenantMakesOnTheHost(t *testing.T) {
	ctx := context.Background()
	const name = "zz-caps"
	tc := env.Options.Translate
	tc.VCluster = "capstest"
	limits := caps.Limits{MaxCopies: 3, MaxCopyBytes: 64 << 10, MaxTokensPerPod: 1, MaxRequestBytes: 256 << 10}
	startExtraWebhookWithLimits(t, name, tc, certsSelfManaged(t, "caps-test-tls"), limits)
	t.Cleanup(func() { removeHostObjectsOf(t, tc) })
	virtual := secondClient
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	eventually(t, 30*time.Second, "the caps webhook registered with its CA", func(ctx context.Context) (bool, string) {
		err := virtual.Get(ctx, client.ObjectKey{Name: name}, cfg)
		return err == nil && len(cfg.Webhooks[0].ClientConfig.CABundle) > 0, fmt.Sprint(err)
	})
	eventually(t, 30*time.Second, "the caps webhook to answer", func(ctx context.Context) (bool, string) {
		pod := simplePod("default", "caps-probe")
		pod.Labels[certTestLabel] = name
		err := virtual.Create(ctx, pod, client.DryRunAll)
		return err == nil && pod.Annotations[translate.AnnotationHostName] == translate.HostName(pod.Name, "default", tc.VCluster), fmt.Sprint(err)
	})

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "caps-"}}
	if err := virtual.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "default service account in "+ns.Name, func(ctx context.Context) (bool, string) {
		err := virtual.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, fmt.Sprint(err)
	})
	for i := range 4 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-" + itoa(i), Namespace: ns.Name}, Data: map[string]string{"k": "v"}}
		if err := virtual.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	capsPod := func(podName string, configMaps ...string) *corev1.Pod {
		pod := simplePod(ns.Name, podName)
		pod.Labels[certTestLabel] = name
		pod.Spec.AutomountServiceAccountToken = ptr.To(false)
		for _, cm := range configMaps {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: cm, VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}},
			}})
		}
		return pod
	}
	hostCopy := func(kind, original string) error {
		key := client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostName(original, ns.Name, tc.VCluster)}
		if kind == "Secret" {
			return hostClient.Get(ctx, key, &corev1.Secret{})
		}
		return hostClient.Get(ctx, key, &corev1.ConfigMap{})
	}
	refused := func(t *testing.T, pod *corev1.Pod, wants ...string) {
		t.Helper()
		err := virtual.Create(ctx, pod)
		if err == nil {
			t.Fatalf("pod %s admitted", pod.Name)
		}
		for _, want := range wants {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not say %q", err, want)
			}
		}
		if _, err := getHostPodIn(ctx, tc, pod); !apierrors.IsNotFound(err) {
			t.Errorf("host pod of refused pod %s: %v", pod.Name, err)
		}
	}

	// First, while the count cap leaves room: the byte cap alone refuses.
	t.Run("bytes", func(t *testing.T) {
		big := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: ns.Name}, Data: map[string][]byte{"blob": bytes.Repeat([]byte("x"), 100<<10)}}
		if err := virtual.Create(ctx, big); err != nil {
			t.Fatal(err)
		}
		pod := capsPod("big-secret")
		pod.Spec.Volumes = []corev1.Volume{{Name: "big", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "big"}}}}
		refused(t, pod, "--max-copy-bytes", "limit of 65536 bytes")
		if err := hostCopy("Secret", "big"); !apierrors.IsNotFound(err) {
			t.Errorf("host copy of the big Secret: %v", err)
		}
	})

	t.Run("count", func(t *testing.T) {
		if err := virtual.Create(ctx, capsPod("two-copies", "cm-0", "cm-1")); err != nil {
			t.Fatalf("pod within the cap: %v", err)
		}
		// Two more would make 4 copies of 3 allowed: neither is made.
		refused(t, capsPod("two-more", "cm-2", "cm-3"), "--max-copies", "limit of 3 host copies", "2 in use")
		for _, cm := range []string{"cm-2", "cm-3"} {
			if err := hostCopy("ConfigMap", cm); !apierrors.IsNotFound(err) {
				t.Errorf("host copy of %s after the refusal: %v", cm, err)
			}
		}
		// One more fits, and a pod that reuses copies needs none.
		if err := virtual.Create(ctx, capsPod("one-more", "cm-2")); err != nil {
			t.Fatalf("pod reaching the cap: %v", err)
		}
		if err := virtual.Create(ctx, capsPod("reuses", "cm-0", "cm-2")); err != nil {
			t.Fatalf("pod reusing copies at the cap: %v", err)
		}
		refused(t, capsPod("past-cap", "cm-3"), "--max-copies", "3 in use")
	})

	t.Run("tokens", func(t *testing.T) {
		pod := capsPod("two-tokens")
		var sources []corev1.VolumeProjection
		for _, audience := range []string{"a", "b"} {
			sources = append(sources, corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: audience, Path: "token-" + audience}})
		}
		pod.Spec.Volumes = []corev1.Volume{{Name: "tokens", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}}
		refused(t, pod, "spec.volumes", "--max-tokens-per-pod", "limit of 1 per pod")
	})

	t.Run("request size", func(t *testing.T) {
		pod := capsPod("huge")
		pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "FILLER", Value: strings.Repeat("x", 300<<10)}}
		refused(t, pod) // the apiserver reports the webhook's refusal its own way
		// The webhook's own answer names the cap, read or not.
		https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: asSecondVirtualAPIServer(t, cfg.Webhooks[0].ClientConfig.CABundle)}}
		resp, err := https.Post(*cfg.Webhooks[0].ClientConfig.URL, "application/json", bytes.NewReader(bytes.Repeat([]byte(" "), 300<<10)))
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "--max-request-bytes") {
			t.Errorf("answered %d %q, want 413 naming --max-request-bytes", resp.StatusCode, body)
		}
	})
}

func getHostPodIn(ctx context.Context, tc translate.Config, virtual *corev1.Pod) (*corev1.Pod, error) {
	host := &corev1.Pod{}
	err := hostClient.Get(ctx, client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostName(virtual.Name, virtual.Namespace, tc.VCluster)}, host)
	return host, err
}

// removeHostObjectsOf deletes what a virtual cluster without a reflector
// left on the host.
func removeHostObjectsOf(t *testing.T, tc translate.Config) {
	ctx := context.Background()
	ours := client.MatchingLabels{translate.LabelVCluster: tc.VCluster}
	for _, obj := range []client.Object{&corev1.Pod{}, &corev1.ConfigMap{}, &corev1.Secret{}, &networkingv1.NetworkPolicy{}} {
		if err := hostClient.DeleteAllOf(ctx, obj, client.InNamespace(tc.HostNamespace), ours, client.GracePeriodSeconds(0)); err != nil {
			t.Errorf("removing %T of %s: %v", obj, tc.VCluster, err)
		}
	}
}
