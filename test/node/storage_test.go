//go:build node

package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/devenv"
	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
)

// claim is a tenant claim of 1Gi that names no class: the virtual
// cluster's admission gives it the default, the mirror of the host's.
func claim(ns, name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

// onClaim mounts the claim at /data in the pod's container.
func onClaim(pod *corev1.Pod, claimName string) *corev1.Pod {
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName},
	}})
	pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "data", MountPath: "/data"})
	return pod
}

func hostClaimKey(c *corev1.PersistentVolumeClaim) client.ObjectKey {
	tc := env.Options.Translate
	return client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostClaimName(c.Name, c.Namespace, tc.VCluster)}
}

// waitDefaultClassMirrored waits for the mirror of the host's default
// class in the virtual cluster, which its admission gives claims naming
// none.
func waitDefaultClassMirrored(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "virtual StorageClass "+devenv.StorageClassName+" marked default", func(ctx context.Context) (bool, string) {
		class := &storagev1.StorageClass{}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: devenv.StorageClassName}, class); err != nil {
			return false, err.Error()
		}
		return class.Annotations["storageclass.kubernetes.io/is-default-class"] == "true" && class.Provisioner == "kubernetes.io/host-path", fmt.Sprintf("%v %s", class.Annotations, class.Provisioner)
	})
}

// waitClaimBound waits until the virtual claim is Bound to a virtual
// volume of the host volume's name, of the class c names (the default
// when none), and returns the host volume.
func waitClaimBound(t *testing.T, c *corev1.PersistentVolumeClaim) *corev1.PersistentVolume {
	t.Helper()
	hostVolume := &corev1.PersistentVolume{}
	eventually(t, 60*time.Second, "claim "+c.Name+" Bound, with its virtual volume", func(ctx context.Context) (bool, string) {
		virtual := &corev1.PersistentVolumeClaim{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(c), virtual); err != nil {
			return false, err.Error()
		}
		if virtual.Status.Phase != corev1.ClaimBound || virtual.Spec.VolumeName == "" {
			return false, fmt.Sprintf("virtual claim %s, volume %q", virtual.Status.Phase, virtual.Spec.VolumeName)
		}
		if got, want := ptr.Deref(virtual.Spec.StorageClassName, ""), ptr.Deref(c.Spec.StorageClassName, devenv.StorageClassName); got != want {
			return false, fmt.Sprintf("virtual claim's class %q, want %q", got, want)
		}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: virtual.Spec.VolumeName}, &corev1.PersistentVolume{}); err != nil {
			return false, "virtual volume: " + err.Error()
		}
		if err := hostClient.Get(ctx, client.ObjectKey{Name: virtual.Spec.VolumeName}, hostVolume); err != nil {
			return false, "host volume: " + err.Error()
		}
		return true, ""
	})
	return hostVolume
}

// provisionedFolder is the machine's folder of a host volume the host-path
// provisioner made: under its fixed folder, which links into the real
// node's state folder.
func provisionedFolder(t *testing.T, hostVolume *corev1.PersistentVolume) string {
	t.Helper()
	if hostVolume.Spec.HostPath == nil || !strings.HasPrefix(hostVolume.Spec.HostPath.Path, realnode.HostPathProvisionerDir+"/") {
		t.Fatalf("host volume %s is not the host-path provisioner's: %+v", hostVolume.Name, hostVolume.Spec.PersistentVolumeSource)
	}
	resolved, err := filepath.EvalSymlinks(hostVolume.Spec.HostPath.Path)
	if err != nil {
		t.Fatalf("host volume %s's folder: %v", hostVolume.Name, err)
	}
	if !strings.HasPrefix(resolved, stateDir+"/") {
		t.Errorf("host volume %s's folder %s is not in the run's state folder %s", hostVolume.Name, resolved, stateDir)
	}
	return hostVolume.Spec.HostPath.Path
}

