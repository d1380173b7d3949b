package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// A pod that mounts a ConfigMap and reads a Secret starts on the host at
// once: podbridge copied both before creating the host pod.
func TestReferencedConfigMapAndSecretAreCopiedFirst(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns}, Data: map[string]string{"level": "debug"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, StringData: map[string]string{"password": "s3cret"}}
	for _, obj := range []client.Object{cm, secret} {
		if err := virtualClient.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	pod := simplePod(ns, "configured")
	pod.Spec.Volumes = []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/config"}}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}}}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}

	cfg := env.Options.Translate
	hostCM := &corev1.ConfigMap{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName("settings", ns, cfg.VCluster)}, hostCM); err != nil {
		t.Fatalf("host copy of the ConfigMap right after the create: %v", err)
	}
	if hostCM.Data["level"] != "debug" {
		t.Errorf("host ConfigMap data %v", hostCM.Data)
	}
	hostSecret := &corev1.Secret{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName("creds", ns, cfg.VCluster)}, hostSecret); err != nil {
		t.Fatalf("host copy of the Secret right after the create: %v", err)
	}
	if string(hostSecret.Data["password"]) != "s3cret" {
		t.Errorf("host Secret data %v", hostSecret.Data)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if got := host.Spec.Volumes[0].ConfigMap.Name; got != hostCM.Name {
		t.Errorf("host pod mounts ConfigMap %q, want the copy %q", got, hostCM.Name)
	}
	if got := tenantEnv(host.Spec.Containers[0].Env)[0].ValueFrom.SecretKeyRef.Name; got != hostSecret.Name {
		t.Errorf("host pod reads Secret %q, want the copy %q", got, hostSecret.Name)
	}
	waitReady(t, pod)
}

// The projected service-account token of a pod becomes a host Secret whose
// token authenticates against the virtual apiserver as the pod's service
// account; kube-root-ca.crt is the virtual cluster's CA. The host pod waits
// for the token behind podbridge's gate (TestRestartedReflectorConverges
// sees it held), so it is there once the pod runs.
func TestServiceAccountTokenAuthenticatesAgainstVirtualCluster(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "in-cluster-client")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitReady(t, pod)
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	var tokenSecret, caConfigMap string
	for _, v := range host.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.Secret != nil {
				tokenSecret = s.Secret.Name
			}
			if s.ConfigMap != nil {
				caConfigMap = s.ConfigMap.Name
			}
			if s.ServiceAccountToken != nil {
				t.Errorf("host pod still projects a host service-account token: %+v", s)
			}
		}
	}
	if tokenSecret == "" || caConfigMap == "" {
		t.Fatalf("host pod volumes lack the token Secret or the CA ConfigMap: %+v", host.Spec.Volumes)
	}
	cfg := env.Options.Translate
	secret := &corev1.Secret{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfg.HostNamespace, Name: tokenSecret}, secret); err != nil {
		t.Fatalf("token Secret: %v", err)
	}
	tokenCfg := rest.AnonymousClientConfig(env.Virtual.Config)
	tokenCfg.BearerToken = string(secret.Data[translate.TokenKey])
	tokenClient, err := client.New(tokenCfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	review := &authenticationv1.SelfSubjectReview{}
	if err := tokenClient.Create(ctx, review); err != nil {
		t.Fatalf("the token does not authenticate against the virtual apiserver: %v", err)
	}
	if want := "system:serviceaccount:" + ns + ":default"; review.Status.UserInfo.Username != want {
		t.Errorf("token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
	ca := &corev1.ConfigMap{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfg.HostNamespace, Name: caConfigMap}, ca); err != nil {
		t.Fatalf("CA ConfigMap: %v", err)
	}
	if !bytes.Equal([]byte(ca.Data["ca.crt"]), env.Virtual.Config.CAData) {
		t.Errorf("host kube-root-ca.crt is not the virtual cluster's CA")
	}
}

// Names longer than a DNS label map to a hashed host name; the pod runs.
func TestLongNamesRun(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, strings.Repeat("long-name-", 6)+"end")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Name) > 63 || host.Spec.Hostname == "" || len(host.Spec.Hostname) > 63 || strings.HasSuffix(host.Spec.Hostname, "-") {
		t.Errorf("host name %q (%d), hostname %q", host.Name, len(host.Name), host.Spec.Hostname)
	}
	waitReady(t, pod)
}

