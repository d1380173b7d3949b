package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/translate"
)

func simpleClaim(namespace, name, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(allowedStorageClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

func hostClaimKey(virtual *corev1.PersistentVolumeClaim) client.ObjectKey {
	tc := env.Options.Translate
	return client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostClaimName(virtual.Name, virtual.Namespace, tc.VCluster)}
}

func getHostClaim(t *testing.T, virtual *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	t.Helper()
	host := &corev1.PersistentVolumeClaim{}
	if err := hostClient.Get(context.Background(), hostClaimKey(virtual), host); err != nil {
		t.Fatalf("host claim of %s/%s: %v", virtual.Namespace, virtual.Name, err)
	}
	return host
}

// releaseHostClaim removes the finalizers of a host claim once it is
// being deleted, as the host's claim-protection controller does when no
// pod uses it (the test bed's host runs no controller-manager).
func releaseHostClaim(t *testing.T, key client.ObjectKey) {
	t.Helper()
	eventually(t, 30*time.Second, "host claim "+key.Name+" released", func(ctx context.Context) (bool, string) {
		c := &corev1.PersistentVolumeClaim{}
		if err := hostClient.Get(ctx, key, c); apierrors.IsNotFound(err) {
			return true, ""
		} else if err != nil {
			return false, err.Error()
		}
		if c.DeletionTimestamp == nil {
			return false, "not being deleted"
		}
		c.Finalizers = nil
		if err := hostClient.Update(ctx, c); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// bindHostClaim binds a host claim to a 1Gi host volume made for it, as
// the host's provisioner and binder would (the test bed's host has
// neither).
func bindHostClaim(t *testing.T, key client.ObjectKey) {
	t.Helper()
	const size = "1Gi"
	ctx := context.Background()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + key.Name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:       allowedStorageClass,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + key.Name}},
			ClaimRef:               &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: key.Namespace, Name: key.Name},
		},
	}
	if err := hostClient.Create(ctx, pv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), pv) })
	pv.Status.Phase = corev1.VolumeBound
	if err := hostClient.Status().Update(ctx, pv); err != nil {
		t.Fatal(err)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &corev1.PersistentVolumeClaim{}
		if err := hostClient.Get(ctx, key, c); err != nil {
			return err
		}
		c.Spec.VolumeName = pv.Name
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		// What the binder records, and the scheduler reads.
		c.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		c.Annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
		if err := hostClient.Update(ctx, c); err != nil {
			return err
		}
		c.Status = corev1.PersistentVolumeClaimStatus{
			Phase:       corev1.ClaimBound,
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
		}
		return hostClient.Status().Update(ctx, c)
	})
	if err != nil {
		t.Fatalf("binding host claim %s: %v", key.Name, err)
	}
}

// waitVirtualClaim waits until the stored virtual claim passes ok.
func waitVirtualClaim(t *testing.T, claim *corev1.PersistentVolumeClaim, what string, ok func(*corev1.PersistentVolumeClaim) bool) {
	t.Helper()
	got := &corev1.PersistentVolumeClaim{}
	eventually(t, 30*time.Second, what, func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(claim), got); err != nil {
			return false, err.Error()
		}
		return ok(got), fmt.Sprintf("status %+v", got.Status)
	})
}

// allowExpansion makes the allowed class on the host, with volume
// expansion, and waits for its mirror in the virtual cluster: the host's
// and the virtual apiserver's resize admission each read the class of a
// claim that grows.
func allowExpansion(t *testing.T) {
	t.Helper()
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: allowedStorageClass}, Provisioner: "example.com/test", AllowVolumeExpansion: ptr.To(true)}
	createHostClass(t, class)
	waitMirror(t, func(m *storagev1.StorageClass) bool { return m.AllowVolumeExpansion != nil && *m.AllowVolumeExpansion })
}

