package policy

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

// Every PersistentVolumeClaimSpec field has a decision, so a field a new
// Kubernetes version adds fails this test rather than reaching the host
// unexamined.
func TestEveryClaimSpecFieldIsClassified(t *testing.T) {
	checkEveryFieldClassified(t, "claimSpecFields", claimSpecFields, jsonFieldNames("", reflect.TypeFor[corev1.PersistentVolumeClaimSpec]()))
}

// docs/storage.md's table lists every field with the code's treatment.
func TestDocsListEveryClaimSpecField(t *testing.T) {
	checkDocsListEveryField(t, "../docs/storage.md", claimSpecFields)
}

func gateClaim(mutate func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop"},
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

// Each attack on a claim is refused naming the field (and, for the storage
// class, the allowed values and the flag); a clone of the tenant's own
// claim is admitted and points at its host claim.
func TestCheckClaim(t *testing.T) {
	cases := []struct {
		name         string
		allowDefault bool
		claim        func(*corev1.PersistentVolumeClaim)
		want         []string // substrings of the errors; none: admitted
	}{
		{name: "allowed class"},
		{name: "class not allowed", claim: func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("premium") },
			want: []string{"spec.storageClassName", `"premium"`, "--allowed-storage-classes", "allowed: fast"}},
		{name: "default class not allowed", claim: func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = nil },
			want: []string{"spec.storageClassName", "--allow-default-storage-class"}},
		{name: "default class allowed", allowDefault: true, claim: func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = nil }},
		{name: "empty class", allowDefault: true, claim: func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("") },
			want: []string{"spec.storageClassName", "pre-provisioned"}},
		{name: "volumeName naming a host PV", claim: func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pvc-of-another-tenant" },
			want: []string{"spec.volumeName"}},
		{name: "selector", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "b"}}
		}, want: []string{"spec.selector"}},
		{name: "volume attributes class", claim: func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeAttributesClassName = ptr.To("gold") },
			want: []string{"spec.volumeAttributesClassName"}},
		{name: "clone of a claim of the namespace", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "db"}
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "db"}
		}},
		{name: "dataSourceRef naming another namespace's claim", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "db", Namespace: ptr.To("victim")}
		}, want: []string{"spec.dataSourceRef.namespace"}},
		{name: "snapshot", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"}
		}, want: []string{"spec.dataSource.kind", "VolumeSnapshot"}},
		{name: "populator", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr.To("example.com"), Kind: "Backup", Name: "b"}
		}, want: []string{"spec.dataSourceRef.kind"}},
		{name: "provisioner annotations", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Annotations = map[string]string{
				"volume.beta.kubernetes.io/storage-provisioner": "evil.example.com",
				"volume.kubernetes.io/selected-node":            "control-plane-1",
				"pv.kubernetes.io/bind-completed":               "yes",
			}
		}, want: []string{"metadata.annotations[volume.beta.kubernetes.io/storage-provisioner]", "metadata.annotations[volume.kubernetes.io/selected-node]", "metadata.annotations[pv.kubernetes.io/bind-completed]"}},
		{name: "podbridge's keys", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Labels = map[string]string{translate.LabelVCluster: "other"}
			c.Annotations = map[string]string{translate.AnnotationVCluster: "other"}
		}, want: []string{"metadata.labels[podbridge.io/vcluster]", "metadata.annotations[podbridge.io/vcluster]"}},
		{name: "the keys podbridge sets on the virtual claim", claim: func(c *corev1.PersistentVolumeClaim) {
			c.Annotations = map[string]string{translate.AnnotationSyncID: "id", translate.AnnotationHostName: "h"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig
			cfg.AllowDefaultStorageClass = tc.allowDefault
			g := Gate{Config: cfg}
			c := gateClaim(tc.claim)
			host, errs := translate.HostClaim(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace}, Spec: c.Spec}, cfg, "id")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			got := g.CheckClaim(c, nil, host).ToAggregate()
			checkRefusal(t, got, tc.want)
		})
	}
}

