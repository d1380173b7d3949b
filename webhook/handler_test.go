package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	gomodulesjsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/hostcopy"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

func newMutator(t *testing.T, hostCreate func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error) *podMutator {
	t.Helper()
	security, err := NewSecurityPolicy("baseline")
	if err != nil {
		t.Fatal(err)
	}
	host := fake.NewClientBuilder().WithScheme(kube.Scheme).WithInterceptorFuncs(interceptor.Funcs{Create: hostCreate}).Build()
	cfg := translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"}
	return &podMutator{
		Host:        host,
		Virtual:     fake.NewClientBuilder().WithScheme(kube.Scheme).Build(),
		Copies:      &hostcopy.Writer{Host: host, FieldManager: FieldManager, Config: cfg},
		Config:      cfg,
		Gate:        policy.Gate{Security: security, Config: cfg},
		HostTimeout: time.Second,
		NewSyncID:   func() string { return "sync-1" },
		NameSuffix:  func() string { return "abcde" },
	}
}

func request(t *testing.T, pod *corev1.Pod, dryRun bool) admission.Request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Operation: admissionv1.Create,
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "team",
		Object:    runtime.RawExtension{Raw: raw},
		DryRun:    ptr.To(dryRun),
	}}
}

func pod(name, generateName string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, GenerateName: generateName},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
	}
}

// Host errors reach the tenant with a code that keeps their meaning, and
// the host pod's name is mapped back to the virtual one.
func TestHostErrorsReachTenant(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	hostName := translate.HostName("web", "team", "vc")
	tests := []struct {
		name     string
		err      error
		wantCode int32
	}{
		{"quota", apierrors.NewForbidden(gr, hostName, errors.New("exceeded quota: q")), http.StatusForbidden},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, hostName, field.ErrorList{field.Invalid(field.NewPath("spec"), "x", "bad")}), http.StatusUnprocessableEntity},
		{"timeout", apierrors.NewTimeoutError("slow", 1), http.StatusServiceUnavailable},
		{"overloaded", apierrors.NewTooManyRequests("busy", 1), http.StatusServiceUnavailable},
		{"unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, http.StatusServiceUnavailable},
		{"deadline", context.DeadlineExceeded, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMutator(t, func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { return tt.err })
			resp := m.Handle(context.Background(), request(t, pod("web", ""), false))
			if resp.Allowed {
				t.Fatal("admitted despite the host error")
			}
			if resp.Result.Code != tt.wantCode {
				t.Errorf("code %d, want %d (%s)", resp.Result.Code, tt.wantCode, resp.Result.Message)
			}
			if strings.Contains(resp.Result.Message, hostName) {
				t.Errorf("message names the host pod: %s", resp.Result.Message)
			}
		})
	}
}

// A generateName pod gets its name from the webhook, in the answer's patch,
// with the sync ID and the host name.
func TestGenerateNameIsAssignedAndPatched(t *testing.T) {
	var created *corev1.Pod
	m := newMutator(t, func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		created = obj.(*corev1.Pod).DeepCopy()
		return c.Create(ctx, obj, opts...)
	})
	resp := m.Handle(context.Background(), request(t, pod("", "web-7d4b9c-"), false))
	if !resp.Allowed {
		t.Fatalf("refused: %+v", resp.Result)
	}
	patches := map[string]any{}
	for _, p := range resp.Patches {
		patches[p.Path] = p.Value
	}
	if patches["/metadata/name"] != "web-7d4b9c-abcde" {
		t.Errorf("name patch %v, want web-7d4b9c-abcde (patches %v)", patches["/metadata/name"], patches)
	}
	if created == nil || created.Annotations[translate.AnnotationName] != "web-7d4b9c-abcde" || created.Name != translate.HostName("web-7d4b9c-abcde", "team", "vc") {
		t.Errorf("host pod %+v does not carry the assigned name", created)
	}
}

// A dry-run admission creates the host pod with dryRun set and nothing else.
func TestDryRunIsDryOnHost(t *testing.T) {
	var dry bool
	m := newMutator(t, func(_ context.Context, _ client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		o := &client.CreateOptions{}
		o.ApplyOptions(opts)
		dry = len(o.DryRun) == 1 && o.DryRun[0] == metav1.DryRunAll
		if _, ok := obj.(*corev1.Pod); !ok {
			t.Errorf("dry run created a host %T", obj)
		}
		return nil
	})
	p := pod("web", "")
	p.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}
	if resp := m.Handle(context.Background(), request(t, p, true)); !resp.Allowed {
		t.Fatalf("refused: %+v", resp.Result)
	}
	if !dry {
		t.Error("host create was not a dry run")
	}
}