// createHostClass creates a host StorageClass for the test; at its end the
// class goes and so does its mirror.
func createHostClass(t *testing.T, class *storagev1.StorageClass) {
	t.Helper()
	if err := hostClient.Create(context.Background(), class); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = hostClient.Delete(context.Background(), class)
		waitGone(t, virtualClient, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class.Name}}, 30*time.Second)
	})
}

// waitMirror waits for the virtual mirror of the allowed class to pass ok.
func waitMirror(t *testing.T, ok func(*storagev1.StorageClass) bool) {
	t.Helper()
	name := allowedStorageClass
	eventually(t, 30*time.Second, "virtual StorageClass "+name+" mirrored", func(ctx context.Context) (bool, string) {
		m := &storagev1.StorageClass{}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
			return false, err.Error()
		}
		return ok(m), fmt.Sprintf("%+v", m)
	})
}

// The allowed host classes appear in the virtual cluster as read-only
// mirrors (the host's default marked, no parameters), the tenant's edit
// or deletion is undone, a class the platform does not allow does not
// appear, and a mirror goes with its host class.
func TestStorageClassMirrors(t *testing.T) {
	ctx := context.Background()
	allowed := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: allowedStorageClass, Annotations: map[string]string{translate.AnnotationDefaultStorageClass: "true"}},
		Provisioner:       "csi.example.com",
		Parameters:        map[string]string{"csi.storage.k8s.io/provisioner-secret-name": "platform-credentials"},
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
	}
	createHostClass(t, allowed)
	other := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "premium"}, Provisioner: "csi.example.com"}
	if err := hostClient.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), other) })
	isMirror := func(m *storagev1.StorageClass) bool {
		return translate.IsDefaultStorageClass(m) && len(m.Parameters) == 0 && m.Provisioner == allowed.Provisioner &&
			m.VolumeBindingMode != nil && *m.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
	}
	waitMirror(t, isMirror)
	if err := virtualClient.Get(ctx, client.ObjectKey{Name: "premium"}, &storagev1.StorageClass{}); !apierrors.IsNotFound(err) {
		t.Errorf("a class the platform does not allow in the virtual cluster: %v", err)
	}

	// The tenant unmarks the default: put back.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		m := &storagev1.StorageClass{}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: allowedStorageClass}, m); err != nil {
			return err
		}
		m.Annotations[translate.AnnotationDefaultStorageClass] = "false"
		return virtualClient.Update(ctx, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitMirror(t, isMirror)
	// The tenant deletes it: made again.
	if err := virtualClient.Delete(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: allowedStorageClass}}); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, isMirror)

	// With the host's default mirrored, a claim that names no class gets
	// the allowed default's name from the virtual apiserver and is admitted.
	ns := namespace(t)
	claim := simpleClaim(ns, "defaulted", "1Gi")
	claim.Spec.StorageClassName = nil
	if err := virtualClient.Create(ctx, claim); err != nil {
		t.Fatalf("claim of the default class: %v", err)
	}
	if h := getHostClaim(t, claim); h.Spec.StorageClassName == nil || *h.Spec.StorageClassName != allowedStorageClass {
		t.Errorf("host claim's class %v", h.Spec.StorageClassName)
	}
}

