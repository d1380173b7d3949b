package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

var claimTestConfig = translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "sa", StorageClasses: []string{"fast"}}

func testClaim(mutate func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop", Labels: map[string]string{"app": "db"}, Annotations: map[string]string{"note": "mine"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("fast"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if mutate != nil {
		mutate(c)
	}
	return c
}

func claimRequest(t *testing.T, op admissionv1.Operation, uid string, dryRun bool, obj, old *corev1.PersistentVolumeClaim) admission.Request {
	t.Helper()
	raw := func(c *corev1.PersistentVolumeClaim) runtime.RawExtension {
		if c == nil {
			return runtime.RawExtension{}
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: types.UID(uid), Operation: op, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"},
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"}, Namespace: "shop", DryRun: ptr.To(dryRun),
		Object: raw(obj), OldObject: raw(old),
	}}
}

func claimMutators(host client.Client, limit int64) (create, update *claimMutator) {
	virtual := fake.NewClientBuilder().WithScheme(kube.Scheme).Build()
	storage := caps.NewHostStorage(limit)
	m := func(u bool) *claimMutator {
		return &claimMutator{
			Host: host, Virtual: virtual, Config: claimTestConfig, Gate: policy.Gate{Config: claimTestConfig}, HostTimeout: time.Second,
			NewSyncID: func() string { return "id-1" }, NameSuffix: func() string { return "abcde" }, Storage: storage, Update: u,
		}
	}
	return m(false), m(true)
}

// A claim create makes its host claim (translated name, podbridge's labels
// and sync ID, no tenant annotation) and patches the sync ID onto the
// virtual claim; a dry run writes nothing; a refusal names the field; a
// forged sync ID gets nothing; a request over the cap is refused naming
// the flag; a resize is written to the host claim and a class change is
// refused.
func TestClaimMutator(t *testing.T) {
	ctx := context.Background()
	host := fake.NewClientBuilder().WithScheme(kube.Scheme).Build()
	create, update := claimMutators(host, 3<<30)
	hostKey := client.ObjectKey{Namespace: "host", Name: translate.HostClaimName("data", "shop", "vc")}
	get := func() *corev1.PersistentVolumeClaim {
		c := &corev1.PersistentVolumeClaim{}
		if err := host.Get(ctx, hostKey, c); err != nil {
			return nil
		}
		return c
	}

	if resp := create.Handle(ctx, claimRequest(t, admissionv1.Create, "u0", true, testClaim(nil), nil)); !resp.Allowed || get() != nil {
		t.Fatalf("dry run: %+v, host claim %v", resp.Result, get())
	}
	resp := create.Handle(ctx, claimRequest(t, admissionv1.Create, "u1", false, testClaim(nil), nil))
	if !resp.Allowed {
		t.Fatalf("create refused: %+v", resp.Result)
	}
	h := get()
	if h == nil {
		t.Fatal("no host claim")
	}
	if h.Labels[translate.TenantKey("app")] != "db" || h.Labels[translate.LabelVCluster] != "vc" || h.Annotations["note"] != "" ||
		h.Annotations[translate.AnnotationSyncID] != "id-1" || *h.Spec.StorageClassName != "fast" {
		t.Errorf("host claim %+v", h.ObjectMeta)
	}
	patched := false
	for _, p := range resp.Patches {
		if strings.Contains(p.Path, "annotations") && strings.Contains(p.Path, "sync-id") {
			patched = true
		}
	}
	if !patched {
		t.Errorf("no sync ID patched: %v", resp.Patches)
	}
	// A retry of the same request finds its host claim; a reinvocation
	// carrying the sync ID podbridge gave writes nothing.
	if resp := create.Handle(ctx, claimRequest(t, admissionv1.Create, "u1", false, testClaim(nil), nil)); !resp.Allowed {
		t.Errorf("retried create refused: %+v", resp.Result)
	}
	reinvoked := testClaim(func(c *corev1.PersistentVolumeClaim) { c.Annotations[translate.AnnotationSyncID] = "id-1" })
	if resp := create.Handle(ctx, claimRequest(t, admissionv1.Create, "u1b", false, reinvoked, nil)); !resp.Allowed {
		t.Errorf("reinvoked create refused: %+v", resp.Result)
	}
	if h2 := get(); h2.ResourceVersion != h.ResourceVersion {
		t.Errorf("host claim written again: %s, was %s", h2.ResourceVersion, h.ResourceVersion)
	}

	refused := func(resp admission.Response, code int32, want ...string) {
		t.Helper()
		if resp.Allowed || resp.Result.Code != code {
			t.Fatalf("answer %+v, want %d", resp.Result, code)
		}
		for _, w := range want {
			if !strings.Contains(resp.Result.Message, w) {
				t.Errorf("answer %q does not name %q", resp.Result.Message, w)
			}
		}
	}
	other := func(mutate func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
		return testClaim(func(c *corev1.PersistentVolumeClaim) { c.Name = "other"; mutate(c) })
	}
	refused(create.Handle(ctx, claimRequest(t, admissionv1.Create, "u2", false, other(func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-1" }), nil)),
		http.StatusUnprocessableEntity, "spec.volumeName")
	refused(create.Handle(ctx, claimRequest(t, admissionv1.Create, "u3", false, other(func(c *corev1.PersistentVolumeClaim) {
		c.Annotations[translate.AnnotationSyncID] = "forged"
	}), nil)), http.StatusForbidden, translate.AnnotationSyncID)
	refused(create.Handle(ctx, claimRequest(t, admissionv1.Create, "u4", false, other(func(c *corev1.PersistentVolumeClaim) {
		c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("3Gi")
	}), nil)), http.StatusUnprocessableEntity, "spec.resources.requests[storage]", "--max-claim-storage", "3Gi")

	// Updates: a resize reaches the host claim; a class change does not.
	stored := testClaim(func(c *corev1.PersistentVolumeClaim) {
		c.Annotations[translate.AnnotationSyncID] = "id-1"
		c.Annotations[translate.AnnotationHostName] = hostKey.Name
	})
	grown := stored.DeepCopy()
	grown.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	if resp := update.Handle(ctx, claimRequest(t, admissionv1.Update, "u5", false, grown, stored)); !resp.Allowed {
		t.Fatalf("resize refused: %+v", resp.Result)
	}
	if got := get().Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "2Gi" {
		t.Errorf("host claim requests %s after the resize", got.String())
	}
	reclassed := grown.DeepCopy()
	reclassed.Spec.StorageClassName = ptr.To("premium")
	refused(update.Handle(ctx, claimRequest(t, admissionv1.Update, "u6", false, reclassed, grown)), http.StatusUnprocessableEntity, "spec.storageClassName", "--allowed-storage-classes")
	update.Gate.Config.StorageClasses = []string{"fast", "premium"}
	refused(update.Handle(ctx, claimRequest(t, admissionv1.Update, "u7", false, reclassed, grown)), http.StatusUnprocessableEntity, "only spec.resources.requests")
	huge := grown.DeepCopy()
	huge.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("4Gi")
	refused(update.Handle(ctx, claimRequest(t, admissionv1.Update, "u8", false, huge, grown)), http.StatusUnprocessableEntity, "--max-claim-storage")
}

// A resize whose host write conflicts (the host's controllers write the
// claim too) is read again and written once more.
func TestClaimResizeRetriedOnConflict(t *testing.T) {
	ctx := context.Background()
	conflicts := 1
	host := fake.NewClientBuilder().WithScheme(kube.Scheme).WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if conflicts > 0 {
				conflicts--
				return apierrors.NewConflict(claimResource, obj.GetName(), nil)
			}
			return c.Update(ctx, obj, opts...)
		},
	}).Build()
	create, update := claimMutators(host, 3<<30)
	if resp := create.Handle(ctx, claimRequest(t, admissionv1.Create, "u1", false, testClaim(nil), nil)); !resp.Allowed {
		t.Fatalf("create refused: %+v", resp.Result)
	}
	hostKey := client.ObjectKey{Namespace: "host", Name: translate.HostClaimName("data", "shop", "vc")}
	stored := testClaim(func(c *corev1.PersistentVolumeClaim) {
		c.Annotations[translate.AnnotationSyncID] = "id-1"
		c.Annotations[translate.AnnotationHostName] = hostKey.Name
	})
	grown := stored.DeepCopy()
	grown.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	if resp := update.Handle(ctx, claimRequest(t, admissionv1.Update, "u2", false, grown, stored)); !resp.Allowed {
		t.Fatalf("resize refused: %+v", resp.Result)
	}
	got := &corev1.PersistentVolumeClaim{}
	if err := host.Get(ctx, hostKey, got); err != nil {
		t.Fatal(err)
	}
	if q := got.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "2Gi" || conflicts != 0 {
		t.Errorf("host claim requests %s after a conflicted resize (conflicts left %d)", q.String(), conflicts)
	}
}