// Downward-API references read the virtual pod's values from host
// annotations, and its labels and annotations under their host keys.
// metadata.uid exists only once the virtual pod is stored: the host pod
// waits behind a scheduling gate until the reflector has copied it, then
// runs.
func TestFieldRefsReadVirtualValues(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "downward")
	pod.Labels["example.com/tier"] = "front"
	pod.Annotations = map[string]string{"note": "tenant's", "k8s.v1.cni.cncf.io/networks": "underlay"}
	for name, path := range map[string]string{
		"NAME": "metadata.name", "NAMESPACE": "metadata.namespace", "SA": "spec.serviceAccountName", "UID": "metadata.uid",
		"APP": "metadata.labels['app']", "TIER": "metadata.labels['example.com/tier']", "NOTE": "metadata.annotations['note']",
		"NET": "metadata.annotations['k8s.v1.cni.cncf.io/networks']", "UNSET": "metadata.labels['unset']",
	} {
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}})
	}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitReady(t, pod)
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Spec.SchedulingGates) > 0 {
		t.Errorf("host pod of a ready pod still gated: %v", host.Spec.SchedulingGates)
	}
	want := map[string]string{
		"NAME": pod.Name, "NAMESPACE": ns, "SA": "default", "UID": string(pod.UID),
		"APP": "downward", "TIER": "front", "NOTE": "tenant's", "NET": "underlay", "UNSET": "",
	}
	for _, e := range host.Spec.Containers[0].Env {
		w, ok := want[e.Name]
		if !ok {
			continue
		}
		delete(want, e.Name)
		if got := resolveFieldRef(host, e.ValueFrom.FieldRef.FieldPath); got != w {
			t.Errorf("env %s on the host reads %s = %q, want the virtual value %q", e.Name, e.ValueFrom.FieldRef.FieldPath, got, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("host pod lacks env %v", want)
	}
	// Read under podbridge's keys, the CNI annotation steers nothing.
	if v, ok := host.Annotations["k8s.v1.cni.cncf.io/networks"]; ok {
		t.Errorf("host pod carries the tenant's CNI annotation verbatim: %q", v)
	}
}

// Downward-API files of the whole label and annotation maps read, on the
// host, the virtual pod's maps as the kubelet formats them, and follow the
// tenant's updates of them (the conformance suite's downward-API volume
// specs; every Istio-injected pod has such a file).
func TestWholeMapFilesFollowTheVirtualPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "maps")
	pod.Labels["tier"] = "front-end"
	pod.Annotations = map[string]string{"note": `say "hi"`}
	pod.Spec.Volumes = []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		},
	}}}}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitReady(t, pod)
	// What a kubelet writes: sorted key="value" lines, Go-quoted values.
	kubeletFile := func(m map[string]string) string {
		var lines []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			lines = append(lines, k+"="+strconv.Quote(m[k]))
		}
		return strings.Join(lines, "\n")
	}
	filesShowVirtualMaps := func(what string) {
		eventually(t, 20*time.Second, "host files of the whole maps show the virtual pod's "+what, func(ctx context.Context) (bool, string) {
			virtual := &corev1.Pod{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), virtual); err != nil {
				return false, err.Error()
			}
			host, err := getHostPod(ctx, pod)
			if err != nil {
				return false, err.Error()
			}
			items := host.Spec.Volumes[0].DownwardAPI.Items
			labels, annotations := resolveFieldRef(host, items[0].FieldRef.FieldPath), resolveFieldRef(host, items[1].FieldRef.FieldPath)
			return labels == kubeletFile(virtual.Labels) && annotations == kubeletFile(virtual.Annotations),
				fmt.Sprintf("labels file %q, annotations file %q", labels, annotations)
		})
	}
	filesShowVirtualMaps("at creation")
	if err := updateVirtualPod(ctx, pod, "", func(p *corev1.Pod) { p.Labels["tier"] = "db"; p.Annotations["note"] = "bye" }); err != nil {
		t.Fatal(err)
	}
	filesShowVirtualMaps("after an update")
}

// resolveFieldRef evaluates the downward-API paths the kubelet would, for
// the forms podbridge writes.
func resolveFieldRef(pod *corev1.Pod, path string) string {
	if key, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(key, "']")]
	}
	if key, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(key, "']")]
	}
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	}
	return "unresolved " + path
}

// A host error reaches the tenant at once with its meaning: the host
// quota's 403, naming the virtual pod rather than the host pod.
func TestHostQuotaRefusalReachesTenant(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate
	widget := corev1.ResourceName("example.com/widget")
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-widgets-" + ns, Namespace: cfg.HostNamespace},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"requests." + widget: resource.MustParse("0")}},
	}
	if err := hostClient.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), quota) })
	// The dev host runs no resource quota controller: record the usage it would.
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{"requests." + widget: resource.MustParse("0")}}
	if err := hostClient.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}

	pod := simplePod(ns, "wants-widgets")
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{widget: resource.MustParse("1")},
		Limits:   corev1.ResourceList{widget: resource.MustParse("1")},
	}
	err := virtualClient.Create(ctx, pod)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("create: %v, want 403 Forbidden from the host quota", err)
	}
	checkHostRefusal(t, err, pod, "exceeded quota")
}