// A pod that breaks the security level is refused naming the field.
func TestCreateBreakingTheSecurityLevelIsRefused(t *testing.T) {
	m := newMutator(t, func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
		t.Error("the host was called")
		return nil
	})
	privileged := pod("web", "")
	privileged.Spec.HostPID = true
	resp := m.Handle(context.Background(), request(t, privileged, false))
	if resp.Allowed || resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, "hostPID") {
		t.Errorf("hostPID pod: %+v", resp.Result)
	}
}

// Each path serves one kind of pod request and refuses every other with a
// 400 naming its path: a tenant that rewires a webhook (podbridge's, until
// the keeper restores it, or one of its own) to another of podbridge's
// paths gets neither a create past the update guard (a pod stored without
// a host pod) nor a host pod out of an update or an ephemeral container.
func TestEachPathServesOnlyItsRequests(t *testing.T) {
	var hostCalls []string
	m := newMutator(t, nil)
	m.Host = fake.NewClientBuilder().WithScheme(kube.Scheme).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			hostCalls = append(hostCalls, "create "+obj.GetName())
			return c.Create(ctx, obj, opts...)
		},
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			hostCalls = append(hostCalls, "get "+key.Name)
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	handlers := map[string]admission.Handler{
		translate.WebhookPath:                    m,
		translate.WebhookPathPodUpdate:           updateGuard{},
		translate.WebhookPathEphemeralContainers: &ephemeralContainersCheck{Config: m.Config, Gate: m.Gate},
	}
	admitted := pod("web", "")
	admitted.Namespace = "team"
	admitted.Annotations = map[string]string{translate.AnnotationSyncID: "sync-0", translate.AnnotationHostName: translate.HostName("web", "team", "vc")}
	kinds := []struct {
		name        string
		operation   admissionv1.Operation
		subResource string
		servedBy    string // "" when no path serves it
	}{
		{"pod create", admissionv1.Create, "", translate.WebhookPath},
		{"pod update", admissionv1.Update, "", translate.WebhookPathPodUpdate},
		{"ephemeral containers", admissionv1.Update, "ephemeralcontainers", translate.WebhookPathEphemeralContainers},
		{"pod delete", admissionv1.Delete, "", ""},
		{"pod status update", admissionv1.Update, "status", ""},
		{"binding create", admissionv1.Create, "binding", ""},
		{"ephemeral containers create", admissionv1.Create, "ephemeralcontainers", ""},
	}
	for path, h := range handlers {
		for _, k := range kinds {
			t.Run(path+"/"+k.name, func(t *testing.T) {
				hostCalls = nil
				p := pod("web", "")
				if k.operation != admissionv1.Create || k.subResource != "" {
					p = admitted.DeepCopy()
				}
				req := request(t, p, false)
				req.Operation, req.SubResource = k.operation, k.subResource
				if k.operation == admissionv1.Update {
					req.OldObject = request(t, admitted, false).Object
				}
				resp := h.Handle(context.Background(), req)
				if k.servedBy == path {
					if !resp.Allowed {
						t.Fatalf("refused its own kind of request: %+v", resp.Result)
					}
					return
				}
				if resp.Allowed {
					t.Fatalf("allowed a %s sent to %s", k.name, path)
				}
				if resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, path) {
					t.Errorf("answered %d %q, want 400 naming %s", resp.Result.Code, resp.Result.Message, path)
				}
				if len(hostCalls) > 0 {
					t.Errorf("host called for a %s sent to %s: %v", k.name, path, hostCalls)
				}
			})
		}
	}
	pods := &corev1.PodList{}
	if err := m.Host.List(context.Background(), pods); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Errorf("%d host pods, want 1 (from the one create sent to %s)", len(pods.Items), translate.WebhookPath)
	}
}