// Data one pod writes to a claim is read by the next pod on that claim:
// the claim (naming no class) gets the default class's mirror, the host's
// provisioner makes a folder in the real node's state folder, and the
// real kubelet mounts it. Deleting the claim while a pod uses it leaves
// the claim Terminating and its host claim in place; once the last pod
// goes, the host claim, the host volume, its folder and the virtual
// volume go.
func TestClaimDataOutlivesItsPodOnRealNode(t *testing.T) {
	ctx := context.Background()
	waitDefaultClassMirrored(t)
	ns := namespace(t)
	data := claim(ns, "data")
	if err := virtualClient.Create(ctx, data); err != nil {
		t.Fatalf("creating virtual claim: %v", err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), data) })
	hostVolume := waitClaimBound(t, data)
	folder := provisionedFolder(t, hostVolume)
	if hostVolume.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("host volume's reclaim policy %s, want Delete", hostVolume.Spec.PersistentVolumeReclaimPolicy)
	}

	writer := onClaim(realPod(ns, "writer", "pause"), data.Name)
	create(t, writer)
	waitVirtualReady(t, writer)
	if out := execWorkload(t, writer, "kept by the claim", "write:/data/note"); !strings.Contains(out, "wrote=17") {
		t.Fatalf("writing /data/note: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(folder, "note")); err != nil || string(b) != "kept by the claim" {
		t.Errorf("the provisioned folder's note: %q %v", b, err)
	}
	if err := virtualClient.Delete(ctx, writer, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, writer)

	reader := onClaim(realPod(ns, "reader", "cat:/data/note", "pause"), data.Name)
	create(t, reader)
	waitVirtualReady(t, reader)
	waitForLog(t, reader, 30*time.Second, "== /data/note", "kept by the claim")

	// In use: the claim stays Terminating, and its host claim stays.
	if err := virtualClient.Delete(ctx, data); err != nil {
		t.Fatal(err)
	}
	hostClaim := &corev1.PersistentVolumeClaim{}
	if err := hostClient.Get(ctx, hostClaimKey(data), hostClaim); err != nil {
		t.Fatalf("host claim: %v", err)
	}
	time.Sleep(3 * time.Second) // what the reflector would need to carry a deletion.
	virtual := &corev1.PersistentVolumeClaim{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(data), virtual); err != nil || virtual.DeletionTimestamp == nil {
		t.Fatalf("virtual claim in use: want it Terminating, got %v (deleting %v)", err, virtual.DeletionTimestamp)
	}
	if err := hostClient.Get(ctx, hostClaimKey(data), hostClaim); err != nil || hostClaim.DeletionTimestamp != nil {
		t.Fatalf("host claim while the virtual claim is in use: %v (deleting %v)", err, hostClaim.DeletionTimestamp)
	}
	waitForLog(t, reader, 5*time.Second, "kept by the claim") // the pod still runs on it

	if err := virtualClient.Delete(ctx, reader, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitClaimGoneWithItsVolume(t, data, hostVolume.Name, folder)
}

// waitPodGone waits until the virtual pod and its host pod are gone.
func waitPodGone(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	eventually(t, 60*time.Second, "pod "+pod.Name+" gone", func(ctx context.Context) (bool, string) {
		_, err := virtualPod(ctx, pod)
		hostErr := hostClient.Get(ctx, hostKey(pod), &corev1.Pod{})
		return apierrors.IsNotFound(err) && apierrors.IsNotFound(hostErr), fmt.Sprintf("virtual: %v, host: %v", err, hostErr)
	})
}

// A StatefulSet of 2 with volumeClaimTemplates reaches 2/2 on the real
// node with Bound claims the host provisioned; scaled down and up, its
// second pod comes back on the same claim and reads what it wrote.
func TestStatefulSetKeepsItsDataOnRealNode(t *testing.T) {
	ctx := context.Background()
	waitDefaultClassMirrored(t)
	ns := namespace(t)
	template := onClaim(realPod(ns, "db", "pause"), "data")
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:             ptr.To[int32](2),
			Selector:             &metav1.LabelSelector{MatchLabels: template.Labels},
			ServiceName:          "db",
			PodManagementPolicy:  appsv1.ParallelPodManagement,
			Template:             corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: template.Labels}, Spec: template.Spec},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{*claim("", "data")},
		},
	}
	if err := virtualClient.Create(ctx, sts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = virtualClient.Delete(context.Background(), sts)
		for i := range 2 {
			_ = virtualClient.Delete(context.Background(), claim(ns, fmt.Sprintf("data-db-%d", i)))
		}
	})
	ready := func(want int32) {
		t.Helper()
		eventually(t, 2*time.Minute, fmt.Sprintf("StatefulSet %d/%d ready", want, want), func(ctx context.Context) (bool, string) {
			current := &appsv1.StatefulSet{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(sts), current); err != nil {
				return false, err.Error()
			}
			return current.Status.ReadyReplicas == want && current.Status.Replicas == want, fmt.Sprintf("%+v", current.Status)
		})
	}
	scale := func(n int32) {
		t.Helper()
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
	ready(2)
	volumes := map[string]string{}
	for i := range 2 {
		c := claim(ns, fmt.Sprintf("data-db-%d", i))
		volumes[c.Name] = provisionedFolder(t, waitClaimBound(t, c))
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("db-%d", i)}}
		p := waitVirtualReady(t, pod)
		execWorkload(t, p, "I am "+pod.Name, "write:/data/id")
	}
	if volumes["data-db-0"] == volumes["data-db-1"] {
		t.Fatalf("both pods on one folder %s", volumes["data-db-0"])
	}
	firstHost := &corev1.PersistentVolumeClaim{}
	if err := hostClient.Get(ctx, hostClaimKey(claim(ns, "data-db-1")), firstHost); err != nil {
		t.Fatal(err)
	}

	scale(1)
	ready(1)
	waitPodGone(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-1"}})
	scale(2)
	ready(2)
	p := waitVirtualReady(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-1"}})
	if out := execWorkload(t, p, "", "cat:/data/id"); !strings.Contains(out, "\nI am db-1\n") {
		t.Errorf("db-1 after scaling down and up reads %q, want what it wrote", out)
	}
	again := &corev1.PersistentVolumeClaim{}
	if err := hostClient.Get(ctx, hostClaimKey(claim(ns, "data-db-1")), again); err != nil || again.UID != firstHost.UID {
		t.Errorf("db-1's host claim after scaling: %v (UID %s, was %s)", err, again.UID, firstHost.UID)
	}
}

// A claim made through podbridge is Bound in the virtual cluster once the
// host binds its host claim and the reflector mirrors it: the time from
// create to Bound is logged against a claim made directly on the host, in
// the same run (issue 23's closing figure; no timing is asserted).
func TestClaimBindLatencyThroughPodbridge(t *testing.T) {
	ctx := context.Background()
	waitDefaultClassMirrored(t)
	ns := namespace(t)
	tc := env.Options.Translate
	const rounds = 5
	var through, direct []time.Duration
	for i := range rounds {
		virtual := claim(ns, fmt.Sprintf("timed-%d", i))
		through = append(through, timeToBound(t, virtualClient, virtual))
		t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), virtual) })

		host := claim(tc.HostNamespace, fmt.Sprintf("direct-timed-%d", i))
		host.Spec.StorageClassName = ptr.To(devenv.StorageClassName)
		direct = append(direct, timeToBound(t, hostClient, host))
		if err := hostClient.Delete(ctx, host); err != nil {
			t.Errorf("deleting host claim %s: %v", host.Name, err)
		}
	}
	slices.Sort(through)
	slices.Sort(direct)
	t.Logf("claim create to Bound, median of %d: through podbridge %s, directly on the host %s (ratio %.1f); through %v, direct %v",
		rounds, through[rounds/2], direct[rounds/2], float64(through[rounds/2])/float64(direct[rounds/2]), through, direct)
}