// A claim create makes its host claim inside the request (translated name,
// podbridge's labels and sync ID, tenant labels under tenant keys, no
// tenant annotation); the host's binding is mirrored on the virtual claim;
// a resize is on the host claim when the update returns; deleting the
// virtual claim deletes the host claim.
func TestClaimCreateStatusResizeDelete(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	allowExpansion(t)
	claim := simpleClaim(ns, "data", "1Gi")
	claim.Labels = map[string]string{"app": "db"}
	claim.Annotations = map[string]string{"team": "storage"}
	start := time.Now()
	if err := virtualClient.Create(ctx, claim); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("claim create through podbridge took %s", time.Since(start))
	host := getHostClaim(t, claim)
	tc := env.Options.Translate
	if host.Labels[translate.TenantKey("app")] != "db" || host.Labels[translate.LabelVCluster] != tc.VCluster || host.Labels[translate.LabelNamespace] != ns {
		t.Errorf("host labels %v", host.Labels)
	}
	for k := range host.Annotations {
		if !translate.IsReserved(k) {
			t.Errorf("tenant annotation %q on the host claim", k)
		}
	}
	if id := claim.Annotations[translate.AnnotationSyncID]; id == "" || id != host.Annotations[translate.AnnotationSyncID] {
		t.Errorf("sync IDs: virtual %q, host %q", id, host.Annotations[translate.AnnotationSyncID])
	}
	if *host.Spec.StorageClassName != allowedStorageClass || host.Spec.VolumeName != "" {
		t.Errorf("host spec %+v", host.Spec)
	}

	// The host binds; the virtual claim says so.
	bindHostClaim(t, hostClaimKey(claim))
	waitVirtualClaim(t, claim, "virtual claim Bound", func(c *corev1.PersistentVolumeClaim) bool {
		q := c.Status.Capacity[corev1.ResourceStorage]
		return c.Status.Phase == corev1.ClaimBound && q.String() == "1Gi"
	})

	// The binding is mirrored too: the virtual claim names the volume, and
	// a read-only virtual volume of that name is bound to it.
	pvName := "pv-" + hostClaimKey(claim).Name
	waitVirtualClaim(t, claim, "virtual claim bound to "+pvName, func(c *corev1.PersistentVolumeClaim) bool {
		return c.Spec.VolumeName == pvName && c.Annotations["pv.kubernetes.io/bind-completed"] == "yes"
	})
	pv := waitVirtualVolume(t, pvName, func(pv *corev1.PersistentVolume) bool { return pv.Status.Phase == corev1.VolumeBound })
	current := &corev1.PersistentVolumeClaim{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(claim), current); err != nil {
		t.Fatal(err)
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Name != claim.Name || ref.Namespace != ns || ref.UID != current.UID ||
		pv.Spec.CSI == nil || pv.Spec.CSI.Driver != translate.VirtualVolumeDriver || pv.Spec.HostPath != nil || pv.Spec.StorageClassName != allowedStorageClass {
		t.Errorf("virtual volume %+v", pv.Spec)
	}
	// The tenant edits it: put back.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		edited := &corev1.PersistentVolume{}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: pvName}, edited); err != nil {
			return err
		}
		edited.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRecycle
		return virtualClient.Update(ctx, edited)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitVirtualVolume(t, pvName, func(pv *corev1.PersistentVolume) bool {
		return pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete
	})

	// podbridge check finds the pair whole, statuses included.
	violations, err := check.RunClaims(ctx, hostClient, virtualClient, check.Options{Config: tc, OrphanGracePeriod: orphanGrace, Now: time.Now(), Statuses: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		if strings.HasPrefix(v.Virtual, ns+"/") {
			t.Errorf("podbridge check: %v", v)
		}
	}

	// A resize reaches the host claim before the update returns.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(claim), claim); err != nil {
			return err
		}
		claim.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		return virtualClient.Update(ctx, claim)
	})
	if err != nil {
		t.Fatalf("resize: %v", err)
	}
	if q := getHostClaim(t, claim).Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "2Gi" {
		t.Errorf("host claim requests %s after the resize", q.String())
	}
	// The host's resize status is mirrored.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		h := getHostClaim(t, claim)
		h.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}
		h.Status.AllocatedResourceStatuses = map[corev1.ResourceName]corev1.ClaimResourceStatus{corev1.ResourceStorage: corev1.PersistentVolumeClaimControllerResizeInProgress}
		return hostClient.Status().Update(ctx, h)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitVirtualClaim(t, claim, "resize status mirrored", func(c *corev1.PersistentVolumeClaim) bool {
		return c.Status.AllocatedResourceStatuses[corev1.ResourceStorage] == corev1.PersistentVolumeClaimControllerResizeInProgress
	})

	// Deleting the virtual claim (no pod uses it) deletes the host claim.
	if err := virtualClient.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	waitGone(t, virtualClient, claim, 30*time.Second)
	eventually(t, 30*time.Second, "host claim deleted", func(ctx context.Context) (bool, string) {
		return goneOrGoing(ctx, hostClient, host)
	})
	releaseHostClaim(t, hostClaimKey(claim))
	// The virtual volume goes with its claim.
	waitGone(t, virtualClient, pv, 30*time.Second)
}