// checkHostRefusal checks that a create the host refused explains why, names
// the virtual pod rather than its host pod, and left neither behind.
func checkHostRefusal(t *testing.T, err error, pod *corev1.Pod, why string) {
	t.Helper()
	ctx := context.Background()
	host := translate.HostName(pod.Name, pod.Namespace, env.Options.Translate.VCluster)
	if !strings.Contains(err.Error(), why) || strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), pod.Name) {
		t.Errorf("error %q should say %q and name %q, not the host pod %q", err, why, pod.Name, host)
	}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("virtual pod after a host refusal: %v, want NotFound", err)
	}
	if _, err := getHostPod(ctx, pod); !apierrors.IsNotFound(err) {
		t.Errorf("host pod after a host refusal: %v, want NotFound", err)
	}
}

// A host pod the host finds invalid is refused to the tenant with the
// host's 422 and its reason. A host ValidatingAdmissionPolicy plays the
// stricter host, as a platform team's own policies would.
func TestHostInvalidRefusalReachesTenant(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate
	const label = "test.podbridge.example/invalid-on-host"
	// The host sees the tenant's label under its tenant key: the host's
	// policy is written for podbridge's key scheme.
	hostLabel := translate.TenantKey(label)
	denyPods(t, hostClient, "invalid-on-host-"+ns, admissionregistrationv1.Validation{
		Expression: fmt.Sprintf("!has(object.metadata.labels) || !(%q in object.metadata.labels) || object.metadata.labels[%q] != %q", hostLabel, hostLabel, ns),
		Message:    "pods with this label are not allowed on this host",
		Reason:     ptr.To(metav1.StatusReasonInvalid),
	})
	// The host loads a new policy asynchronously: wait until it refuses a
	// labelled pod of its own (a dry run, so nothing is left behind).
	probe := simplePod(cfg.HostNamespace, "invalid-probe-"+ns)
	probe.Labels[hostLabel] = ns
	probe.Spec.ServiceAccountName = cfg.HostServiceAccount
	probe.Spec.AutomountServiceAccountToken = ptr.To(false)
	eventually(t, 30*time.Second, "the host policy refuses labelled pods", func(ctx context.Context) (bool, string) {
		err := hostClient.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return apierrors.IsInvalid(err), fmt.Sprintf("dry-run create: %v", err)
	})

	pod := simplePod(ns, "refused-by-host")
	pod.Labels[label] = ns
	err := virtualClient.Create(ctx, pod)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create: %v, want 422 Invalid from the host policy", err)
	}
	checkHostRefusal(t, err, pod, "not allowed on this host")
}

// A host pod left by an admission that failed after podbridge said yes is
// replaced when the pod is created again; a foreign pod of the same host
// name is never touched.
func TestStaleHostPodIsReplacedForeignOneIsNot(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate

	stale := simplePod(ns, "again")
	staleHost, _, errs := translate.HostPod(stale, cfg, "stale-sync-id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := hostClient.Create(ctx, staleHost); err != nil {
		t.Fatal(err)
	}
	pod := simplePod(ns, "again")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("create over a stale host pod: %v", err)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if host.UID == staleHost.UID || host.Annotations[translate.AnnotationSyncID] != pod.Annotations[translate.AnnotationSyncID] {
		t.Errorf("host pod was not replaced: uid %s (stale %s), sync ID %q vs virtual %q", host.UID, staleHost.UID, host.Annotations[translate.AnnotationSyncID], pod.Annotations[translate.AnnotationSyncID])
	}

	foreign := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: translate.HostName("taken", ns, cfg.VCluster), Namespace: cfg.HostNamespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c"}}, AutomountServiceAccountToken: new(bool)},
	}
	if err := hostClient.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	err = virtualClient.Create(ctx, simplePod(ns, "taken"))
	if !apierrors.IsConflict(err) {
		t.Errorf("create over a foreign host pod: %v, want 409 Conflict", err)
	}
	still := &corev1.Pod{}
	if err := hostClient.Get(ctx, client.ObjectKeyFromObject(foreign), still); err != nil || still.UID != foreign.UID {
		t.Errorf("foreign host pod was touched: %v", err)
	}
}