// timeToBound creates c with cl and returns how long it took to read it
// Bound, polling every 10 ms for at most a minute.
func timeToBound(t *testing.T, cl client.Client, c *corev1.PersistentVolumeClaim) time.Duration {
	t.Helper()
	start := time.Now()
	if err := cl.Create(context.Background(), c); err != nil {
		t.Fatalf("creating claim %s/%s: %v", c.Namespace, c.Name, err)
	}
	for time.Since(start) < time.Minute {
		got := &corev1.PersistentVolumeClaim{}
		if err := cl.Get(context.Background(), client.ObjectKeyFromObject(c), got); err == nil && got.Status.Phase == corev1.ClaimBound {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("claim %s/%s not Bound within a minute", c.Namespace, c.Name)
	return 0
}

// selectedNode is the annotation through which the host scheduler tells
// the host's provisioner which node a WaitForFirstConsumer claim's first
// pod goes to.
const selectedNode = "volume.kubernetes.io/selected-node"

// A claim of the test bed's WaitForFirstConsumer class stays Pending on
// both sides, the virtual claim showing the host binder's
// WaitForFirstConsumer event, until a pod uses it. The tenant cannot steer
// the host's provisioning meanwhile: the node annotation, the provisioner
// and binder annotations, at create or by an update, are refused naming
// the annotation, and the host claim stays as podbridge made it. Once a
// pod uses the claim, the host scheduler places the host pod and records
// the node on the host claim (the field's manager is the scheduler), the
// host provisions and binds, the pod runs and writes to the claim's
// folder, and the virtual claim mirrors Bound, with its virtual volume and
// the provisioner's event, but not the node annotation.
func TestWaitForFirstConsumerClaimOnRealNode(t *testing.T) {
	ctx := context.Background()
	class := devenv.WaitForFirstConsumerClassName
	eventually(t, 30*time.Second, "virtual StorageClass "+class+" mirrored", func(ctx context.Context) (bool, string) {
		mirror := &storagev1.StorageClass{}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: class}, mirror); err != nil {
			return false, err.Error()
		}
		return ptr.Deref(mirror.VolumeBindingMode, "") == storagev1.VolumeBindingWaitForFirstConsumer && mirror.Provisioner == "kubernetes.io/host-path",
			fmt.Sprintf("binding %v, provisioner %s", mirror.VolumeBindingMode, mirror.Provisioner)
	})
	ns := namespace(t)
	node := env.RealNode.Name()
	data := claim(ns, "data")
	data.Spec.StorageClassName = ptr.To(class)

	steered := data.DeepCopy()
	steered.Annotations = map[string]string{selectedNode: node}
	if err := virtualClient.Create(ctx, steered); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), selectedNode) {
		t.Fatalf("a claim created with %s: %v, want 422 naming the annotation", selectedNode, err)
	}
	if err := hostClient.Get(ctx, hostClaimKey(data), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
		t.Fatalf("host claim after the refused create: %v", err)
	}

	if err := virtualClient.Create(ctx, data); err != nil {
		t.Fatalf("creating virtual claim: %v", err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), data) })
	waitVirtualClaimEvent(t, data, "WaitForFirstConsumer", "waiting for first consumer")
	assertPending := func(when string) {
		t.Helper()
		virtual, host := &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolumeClaim{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(data), virtual); err != nil {
			t.Fatal(err)
		}
		if err := hostClient.Get(ctx, hostClaimKey(data), host); err != nil {
			t.Fatal(err)
		}
		if virtual.Status.Phase != corev1.ClaimPending || host.Status.Phase != corev1.ClaimPending || host.Spec.VolumeName != "" || virtual.Spec.VolumeName != "" {
			t.Fatalf("%s: virtual claim %s (volume %q), host claim %s (volume %q); want both Pending, unbound",
				when, virtual.Status.Phase, virtual.Spec.VolumeName, host.Status.Phase, host.Spec.VolumeName)
		}
		if n, ok := host.Annotations[selectedNode]; ok {
			t.Fatalf("%s: host claim has %s=%q without a pod", when, selectedNode, n)
		}
	}
	assertPending("no pod yet")

	// The tenant (cluster-admin of its virtual cluster) tries to steer
	// the host: each annotation is refused on update, naming it.
	for _, key := range []string{selectedNode, "volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner", "pv.kubernetes.io/bind-completed"} {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			current := &corev1.PersistentVolumeClaim{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(data), current); err != nil {
				return err
			}
			current.Annotations[key] = node
			return virtualClient.Update(ctx, current)
		})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), key) {
			t.Errorf("adding %s to the pending claim: %v, want 422 naming it", key, err)
		}
	}
	assertPending("after the refused updates")

	writer := onClaim(realPod(ns, "writer", "pause"), data.Name)
	create(t, writer)
	waitVirtualReady(t, writer)
	hostVolume := waitClaimBound(t, data)
	folder := provisionedFolder(t, hostVolume)
	host := &corev1.PersistentVolumeClaim{}
	if err := hostClient.Get(ctx, hostClaimKey(data), host); err != nil {
		t.Fatal(err)
	}
	if got := host.Annotations[selectedNode]; got != node {
		t.Errorf("host claim's %s %q, want the real node %s", selectedNode, got, node)
	}
	setBy := fieldManagers(host, `"f:`+selectedNode+`"`)
	if len(setBy) != 1 || !strings.HasPrefix(setBy[0], "kube-scheduler") {
		t.Errorf("%s on the host claim set by %v, want the host scheduler alone", selectedNode, setBy)
	}
	t.Logf("host claim %s: %s=%s set by %v; bound to %s at %s", host.Name, selectedNode, node, setBy, hostVolume.Name, folder)
	hostPod := &corev1.Pod{}
	if err := hostClient.Get(ctx, hostKey(writer), hostPod); err != nil || hostPod.Spec.NodeName != node {
		t.Errorf("host pod on %q (%v), want %s", hostPod.Spec.NodeName, err, node)
	}
	if out := execWorkload(t, writer, "waited for its consumer", "write:/data/note"); !strings.Contains(out, "wrote=23") {
		t.Fatalf("writing /data/note: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(folder, "note")); err != nil || string(b) != "waited for its consumer" {
		t.Errorf("the provisioned folder's note: %q %v", b, err)
	}
	virtual := &corev1.PersistentVolumeClaim{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(data), virtual); err != nil {
		t.Fatal(err)
	}
	if n, ok := virtual.Annotations[selectedNode]; ok {
		t.Errorf("the host's %s=%q mirrored on the virtual claim", selectedNode, n)
	}
	waitVirtualClaimEvent(t, data, "ProvisioningSucceeded", hostVolume.Name)

	if err := virtualClient.Delete(ctx, writer, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if err := virtualClient.Delete(ctx, data); err != nil {
		t.Fatal(err)
	}
	waitClaimGoneWithItsVolume(t, data, hostVolume.Name, folder)
}

// waitVirtualClaimEvent waits for an event of reason whose message
// contains want about the virtual claim c (by name and UID), as kubectl
// describe shows it: the host's, copied by the reflector.
func waitVirtualClaimEvent(t *testing.T, c *corev1.PersistentVolumeClaim, reason, want string) {
	t.Helper()
	eventually(t, 60*time.Second, reason+" on virtual claim "+c.Name, func(ctx context.Context) (bool, string) {
		current := &corev1.PersistentVolumeClaim{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(c), current); err != nil {
			return false, err.Error()
		}
		list := &corev1.EventList{}
		if err := virtualClient.List(ctx, list, client.InNamespace(c.Namespace)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.InvolvedObject.Kind != "PersistentVolumeClaim" || e.InvolvedObject.Name != c.Name || e.InvolvedObject.UID != current.UID {
				continue
			}
			if e.Reason == reason && strings.Contains(e.Message, want) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, fmt.Sprintf("events %q", seen)
	})
}

// fieldManagers are the managers of obj's managed fields entries whose
// fields contain field (a "f:<key>" of the field set's JSON).
func fieldManagers(obj client.Object, field string) []string {
	var managers []string
	for _, entry := range obj.GetManagedFields() {
		if entry.FieldsV1 != nil && strings.Contains(entry.FieldsV1.GetRawString(), field) {
			managers = append(managers, entry.Manager)
		}
	}
	return managers
}

// waitClaimGoneWithItsVolume waits until the virtual claim, its host claim,
// the host volume, its virtual mirror and the provisioned folder are gone.
func waitClaimGoneWithItsVolume(t *testing.T, data *corev1.PersistentVolumeClaim, volume, folder string) {
	t.Helper()
	eventually(t, 90*time.Second, "claim, host claim, host and virtual volume and the folder gone", func(ctx context.Context) (bool, string) {
		for what, err := range map[string]error{
			"virtual claim":  virtualClient.Get(ctx, client.ObjectKeyFromObject(data), &corev1.PersistentVolumeClaim{}),
			"host claim":     hostClient.Get(ctx, hostClaimKey(data), &corev1.PersistentVolumeClaim{}),
			"host volume":    hostClient.Get(ctx, client.ObjectKey{Name: volume}, &corev1.PersistentVolume{}),
			"virtual volume": virtualClient.Get(ctx, client.ObjectKey{Name: volume}, &corev1.PersistentVolume{}),
		} {
			if !apierrors.IsNotFound(err) {
				return false, fmt.Sprintf("%s: %v", what, err)
			}
		}
		if _, err := os.Lstat(folder); !os.IsNotExist(err) {
			return false, fmt.Sprintf("folder %s: %v", folder, err)
		}
		return true, ""
	})
}