// waitVirtualVolume waits until the virtual volume name exists and passes
// ok, and returns it.
func waitVirtualVolume(t *testing.T, name string, ok func(*corev1.PersistentVolume) bool) *corev1.PersistentVolume {
	t.Helper()
	pv := &corev1.PersistentVolume{}
	eventually(t, 30*time.Second, "virtual PersistentVolume "+name, func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: name}, pv); err != nil {
			return false, err.Error()
		}
		return ok(pv), fmt.Sprintf("%+v %+v", pv.Spec, pv.Status)
	})
	return pv
}

// A host claim deleted on the host takes its virtual claim with it, and a
// host claim whose virtual claim was never stored (an orphan of a refused
// create) is collected by sync ID.
func TestClaimDeletionUpwardAndOrphans(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	claim := simpleClaim(ns, "scratch", "1Gi")
	if err := virtualClient.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	host := getHostClaim(t, claim)
	if err := hostClient.Delete(ctx, host); err != nil {
		t.Fatal(err)
	}
	releaseHostClaim(t, hostClaimKey(claim))
	waitGone(t, virtualClient, claim, 30*time.Second)
	waitClaimEvent(t, claim, reflector.ReasonHostClaimGone)

	tc := env.Options.Translate
	orphan, errs := translate.HostClaim(simpleClaim(ns, "never-stored", "1Gi"), tc, "orphan-sync-id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := hostClient.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "orphan host claim collected", func(ctx context.Context) (bool, string) {
		return goneOrGoing(ctx, hostClient, orphan)
	})
	releaseHostClaim(t, client.ObjectKeyFromObject(orphan))
}

// waitClaimEvent waits for an event of reason about claim.
func waitClaimEvent(t *testing.T, claim *corev1.PersistentVolumeClaim, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, reason+" event", func(ctx context.Context) (bool, string) {
		list := &corev1.EventList{}
		if err := virtualClient.List(ctx, list, client.InNamespace(claim.Namespace)); err != nil {
			return false, err.Error()
		}
		for _, e := range list.Items {
			if e.Reason == reason && e.InvolvedObject.Name == claim.Name {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(list.Items))
	})
}

// A claim the host refuses is refused at the tenant's create with the
// host's reason, and nothing is stored.
func TestClaimHostRefusalReachesTheTenant(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	tc := env.Options.Translate
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: tc.HostNamespace, Name: "claim-storage"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceName(allowedStorageClass + ".storageclass.storage.k8s.io/requests.storage"): resource.MustParse("5Gi")}},
	}
	if err := hostClient.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), quota) })
	// The host's quota controller would fill its status; the test bed's
	// host runs none.
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{corev1.ResourceName(allowedStorageClass + ".storageclass.storage.k8s.io/requests.storage"): resource.MustParse("0")}}
	if err := hostClient.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	claim := simpleClaim(ns, "big", "10Gi")
	err := virtualClient.Create(ctx, claim)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "exceeded quota") || !strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("create over the host's quota: %v", err)
	}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(claim), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
		t.Errorf("virtual claim after the host's refusal: %v", err)
	}
	if err := hostClient.Get(ctx, hostClaimKey(claim), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
		t.Errorf("host claim after the host's refusal: %v", err)
	}
}