// The apiserver retries an admission request with the same UID, and may
// call the webhook again for a pod podbridge already mutated: both find
// the existing host pod instead of making a second one.
func TestRepeatedAdmissionReusesHostPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	call := webhookCaller(t)
	pod := simplePod(ns, "twice")
	first := call(t, "request-1", pod)
	if !first.Allowed {
		t.Fatalf("first call refused: %+v", first.Result)
	}
	retry := call(t, "request-1", pod)
	if !retry.Allowed {
		t.Fatalf("retry refused: %+v", retry.Result)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	syncID := host.Annotations[translate.AnnotationSyncID]
	for name, resp := range map[string]*admissionv1.AdmissionResponse{"first": first, "retry": retry} {
		if !bytes.Contains(resp.Patch, []byte(syncID)) {
			t.Errorf("%s answer does not carry the host pod's sync ID %s: %s", name, syncID, resp.Patch)
		}
	}
	// Re-invocation: the pod now carries podbridge's annotation.
	mutated := pod.DeepCopy()
	mutated.Annotations = map[string]string{translate.AnnotationSyncID: syncID}
	if again := call(t, "request-2", mutated); !again.Allowed {
		t.Fatalf("re-invocation refused: %+v", again.Result)
	}
	// A tenant that forges the annotation gets nothing.
	forged := simplePod(ns, "twice")
	forged.Annotations = map[string]string{translate.AnnotationSyncID: "forged"}
	if resp := call(t, "request-3", forged); resp.Allowed {
		t.Errorf("a forged sync ID was admitted")
	}
	after, err := getHostPod(ctx, pod)
	if err != nil || after.UID != host.UID {
		t.Errorf("host pod changed across repeated admissions: %v", err)
	}
}

// webhookCaller posts AdmissionReviews straight to podbridge's webhook, at
// the URL and with the CA its registration in the virtual cluster names,
// with the virtual apiserver's client certificate: it stands for the
// virtual apiserver retrying.
func webhookCaller(t *testing.T) func(*testing.T, types.UID, *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	reg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := virtualClient.Get(context.Background(), client.ObjectKey{Name: "podbridge"}, reg); err != nil {
		t.Fatal(err)
	}
	hook := reg.Webhooks[0].ClientConfig
	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: asVirtualAPIServer(t, hook.CABundle)}}
	return func(t *testing.T, uid types.UID, pod *corev1.Pod) *admissionv1.AdmissionResponse {
		t.Helper()
		raw, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: uid, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: pod.Namespace, Name: pod.Name, Operation: admissionv1.Create,
				Object: runtimeRaw(raw),
			},
		}
		body, _ := json.Marshal(review)
		resp, err := httpClient.Post(*hook.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("calling the webhook: %v", err)
		}
		defer resp.Body.Close()
		out := admissionv1.AdmissionReview{}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
			t.Fatalf("webhook answer (HTTP %d): %v", resp.StatusCode, err)
		}
		return out.Response
	}
}

func waitReady(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	eventually(t, 30*time.Second, "virtual pod "+pod.Name+" Running and Ready", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		return pod.Status.Phase == corev1.PodRunning && isReady(pod), fmt.Sprintf("phase=%s ready=%v", pod.Status.Phase, isReady(pod))
	})
}

// A missing optional ConfigMap does not keep the pod's other dependencies
// from reaching the host.
func TestMissingReferenceDoesNotSkipTheOthers(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "present", Namespace: ns}, StringData: map[string]string{"k": "v"}}
	if err := virtualClient.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	pod := simplePod(ns, "partly-missing")
	pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true)}},
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "present"}}},
	}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	cfg := env.Options.Translate
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName("present", ns, cfg.VCluster)}, &corev1.Secret{}); err != nil {
		t.Errorf("the Secret was not copied after a missing ConfigMap: %v", err)
	}
	waitReady(t, pod)
}

// A pod with generateName and no name (as ReplicaSets and Jobs create them)
// gets its name from the webhook: the virtual pod stored under it and the
// host pod made for it agree.
func TestGenerateNamePodsAgreeOnBothSides(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "")
	pod.GenerateName = "worker-"
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	if !strings.HasPrefix(pod.Name, "worker-") || len(pod.Name) != len("worker-")+5 {
		t.Fatalf("stored name %q, want worker- and five characters", pod.Name)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatalf("host pod of %s: %v", pod.Name, err)
	}
	if got := host.Annotations[translate.AnnotationName]; got != pod.Name {
		t.Errorf("host pod names virtual pod %q, stored as %q", got, pod.Name)
	}
	waitReady(t, pod)
}