// Each claim path serves its own kind of request only.
func TestClaimPathsServeTheirOwnKind(t *testing.T) {
	c := testClaim(nil)
	req := claimRequest(t, admissionv1.Update, "u", false, c, c)
	if resp := (&claimMutator{}).Handle(context.Background(), req); resp.Allowed || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, translate.WebhookPathClaim) {
		t.Errorf("update sent to the create path: %+v", resp.Result)
	}
	req = claimRequest(t, admissionv1.Create, "u", false, c, nil)
	req.Resource.Resource = "pods"
	if resp := (&claimMutator{}).Handle(context.Background(), req); resp.Allowed || resp.Result.Code != http.StatusBadRequest {
		t.Errorf("pod sent to the claim path: %+v", resp.Result)
	}
}

// A pod's claim volume mounts the host claim of its namespace's claim: a
// claim not made yet is no refusal (the pod waits), the tenant's own host
// claim is mounted, and an object of the host namespace that only carries
// the name (a platform's claim) is refused naming the field.
func TestPodClaimsOwned(t *testing.T) {
	ctx := context.Background()
	m := newMutator(t, nil)
	withClaim := func(name, claim string) *corev1.Pod {
		p := pod(name, "")
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
		return p
	}
	if resp := m.Handle(ctx, request(t, withClaim("waits", "later"), false)); !resp.Allowed {
		t.Fatalf("pod of a claim not made yet: %+v", resp.Result)
	}
	own, errs := translate.HostClaim(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "team"}}, m.Config, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	taken := own.DeepCopy()
	taken.Name = translate.HostClaimName("taken", "team", "vc")
	taken.Annotations = map[string]string{"platform": "database"}
	for _, c := range []client.Object{own, taken} {
		if err := m.Host.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if resp := m.Handle(ctx, request(t, withClaim("mounts", "mine"), false)); !resp.Allowed {
		t.Fatalf("pod of the tenant's own claim: %+v", resp.Result)
	}
	resp := m.Handle(ctx, request(t, withClaim("steals", "taken"), false))
	if resp.Allowed || resp.Result.Code != http.StatusUnprocessableEntity || !strings.Contains(resp.Result.Message, "spec.volumes[0].persistentVolumeClaim.claimName") {
		t.Errorf("pod of a host claim not its own: %+v", resp.Result)
	}
}