// The attacks on a claim, through the real virtual apiserver: each is
// refused 422 naming the field (the storage class: the allowed values and
// the flag), and nothing reaches the host. A clone names the tenant's own
// host claim whatever it names.
func TestClaimAttacks(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	tc := env.Options.Translate
	for _, a := range []struct {
		name   string
		mutate func(*corev1.PersistentVolumeClaim)
		want   []string
	}{
		{"volumeName naming a host PV", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pvc-of-another-tenant" }, []string{"spec.volumeName"}},
		{"selector", func(c *corev1.PersistentVolumeClaim) { c.Spec.Selector = metav1LabelSelectorFor("tenant", "b") }, []string{"spec.selector"}},
		{"a class not allowed", func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("premium") },
			[]string{"spec.storageClassName", "--allowed-storage-classes", allowedStorageClass}},
		{"the host's default class", func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = nil },
			[]string{"spec.storageClassName", "--allow-default-storage-class"}},
		{"dataSourceRef naming another namespace's claim", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "db", Namespace: ptr.To("victim")}
		}, []string{"spec.dataSourceRef.namespace"}},
		{"a snapshot", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"}
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap"}
		}, []string{"spec.dataSource.kind", "VolumeSnapshot"}},
		{"provisioner annotations", func(c *corev1.PersistentVolumeClaim) {
			c.Annotations = map[string]string{"volume.beta.kubernetes.io/storage-provisioner": "evil.example.com", "volume.kubernetes.io/selected-node": "control-plane-1"}
		}, []string{"volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/selected-node"}},
		{"podbridge's keys", func(c *corev1.PersistentVolumeClaim) {
			c.Labels = map[string]string{translate.LabelVCluster: "other"}
		}, []string{"metadata.labels[podbridge.io/vcluster]"}},
		{"a size over the cap", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Resources.Requests[corev1.ResourceStorage] = *resource.NewQuantity(caps.Defaults().MaxClaimStorage+1, resource.BinarySI)
		}, []string{"spec.resources.requests[storage]", "--" + caps.FlagMaxClaimStorage}},
	} {
		t.Run(a.name, func(t *testing.T) {
			claim := simpleClaim(ns, "attack-"+podName(a.name), "1Gi")
			a.mutate(claim)
			err := virtualClient.Create(ctx, claim)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: %v, want 422 Invalid", err)
			}
			for _, w := range a.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q: %v", w, err)
				}
			}
			if err := hostClient.Get(ctx, hostClaimKey(claim), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
				t.Errorf("host claim after refusal: %v", err)
			}
		})
	}

	t.Run("a clone naming another tenant's host claim gets its own", func(t *testing.T) {
		victim := translate.HostClaimName("db", "victim", "other-vcluster")
		claim := simpleClaim(ns, "clone", "1Gi")
		claim.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: victim}
		if err := virtualClient.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
		host := getHostClaim(t, claim)
		if want := translate.HostClaimName(victim, ns, tc.VCluster); host.Spec.DataSource == nil || host.Spec.DataSource.Name != want {
			t.Errorf("host claim clones %+v, want the tenant's own %s", host.Spec.DataSource, want)
		}
	})

	t.Run("an update that sneaks in another class", func(t *testing.T) {
		claim := simpleClaim(ns, "sneaky", "1Gi")
		if err := virtualClient.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
		claim.Spec.StorageClassName = ptr.To("premium")
		err := virtualClient.Update(ctx, claim)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.storageClassName") || !strings.Contains(err.Error(), "--allowed-storage-classes") {
			t.Fatalf("class changed by an update: %v", err)
		}
		if h := getHostClaim(t, claim); *h.Spec.StorageClassName != allowedStorageClass {
			t.Errorf("host claim's class %q", *h.Spec.StorageClassName)
		}
	})
}