// Whatever translation produced, a host claim is refused unless it is in
// the host namespace with podbridge's labels, carries no tenant annotation,
// names no host volume, and clones only the host claim of a claim of the
// same virtual namespace; once the host claim exists, only its requests
// may change.
func TestCheckClaimHostRules(t *testing.T) {
	g := Gate{Config: testConfig}
	clone := gateClaim(func(c *corev1.PersistentVolumeClaim) {
		c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "db"}
	})
	for name, mutate := range map[string]func(h *corev1.PersistentVolumeClaim){
		"another namespace":       func(h *corev1.PersistentVolumeClaim) { h.Namespace = "kube-system" },
		"another vcluster":        func(h *corev1.PersistentVolumeClaim) { h.Labels[translate.LabelVCluster] = "other" },
		"another virtual ns":      func(h *corev1.PersistentVolumeClaim) { h.Labels[translate.LabelNamespace] = "other" },
		"a tenant annotation":     func(h *corev1.PersistentVolumeClaim) { h.Annotations["volume.kubernetes.io/selected-node"] = "n" },
		"a host volume":           func(h *corev1.PersistentVolumeClaim) { h.Spec.VolumeName = "pv-1" },
		"another tenant's source": func(h *corev1.PersistentVolumeClaim) { h.Spec.DataSource.Name = "db-x-shop-x-other" },
		"an untranslated source":  func(h *corev1.PersistentVolumeClaim) { h.Spec.DataSource.Name = "db" },
	} {
		t.Run(name, func(t *testing.T) {
			host, _ := translate.HostClaim(clone, g.Config, "id")
			if errs := g.CheckClaim(clone, nil, host); len(errs) > 0 {
				t.Fatalf("untouched translation refused: %v", errs)
			}
			mutate(host)
			if errs := g.CheckClaim(clone, nil, host); len(errs) == 0 {
				t.Error("admitted")
			}
		})
	}

	// Updates: a resize passes, a class sneaked in does not.
	claim := gateClaim(nil)
	current, _ := translate.HostClaim(claim, g.Config, "id")
	current.Spec.VolumeName = "pvc-123" // the host bound it
	grown := gateClaim(func(c *corev1.PersistentVolumeClaim) {
		c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	})
	desired, _ := translate.HostClaim(grown, g.Config, "id")
	if errs := g.CheckClaim(grown, current, desired); len(errs) > 0 {
		t.Errorf("resize refused: %v", errs)
	}
	// The binding the host decided comes back on the virtual claim; no other.
	bound := gateClaim(func(c *corev1.PersistentVolumeClaim) {
		c.Spec.VolumeName = "pvc-123"
		c.Annotations = map[string]string{"pv.kubernetes.io/bind-completed": "yes"}
	})
	current.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
	if errs := g.CheckClaim(bound, current, desired); len(errs) > 0 {
		t.Errorf("the host's binding mirrored refused: %v", errs)
	}
	bound.Spec.VolumeName = "pv-of-another"
	if errs := g.CheckClaim(bound, current, desired).ToAggregate(); errs == nil || !strings.Contains(errs.Error(), "spec.volumeName") {
		t.Errorf("another volume name: %v", errs)
	}
	g.Config.StorageClasses = append(g.Config.StorageClasses, "premium")
	reclassed := gateClaim(func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("premium") })
	desired, _ = translate.HostClaim(reclassed, g.Config, "id")
	if errs := g.CheckClaim(reclassed, current, desired).ToAggregate(); errs == nil || !strings.Contains(errs.Error(), "only spec.resources.requests") {
		t.Errorf("class changed by an update: %v", errs)
	}
}

// A pod's claim volume must name the host claim of the claim of the same
// name in the pod's own namespace, whatever translation did.
func TestGateClaimVolume(t *testing.T) {
	gate := testGate(t)
	v := virtualPod()
	v.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
	host, _, errs := translate.HostPod(v, testConfig, "sync")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got, want := host.Spec.Volumes[0].PersistentVolumeClaim.ClaimName, translate.HostClaimName("data", "team", "vc"); got != want {
		t.Fatalf("host claim %q, want %q", got, want)
	}
	if errs := gate.Check(v, host); len(errs) > 0 {
		t.Fatalf("refused: %v", errs)
	}
	for _, other := range []string{"data", translate.HostClaimName("data", "other-ns", "vc"), translate.HostClaimName("data", "team", "other-vc")} {
		h := host.DeepCopy()
		h.Spec.Volumes[0].PersistentVolumeClaim.ClaimName = other
		if errs := gate.Check(v, h).ToAggregate(); errs == nil || !strings.Contains(errs.Error(), "spec.volumes[0].persistentVolumeClaim.claimName") {
			t.Errorf("host pod naming claim %q: %v", other, errs)
		}
	}
}