// The answer's patch applies to the pod exactly as the tenant sent it, as
// the apiserver applies it: the generated name and podbridge's annotations
// are added, and the tenant's own annotations stay, whatever the JSON
// holds where annotations go.
func TestPatchAppliesToThePodAsSent(t *testing.T) {
	hostName := translate.HostName("web-abcde", "team", "vc")
	tests := []struct {
		name     string
		metadata string
		want     map[string]string
	}{
		{"no annotations", `{"generateName":"web-"}`, nil},
		{"empty annotations", `{"generateName":"web-","annotations":{}}`, nil},
		{"null annotations", `{"generateName":"web-","annotations":null}`, nil},
		{"tenant annotations with / and ~ in keys", `{"generateName":"web-","annotations":{"example.com/a~b":"1","plain":"2"}}`,
			map[string]string{"example.com/a~b": "1", "plain": "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":` + tt.metadata + `,"spec":{"containers":[{"name":"c","image":"i"}]}}`)
			req := request(t, pod("", "web-"), false)
			req.Object.Raw = raw
			resp := newMutator(t, nil).Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp.Result)
			}
			got := applyPatch(t, raw, resp.Patches)
			want := map[string]string{translate.AnnotationSyncID: "sync-1", translate.AnnotationHostName: hostName}
			maps.Copy(want, tt.want)
			if got.Name != "web-abcde" || !maps.Equal(got.Annotations, want) {
				t.Errorf("patched pod: name %q annotations %v, want web-abcde and %v", got.Name, got.Annotations, want)
			}
		})
	}
}

// An update may change the tenant's labels and annotations, never set
// podbridge's: the refusal names the field. One that drops podbridge's
// (kubectl replace of the tenant's own manifest) is admitted with them put
// back.
func TestUpdatesCannotTouchPodbridgeKeys(t *testing.T) {
	admitted := func() *corev1.Pod {
		p := pod("web", "")
		p.Labels = map[string]string{"app": "web"}
		p.Annotations = map[string]string{translate.AnnotationSyncID: "sync-1", translate.AnnotationHostName: "web-x-team-x-vc", "note": "a"}
		return p
	}
	bookkeeping := map[string]string{translate.AnnotationSyncID: "sync-1", translate.AnnotationHostName: "web-x-team-x-vc"}
	tests := []struct {
		name      string
		change    func(p *corev1.Pod)
		wantField string            // "" when the update is allowed
		wantKept  map[string]string // the annotations the admitted update must end with, when patched
	}{
		{name: "tenant keys change", change: func(p *corev1.Pod) { p.Labels["app"] = "api"; p.Annotations["note"] = "b" }},
		{name: "nothing changes", change: func(*corev1.Pod) {}},
		{name: "sync ID changed", change: func(p *corev1.Pod) { p.Annotations[translate.AnnotationSyncID] = "other" }, wantField: "metadata.annotations[podbridge.io/sync-id]"},
		{name: "reserved annotation added", change: func(p *corev1.Pod) { p.Annotations[translate.AnnotationUID] = "u" }, wantField: "metadata.annotations[podbridge.io/uid]"},
		{name: "reserved label added", change: func(p *corev1.Pod) { p.Labels[translate.LabelVCluster] = "other" }, wantField: "metadata.labels[podbridge.io/vcluster]"},
		{name: "managed-by podbridge claimed", change: func(p *corev1.Pod) { p.Labels[translate.LabelManagedBy] = translate.ManagedByValue }, wantField: "metadata.labels[app.kubernetes.io/managed-by]"},
		{name: "host name dropped: put back", change: func(p *corev1.Pod) { delete(p.Annotations, translate.AnnotationHostName) },
			wantKept: map[string]string{translate.AnnotationSyncID: "sync-1", translate.AnnotationHostName: "web-x-team-x-vc", "note": "a"}},
		{name: "every annotation replaced: podbridge's put back", change: func(p *corev1.Pod) { p.Annotations = map[string]string{"note": "c"} },
			wantKept: map[string]string{translate.AnnotationSyncID: "sync-1", translate.AnnotationHostName: "web-x-team-x-vc", "note": "c"}},
		{name: "no annotations at all: podbridge's put back", change: func(p *corev1.Pod) { p.Annotations = nil }, wantKept: bookkeeping},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, updated := admitted(), admitted()
			tt.change(updated)
			req := request(t, updated, false)
			req.Operation, req.OldObject = admissionv1.Update, request(t, old, false).Object
			resp := updateGuard{}.Handle(context.Background(), req)
			switch {
			case tt.wantKept != nil:
				if !resp.Allowed {
					t.Fatalf("refused: %v", resp.Result)
				}
				got := applyPatch(t, req.Object.Raw, resp.Patches)
				if !maps.Equal(got.Annotations, tt.wantKept) {
					t.Errorf("annotations after the patch %v, want %v", got.Annotations, tt.wantKept)
				}
			case tt.wantField == "":
				if !resp.Allowed || len(resp.Patches) > 0 {
					t.Errorf("refused or patched: %+v", resp)
				}
			case resp.Allowed || resp.Result.Code != http.StatusUnprocessableEntity || !strings.Contains(resp.Result.Message, tt.wantField):
				t.Errorf("got allowed=%t %d %q, want 422 naming %s", resp.Allowed, resp.Result.Code, resp.Result.Message, tt.wantField)
			}
		})
	}
}

// A retried admission finds the host pod name taken by the orphan of an
// admission that died, and the reflector collects that orphan between the
// create and the read: the retry creates its host pod, not a 404.
func TestRetryWhoseStaleHostPodVanishes(t *testing.T) {
	var creates int
	m := newMutator(t, func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		creates++
		if creates == 1 {
			return apierrors.NewAlreadyExists(corev1.Resource("pods"), obj.GetName()) // the stale pod, about to go
		}
		return c.Create(ctx, obj, opts...)
	})
	resp := m.Handle(context.Background(), request(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}, false))
	if !resp.Allowed {
		t.Fatalf("refused: %v", resp.Result)
	}
	if creates != 2 {
		t.Errorf("host creates: %d, want 2 (the first found the name taken)", creates)
	}
	host := &corev1.Pod{}
	if err := m.Host.Get(context.Background(), client.ObjectKey{Namespace: "host", Name: translate.HostName("web", "team-a", "vc")}, host); err != nil {
		t.Fatalf("host pod: %v", err)
	}
}

// The host's ServiceAccount admission gives a host pod that names no pull
// secrets those of its account. Whichever of the webhook's creates it
// happens to (the first, the retry after a collected orphan, the
// replacement of a stale pod), the pod is deleted again and the tenant's
// create refused naming the secret.
func TestHostPodGivenPullSecretsIsDeletedAndRefused(t *testing.T) {
	hostName := translate.HostName("web", "team", "vc")
	for _, tc := range []struct {
		name string
		// stale puts a host pod of the same name whose virtual pod is gone
		// in the host first, so the webhook replaces it.
		stale bool
	}{{name: "first create"}, {name: "replacing a stale host pod", stale: true}} {
		t.Run(tc.name, func(t *testing.T) {
			var host client.WithWatch
			m := newMutator(t, func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				host = c
				if p := obj.(*corev1.Pod); len(p.Spec.ImagePullSecrets) == 0 && p.Annotations[translate.AnnotationSyncID] == "sync-1" {
					p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "platform-registry"}}
				}
				return c.Create(ctx, obj, opts...)
			})
			if tc.stale {
				stale := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: hostName, Namespace: "host", Annotations: map[string]string{
					translate.AnnotationVCluster: "vc", translate.AnnotationSyncID: "old", translate.AnnotationName: "web", translate.AnnotationNamespace: "team",
				}}}
				if err := m.Host.Create(context.Background(), stale); err != nil {
					t.Fatal(err)
				}
			}
			resp := m.Handle(context.Background(), request(t, pod("web", ""), false))
			if resp.Allowed || resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, "platform-registry") {
				t.Fatalf("answer %+v, want 403 naming the pull secret", resp.Result)
			}
			err := host.Get(context.Background(), client.ObjectKey{Namespace: "host", Name: hostName}, &corev1.Pod{})
			if !apierrors.IsNotFound(err) {
				t.Fatalf("the host pod given pull secrets is still there: %v", err)
			}
		})
	}
}

// applyPatch applies an admission response's patch to the object's JSON.
func applyPatch(t *testing.T, raw []byte, ops []gomodulesjsonpatch.JsonPatchOperation) *corev1.Pod {
	t.Helper()
	encoded, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(encoded)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", encoded, err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying patch %s: %v", encoded, err)
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatal(err)
	}
	return got
}