// A pod naming a claim gets the host claim of that claim in its own
// namespace. A pod whose claim does not exist yet is admitted and waits
// (the host scheduler finds no claim: the virtual pod shows it
// unschedulable, naming its own claim); once the claim exists and the
// host binds it, it runs.
func TestPodWithClaim(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "db")
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("pod before its claim: %v", err)
	}
	claim := simpleClaim(ns, "data", "1Gi")
	hostPod, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hostPod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName, hostClaimKey(claim).Name; got != want {
		t.Errorf("host pod names claim %q, want %q", got, want)
	}
	eventually(t, 30*time.Second, "virtual pod unschedulable for want of its claim", func(ctx context.Context) (bool, string) {
		current := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), current); err != nil {
			return false, err.Error()
		}
		for _, c := range current.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, `persistentvolumeclaim "data"`) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("conditions %+v", current.Status.Conditions)
	})

	if err := virtualClient.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	bindHostClaim(t, hostClaimKey(claim))
	waitRunningBound(t, pod)

	// The claim in use stays Terminating until its pod is gone, and its
	// host claim stays until then.
	host := getHostClaim(t, claim)
	if err := virtualClient.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * orphanGrace)
	current := &corev1.PersistentVolumeClaim{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(claim), current); err != nil || current.DeletionTimestamp == nil {
		t.Errorf("claim in use after its deletion: %v, deletionTimestamp %v", err, current.DeletionTimestamp)
	}
	if h := getHostClaim(t, claim); h.DeletionTimestamp != nil {
		t.Error("host claim of a claim in use deleted")
	}
	if err := virtualClient.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, virtualClient, claim, 60*time.Second)
	eventually(t, 30*time.Second, "host claim deleted once its pod is gone", func(ctx context.Context) (bool, string) {
		return goneOrGoing(ctx, hostClient, host)
	})
	releaseHostClaim(t, hostClaimKey(claim))
}

// The tenant deletes podbridge's registration (the keeper restores it
// within moments) and writes claims meanwhile: a claim stored without
// podbridge gets no host claim, then or later (a HostClaimMissing event);
// an admitted claim given a provisioning annotation while the
// registration is away is refused by the reflector's gate (a
// HostClaimRefused event) and its host claim keeps what it had.
func TestClaimWebhookRegistrationDeleted(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	admitted := simpleClaim(ns, "admitted", "1Gi")
	if err := virtualClient.Create(ctx, admitted); err != nil {
		t.Fatal(err)
	}
	deleteRegistration := func(ctx context.Context) error {
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "podbridge"}}
		return client.IgnoreNotFound(virtualClient.Delete(ctx, reg))
	}
	var slipped *corev1.PersistentVolumeClaim
	eventually(t, 60*time.Second, "a claim stored while the registration is away", func(ctx context.Context) (bool, string) {
		if err := deleteRegistration(ctx); err != nil {
			return false, err.Error()
		}
		c := simpleClaim(ns, "", "1Gi")
		c.GenerateName = "slipped-"
		c.Spec.VolumeName = "pv-of-another-tenant"
		if err := virtualClient.Create(ctx, c); err != nil {
			return false, err.Error()
		}
		slipped = c
		return true, ""
	})
	eventually(t, 60*time.Second, "a provisioning annotation stored while the registration is away", func(ctx context.Context) (bool, string) {
		if err := deleteRegistration(ctx); err != nil {
			return false, err.Error()
		}
		current := &corev1.PersistentVolumeClaim{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(admitted), current); err != nil {
			return false, err.Error()
		}
		current.Annotations["volume.kubernetes.io/selected-node"] = "control-plane-1"
		if err := virtualClient.Update(ctx, current); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	waitClaimEvent(t, slipped, reflector.ReasonHostClaimMissing)
	waitClaimEvent(t, admitted, reflector.ReasonHostClaimRefused)
	if err := hostClient.Get(ctx, hostClaimKey(slipped), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
		t.Errorf("host claim of a claim podbridge never admitted: %v", err)
	}
	for k := range getHostClaim(t, admitted).Annotations {
		if !translate.IsReserved(k) {
			t.Errorf("tenant annotation %q on the host claim after an unchecked update", k)
		}
	}
	// Claims go through podbridge again before the next test.
	eventually(t, 30*time.Second, "claims admitted by podbridge again", func(ctx context.Context) (bool, string) {
		probe := simpleClaim(ns, "probe", "1Gi")
		err := virtualClient.Create(ctx, probe, client.DryRunAll)
		return err == nil && probe.Annotations[translate.AnnotationSyncID] != "", fmt.Sprint(err)
	})
}

// A StatefulSet of 2 with volumeClaimTemplates reaches 2/2 with Bound
// claims: its controller's claims pass podbridge's webhook like any
// tenant's, the host binds them (here the test, as the host's binder
// would), and each pod mounts its own host claim. Scaled down and up, the
// pod comes back on the same claim.
func TestStatefulSetClaims(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	labels := map[string]string{"app": "db"}
	template := simplePod(ns, "")
	template.Labels = labels
	template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:             ptr.To[int32](2),
			Selector:             &metav1.LabelSelector{MatchLabels: labels},
			ServiceName:          "db",
			Template:             corev1.PodTemplateSpec{ObjectMeta: template.ObjectMeta, Spec: template.Spec},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{*simpleClaim("", "data", "1Gi")},
		},
	}
	if err := virtualClient.Create(ctx, sts); err != nil {
		t.Fatal(err)
	}
	bindWhenMade := func(ordinal int) {
		claim := simpleClaim(ns, fmt.Sprintf("data-db-%d", ordinal), "1Gi")
		eventually(t, 60*time.Second, "host claim of "+claim.Name, func(ctx context.Context) (bool, string) {
			err := hostClient.Get(ctx, hostClaimKey(claim), &corev1.PersistentVolumeClaim{})
			return err == nil, fmt.Sprint(err)
		})
		bindHostClaim(t, hostClaimKey(claim))
	}
	bindWhenMade(0)
	bindWhenMade(1)
	ready := func(want int32) {
		eventually(t, 90*time.Second, fmt.Sprintf("StatefulSet %d/%d ready", want, want), func(ctx context.Context) (bool, string) {
			current := &appsv1.StatefulSet{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(sts), current); err != nil {
				return false, err.Error()
			}
			return current.Status.ReadyReplicas == want && current.Status.Replicas == want, fmt.Sprintf("%+v", current.Status)
		})
	}
	ready(2)
	for i := range 2 {
		claim := simpleClaim(ns, fmt.Sprintf("data-db-%d", i), "1Gi")
		waitVirtualClaim(t, claim, claim.Name+" Bound", func(c *corev1.PersistentVolumeClaim) bool { return c.Status.Phase == corev1.ClaimBound })
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("db-%d", i)}}
		host, err := getHostPod(ctx, pod)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostClaimVolume(host); got != hostClaimKey(claim).Name {
			t.Errorf("host pod of db-%d mounts claim %q, want %q", i, got, hostClaimKey(claim).Name)
		}
	}

	// Down to 1 and up again: db-1 comes back on its claim.
	scale := func(n int32) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			current := &appsv1.StatefulSet{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(sts), current); err != nil {
				return err
			}
			current.Spec.Replicas = ptr.To(n)
			return virtualClient.Update(ctx, current)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	firstHost := getHostClaim(t, simpleClaim(ns, "data-db-1", "1Gi"))
	scale(1)
	ready(1)
	scale(2)
	ready(2)
	host, err := getHostPod(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if again := getHostClaim(t, simpleClaim(ns, "data-db-1", "1Gi")); again.UID != firstHost.UID || hostClaimVolume(host) != firstHost.Name {
		t.Errorf("db-1 came back on host claim %s (%s), was %s (%s)", hostClaimVolume(host), again.UID, firstHost.Name, firstHost.UID)
	}
}

// hostClaimVolume is the host claim a host pod's first claim volume names.
func hostClaimVolume(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

// The reflector is stopped and started again at seeded points of a churn
// of claims (creates, bindings on the host, virtual deletions, host
// deletions): the pairs converge all the same. check finds nothing, every
// deletion is carried out both ways, every bound survivor shows Bound and
// has its virtual volume, and no virtual volume is left of a deleted one.
func TestReflectorRestartedAtManyPointsConvergesClaims(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	const claims, restarts, seed = 16, 6, 23
	rng := rand.New(rand.NewPCG(seed, seed))
	name := func(i int) string { return fmt.Sprintf("churn-%02d", i) }
	pauses := make([]time.Duration, restarts)
	for i := range pauses {
		pauses[i] = time.Duration(50+rng.IntN(400)) * time.Millisecond
	}
	var restartErr error
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for _, pause := range pauses {
			time.Sleep(pause) // a fault schedule, not a wait for a condition.
			if err := env.RestartReflector(); err != nil {
				restartErr = err
				return
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, claims)
	for i := range claims {
		wg.Go(func() {
			claim := simpleClaim(ns, name(i), "1Gi")
			if err := virtualClient.Create(ctx, claim); err != nil {
				errs <- fmt.Errorf("creating %s: %w", claim.Name, err)
				return
			}
			var err error
			switch i % 4 {
			case 1: // deleted by the tenant
				err = virtualClient.Delete(ctx, claim)
			case 2: // lost on the host
				err = hostClient.Delete(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: hostClaimKey(claim).Namespace, Name: hostClaimKey(claim).Name}})
			}
			if client.IgnoreNotFound(err) != nil {
				errs <- fmt.Errorf("deleting %s: %w", claim.Name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := 0; i < claims; i += 4 { // bound by the host
		bindHostClaim(t, hostClaimKey(simpleClaim(ns, name(i), "1Gi")))
	}
	<-restarted
	if restartErr != nil {
		t.Fatalf("restarting the reflector: %v", restartErr)
	}

	eventually(t, 90*time.Second, "claim pairs converged after the restarts", func(ctx context.Context) (bool, string) {
		virtuals, hosts := &corev1.PersistentVolumeClaimList{}, &corev1.PersistentVolumeClaimList{}
		if err := virtualClient.List(ctx, virtuals, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		if err := hostClient.List(ctx, hosts, client.InNamespace(env.Options.Translate.HostNamespace)); err != nil {
			return false, err.Error()
		}
		var ours []corev1.PersistentVolumeClaim
		for _, h := range hosts.Items {
			if h.Annotations[translate.AnnotationNamespace] != ns {
				continue
			}
			if h.DeletionTimestamp != nil && len(h.Finalizers) > 0 {
				// The host's claim protection would let it go: no pod uses it.
				h.Finalizers = nil
				if err := hostClient.Update(ctx, &h); err != nil {
					return false, err.Error()
				}
				return false, "released a host claim being deleted"
			}
			ours = append(ours, h)
		}
		if v := check.EvaluateClaims(virtuals.Items, ours, check.Options{Config: env.Options.Translate, OrphanGracePeriod: orphanGrace, Statuses: true, Now: time.Now()}); len(v) > 0 {
			return false, fmt.Sprintf("%d violations, first: %s", len(v), v[0])
		}
		var want []string
		for i := 0; i < claims; i++ {
			if i%4 == 0 || i%4 == 3 {
				want = append(want, name(i))
			}
		}
		var got []string
		for _, v := range virtuals.Items {
			got = append(got, v.Name)
			if i, _ := strconv.Atoi(strings.TrimPrefix(v.Name, "churn-")); i%4 == 0 && (v.Status.Phase != corev1.ClaimBound || v.Spec.VolumeName == "") {
				return false, fmt.Sprintf("%s not Bound: %+v", v.Name, v.Status)
			}
		}
		if !slices.Equal(got, want) || len(ours) != len(want) {
			return false, fmt.Sprintf("virtual claims %v and %d host claims, want %v", got, len(ours), want)
		}
		return true, ""
	})
	// Each bound survivor has its virtual volume; none is left of the others.
	pvs := &corev1.PersistentVolumeList{}
	eventually(t, 30*time.Second, "virtual volumes of the bound claims only", func(ctx context.Context) (bool, string) {
		if err := virtualClient.List(ctx, pvs); err != nil {
			return false, err.Error()
		}
		var got []string
		for _, pv := range pvs.Items {
			if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns {
				got = append(got, pv.Spec.ClaimRef.Name)
			}
		}
		slices.Sort(got)
		want := []string{name(0), name(4), name(8), name(12)}
		return slices.Equal(got, want), fmt.Sprintf("volumes of %v, want %v", got, want)
	})
}
