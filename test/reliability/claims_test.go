//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/translate"
)

// claimClass is the host StorageClass the fault tests' claims name, which
// podbridge allows (--allowed-storage-classes). The test bed's host runs no
// controller-manager: the tests bind host claims as the host's binder
// would, and release the finalizer of a deleted host claim as the host's
// claim protection does for a claim no pod uses (protectClaims).
const claimClass = "reliability"

const claimSize = "1Gi"

func newClaim(name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"reliability": "true"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(claimClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(claimSize)}},
		},
	}
}

// newClaimBurst is a burst of PersistentVolumeClaims, burstRate a second. A retried create
// that the webhook refuses because the host claim a failed attempt left
// is still being deleted (409, "retry later": it deleted it, the host's
// claim protection has yet to let it go) is made once more when that host
// claim is gone, as the refusal tells the tenant.
func newClaimBurst(c *cluster, tl *tally, prefix string, count, concurrency int) *burst {
	b := newBurst(c, tl, prefix, count, concurrency, burstRate)
	b.object = func(name string) client.Object { return newClaim(name) }
	b.stored = func(ctx context.Context) (map[string]bool, error) {
		claims := &corev1.PersistentVolumeClaimList{}
		if err := c.virtualClient.List(ctx, claims, client.InNamespace("default")); err != nil {
			return nil, fmt.Errorf("listing virtual claims: %w", err)
		}
		names := map[string]bool{}
		for _, cl := range claims.Items {
			names[cl.Name] = true
		}
		return names, nil
	}
	b.retryAgain = func(t *testing.T, name string, o outcome) bool {
		if o.reason != "409 Conflict" || !strings.Contains(o.message, "retry later") {
			return false
		}
		c.waitHostClaimGone(t, name)
		b.mu.Lock()
		b.againAfter409++
		b.mu.Unlock()
		return true
	}
	return b
}

// noteAgainAfter409 notes how many retried creates were refused 409 while
// the stale host claim a failed attempt left went, and made again.
func (b *burst) noteAgainAfter409() {
	b.mu.Lock()
	n := b.againAfter409
	b.mu.Unlock()
	b.tl.note("%s: %d retried creates refused 409 \"retry later\" while a stale host claim went, admitted once it was gone", b.prefix, n)
}

// hostClaimKey is the key of the host claim of virtual claim default/name.
func (c *cluster) hostClaimKey(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: c.config.HostNamespace, Name: translate.HostClaimName(name, "default", c.config.VCluster)}
}

func (c *cluster) waitHostClaimGone(t *testing.T, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(c.hostClient.Get(ctx, c.hostClaimKey(name), &corev1.PersistentVolumeClaim{})), nil
	})
	if err != nil {
		t.Fatalf("the stale host claim of %s is still there: %v", name, err)
	}
}

// prepareClaims creates the host's claimClass and runs the host's claim
// protection for the rest of the test.
func (c *cluster) prepareClaims(t *testing.T) {
	t.Helper()
	class := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: claimClass},
		Provisioner:       "reliability.podbridge.io/none",
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if err := c.hostClient.Create(context.Background(), class); err != nil {
		t.Fatalf("creating the host StorageClass: %v", err)
	}
	c.protectClaims(t)
}

// protectClaims does what the host's claim-protection controller does for
// claims no host pod uses (no pod uses these): a deleted host claim loses
// its kubernetes.io/pvc-protection finalizer, so it goes. It polls the
// host twice a second until the test ends; while the host apiserver is
// down it waits for it, as the controller would.
func (c *cluster) protectClaims(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			claims := &corev1.PersistentVolumeClaimList{}
			if err := c.hostClient.List(ctx, claims, client.InNamespace(c.config.HostNamespace)); err != nil {
				return false, nil //nolint:nilerr // the host may be down: look again.
			}
			for i := range claims.Items {
				h := &claims.Items[i]
				if h.DeletionTimestamp != nil && len(h.Finalizers) > 0 {
					h.Finalizers = nil
					_ = c.hostClient.Update(ctx, h) // a conflict is looked at again next round.
				}
			}
			return false, nil
		})
	}()
}

// bindHostClaims binds the host claim of each named virtual claim as the
// host's binder would: a volume name, the binder's annotations, and a
// Bound status with the capacity requested. (No host volume is made:
// podbridge never reads host volumes.)
func (c *cluster) bindHostClaims(t *testing.T, names []string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			h := &corev1.PersistentVolumeClaim{}
			if err := c.hostClient.Get(ctx, c.hostClaimKey(name), h); err != nil {
				return err
			}
			h.Spec.VolumeName = "pv-" + h.Name
			h.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
			h.Annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
			if err := c.hostClient.Update(ctx, h); err != nil {
				return err
			}
			h.Status = corev1.PersistentVolumeClaimStatus{
				Phase:       corev1.ClaimBound,
				AccessModes: h.Spec.AccessModes,
				Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(claimSize)},
			}
			return c.hostClient.Status().Update(ctx, h)
		})
		if err != nil {
			t.Fatalf("binding the host claim of %s: %v", name, err)
		}
	}
}

// admittedNames are the names of the burst's admitted creates, sorted.
func (b *burst) admittedNames() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var names []string
	for name, o := range b.outcomes {
		if o.kind == admitted {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// waitClaimInvariant polls check.RunClaims, statuses included, until it
// reports no violation and, with bound, every virtual claim is Bound to a
// volume its virtual PersistentVolume stands for, and no other virtual
// volume is left:
// every admitted claim has exactly one host claim, no host claim outlives
// its virtual claim, both sides tell the same phase and capacity. Called
// once every create has returned: a host claim without its virtual claim
// is an orphan at any age, which the reflector removes once older than its
// grace period.
func (c *cluster) waitClaimInvariant(t *testing.T, tl *tally, bound bool) {
	t.Helper()
	inv := invariant{what: "the claims' invariant", run: check.RunClaims, orphan: check.OrphanClaim}
	if bound {
		inv.pending, inv.waiting = c.unboundClaims, "virtual claims not Bound with their virtual volume"
	}
	c.settle(t, tl, inv)
}

// unboundClaims lists the virtual claims that are not Bound to a volume
// with its virtual PersistentVolume, and the virtual volumes that are no
// claim's: only bound claims have virtual volumes, and those of deleted
// claims go.
func (c *cluster) unboundClaims(ctx context.Context) ([]string, error) {
	claims := &corev1.PersistentVolumeClaimList{}
	if err := c.virtualClient.List(ctx, claims); err != nil {
		return nil, fmt.Errorf("listing virtual claims: %w", err)
	}
	volumes := &corev1.PersistentVolumeList{}
	if err := c.virtualClient.List(ctx, volumes); err != nil {
		return nil, fmt.Errorf("listing virtual volumes: %w", err)
	}
	boundTo := map[string]string{}
	for _, v := range volumes.Items {
		if ref := v.Spec.ClaimRef; ref != nil {
			boundTo[v.Name] = ref.Namespace + "/" + ref.Name
		}
	}
	var names []string
	for _, cl := range claims.Items {
		switch {
		case cl.Status.Phase != corev1.ClaimBound || cl.Spec.VolumeName == "" || cl.DeletionTimestamp != nil:
			names = append(names, fmt.Sprintf("%s (%s, volume %q, deleting %v)", cl.Name, cl.Status.Phase, cl.Spec.VolumeName, cl.DeletionTimestamp != nil))
		case boundTo[cl.Spec.VolumeName] != cl.Namespace+"/"+cl.Name:
			names = append(names, fmt.Sprintf("%s (virtual volume %s bound to %q)", cl.Name, cl.Spec.VolumeName, boundTo[cl.Spec.VolumeName]))
		}
		delete(boundTo, cl.Spec.VolumeName)
	}
	for volume, claim := range boundTo {
		names = append(names, fmt.Sprintf("virtual volume %s of no bound claim (claimRef %s)", volume, claim))
	}
	return names, nil
}

// assertOneHostClaimEach checks every create of the burst against the
// host: a claim the virtual cluster stores has exactly one host claim, one
// it does not (a create that failed and was not retried) has none. Its
// host claims are counted by the virtual name podbridge records on them.
func (b *burst) assertOneHostClaimEach(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	stored, err := b.stored(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hostClaims := &corev1.PersistentVolumeClaimList{}
	if err := b.c.hostClient.List(ctx, hostClaims, client.InNamespace(b.c.config.HostNamespace), client.MatchingLabels{translate.LabelVCluster: b.c.config.VCluster}); err != nil {
		t.Fatal(err)
	}
	perName := map[string]int{}
	for _, h := range hostClaims.Items {
		if h.DeletionTimestamp == nil {
			perName[h.Annotations[translate.AnnotationName]]++
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var wrong []string
	for name := range b.outcomes {
		want := 0
		if stored[name] {
			want = 1
		}
		if perName[name] != want {
			wrong = append(wrong, fmt.Sprintf("%s: %d host claims, want %d", name, perName[name], want))
		}
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("%d claims without exactly their host claim: %v", len(wrong), wrong)
	}
}

// TestClaimsCarriedAcrossPodbridgeDowntime kills the reflector, creates
// claims (the webhook makes their host claims) and binds them on the host
// while it is down, then kills the webhook too and, with podbridge
// entirely down, deletes virtual claims (the tenant) and host claims (the
// host). Nothing is carried while podbridge is down; once both are back,
// the claims created meanwhile show their host claims' Bound status and
// have their virtual volumes, the virtual deletions reach the host, the
// host deletions reach the virtual cluster, and the invariant holds with
// statuses.
func TestClaimsCarriedAcrossPodbridgeDowntime(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	c.prepareClaims(t)
	webhook := c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook"})
	reflector := c.startReflector("reflector", false)
	ctx := context.Background()

	base := newClaimBurst(c, tl, "claim", 20, 4).start(ctx)
	base.wait()
	base.assertOutcomes(t, admitted)
	c.bindHostClaims(t, base.admittedNames())
	c.waitClaimInvariant(t, tl, true)

	if err := reflector.Kill(); err != nil {
		t.Fatal(err)
	}
	tl.fault("reflector SIGKILL")
	down := newClaimBurst(c, tl, "while-down", 10, 4).start(ctx)
	down.wait()
	down.assertOutcomes(t, admitted)
	c.bindHostClaims(t, down.admittedNames())

	if err := webhook.Kill(); err != nil {
		t.Fatal(err)
	}
	tl.fault("webhook SIGKILL (podbridge down)")
	deleted := map[string]bool{}
	var virtualDeleted, hostDeleted []string
	for i := range 5 {
		name := podName("claim", i)
		if err := c.virtualClient.Delete(ctx, newClaim(name)); err != nil {
			t.Fatalf("deleting virtual claim %s: %v", name, err)
		}
		virtualDeleted, deleted[name] = append(virtualDeleted, name), true
	}
	for i := 5; i < 10; i++ {
		name := podName("claim", i)
		key := c.hostClaimKey(name)
		h := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		if err := c.hostClient.Delete(ctx, h); err != nil {
			t.Fatalf("deleting host claim %s: %v", key.Name, err)
		}
		hostDeleted, deleted[name] = append(hostDeleted, name), true
	}
	for _, name := range hostDeleted {
		c.waitHostClaimGone(t, name)
	}
	// Nothing carried them yet: the host claims of the virtual deletions
	// stand, the virtual claims of the host deletions too, and the claims
	// made while the reflector was down still show no status of the host's.
	for _, name := range virtualDeleted {
		h := &corev1.PersistentVolumeClaim{}
		if err := c.hostClient.Get(ctx, c.hostClaimKey(name), h); err != nil || h.DeletionTimestamp != nil {
			t.Fatalf("host claim of %s, deleted in the virtual cluster while podbridge was down, already going: %v", name, err)
		}
	}
	for _, name := range slices.Concat(hostDeleted, down.admittedNames()) {
		v := &corev1.PersistentVolumeClaim{}
		if err := c.virtualClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, v); err != nil {
			t.Fatalf("virtual claim %s while podbridge was down: %v", name, err)
		}
		if strings.HasPrefix(name, "while-down") && v.Status.Phase == corev1.ClaimBound {
			t.Fatalf("virtual claim %s Bound while the reflector was down", name)
		}
	}
	tl.note("while podbridge was down: %d claims created (reflector down) and bound on the host, %d virtual claims and %d host claims deleted",
		len(down.admittedNames()), len(virtualDeleted), len(hostDeleted))

	if err := webhook.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := reflector.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.waitClaimDeletionsCarried(t, deleted)
	c.waitClaimInvariant(t, tl, true)
	base.assertNothingLost(t, deleted)
	down.assertNothingLost(t, nil)
}

// waitClaimDeletionsCarried waits until every named claim is gone from
// both clusters: deleted on one side, the reflector removed the other.
func (c *cluster) waitClaimDeletionsCarried(t *testing.T, names map[string]bool) {
	t.Helper()
	var remaining []string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, settleTimeout, true, func(ctx context.Context) (bool, error) {
		remaining = remaining[:0]
		for name := range names {
			if err := c.virtualClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
				remaining = append(remaining, "virtual "+name)
			}
			if err := c.hostClient.Get(ctx, c.hostClaimKey(name), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
				remaining = append(remaining, "host "+c.hostClaimKey(name).Name)
			}
		}
		return len(remaining) == 0, nil
	})
	if err != nil {
		t.Fatalf("claim deletions not carried out within %s: %d remain: %v", settleTimeout, len(remaining), remaining)
	}
}

// TestHostAPIServerStoppedDuringClaimBurst stops the host kube-apiserver
// while claims are being created, and starts it again. Every create must
// either succeed with its host claim or be refused with a 503 that says to
// retry: nothing half-done. Half the refused creates are retried and must
// succeed; the other half must leave no host claim (one their admission
// made before the host went away is an orphan the reflector removes).
// Bound on the host, every claim shows it.
func TestHostAPIServerStoppedDuringClaimBurst(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	c.prepareClaims(t)
	c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook"})
	c.startReflector("reflector", false)

	b := newClaimBurst(c, tl, "claim-host-down", 160, burstConcurrency).start(context.Background())
	b.waitProgress(t, "a quarter of the creates", func(total int, _ map[outcomeKind]int) bool { return total >= 40 })
	stopped := time.Now()
	if err := c.host.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	b.waitProgress(t, "20 refusals", func(_ int, k map[outcomeKind]int) bool { return k[refused503]+k[other] >= 20 })
	if err := c.host.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	tl.fault("host kube-apiserver stopped for %s", time.Since(stopped).Round(100*time.Millisecond))
	b.wait()

	b.assertOutcomes(t, admitted, refused503)
	if total, byKind := b.completed(); byKind[refused503] == 0 {
		t.Errorf("no create of %d was refused: the host outage missed the burst", total)
	}
	b.assertNothingLost(t, nil)
	c.waitWebhookAdmits()
	b.retryFailed(t, everyOther)
	b.noteAgainAfter409()
	c.waitClaimInvariant(t, tl, false)
	b.assertOneHostClaimEach(t)
	c.bindHostClaims(t, b.admittedNames())
	c.waitClaimInvariant(t, tl, true)
}

// TestWebhookKilledMidClaimBurst kills the webhook process (SIGKILL) in
// the middle of a burst of claim creates and restarts it on the same port.
// Admissions in flight fail; a host claim one of them made before dying
// is either collected by the reflector as an orphan (its create is not
// retried) or replaced by the retried create's (a new admission, a new
// sync ID: the webhook deletes the stale one first). Never two host claims
// for one claim; bound on the host, every claim shows it.
func TestWebhookKilledMidClaimBurst(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	c.prepareClaims(t)
	webhook := c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook"})
	c.startReflector("reflector", false)

	b := newClaimBurst(c, tl, "claim-webhook-kill", 160, burstConcurrency).start(context.Background())
	b.waitProgress(t, "a quarter of the creates", func(total int, _ map[outcomeKind]int) bool { return total >= 40 })
	if err := webhook.Kill(); err != nil {
		t.Fatal(err)
	}
	total, _ := b.completed()
	tl.fault("webhook SIGKILL after %d claim creates", total)
	b.waitProgress(t, "20 failed creates", func(_ int, k map[outcomeKind]int) bool { return k[refused503]+k[other] >= 20 })
	if err := webhook.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.wait()

	if _, byKind := b.completed(); byKind[refused503]+byKind[other] == 0 {
		t.Errorf("no create failed: the kill missed the burst")
	}
	b.assertNothingLost(t, nil)
	c.waitWebhookAdmits()
	b.retryFailed(t, everyOther)
	b.noteAgainAfter409()
	c.waitClaimInvariant(t, tl, false)
	b.assertOneHostClaimEach(t)
	c.bindHostClaims(t, b.admittedNames())
	c.waitClaimInvariant(t, tl, true)
}

// TestSlowHostClaimCreatesLeaveNoOrphan delays the host's answers on the
// webhook's host connection past its host timeout while claims are
// created: the host claims are made, podbridge never hears so in time,
// and every create is refused 503 with nothing stored. Each refused create
// left a host claim. Half are retried: the webhook deletes the stale host
// claim first (a new admission, a new sync ID), and the create is admitted
// once the host's claim protection lets the stale one go (a 409 "retry
// later" meanwhile, noted). The other half are orphans the reflector
// removes after the grace period. Exactly one host claim per stored claim
// and none for the rest; bound on the host, every claim shows it.
func TestSlowHostClaimCreatesLeaveNoOrphan(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	c.prepareClaims(t)
	hostURL, err := url.Parse(c.host.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startToxiproxy(t, "host-apiserver", hostURL.Host)
	hostViaProxy := kubeconfigVia(t, c.host.Kubeconfig, proxy.Listen, filepath.Join(c.dir, "host-via-toxiproxy.kubeconfig"))
	c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook", HostKubeconfig: hostViaProxy})
	c.startReflector("reflector", false)
	ctx := context.Background()

	warm := newClaimBurst(c, tl, "claim-warm", 10, 4).start(ctx)
	warm.wait()
	warm.assertOutcomes(t, admitted)

	addLatency(t, proxy, slowHostLatency)
	tl.fault("latency %s on the webhook's host connection", slowHostLatency)
	slow := newClaimBurst(c, tl, "claim-slow", 24, 12).start(ctx)
	slow.wait()
	removeLatency(t, proxy)
	slow.assertOutcomes(t, refused503)
	slow.assertNothingLost(t, nil)
	left := 0
	for i := range 24 {
		if err := c.hostClient.Get(ctx, c.hostClaimKey(podName("claim-slow", i)), &corev1.PersistentVolumeClaim{}); err == nil {
			left++
		}
	}
	tl.note("%d of 24 refused creates left a host claim", left)
	if left == 0 {
		t.Errorf("no refused create left a host claim: the latency did not let the host create and hide it")
	}

	c.waitWebhookAdmits()
	slow.retryFailed(t, everyOther)
	slow.noteAgainAfter409()
	c.waitClaimInvariant(t, tl, false)
	slow.assertOneHostClaimEach(t)
	warm.assertOneHostClaimEach(t)
	c.bindHostClaims(t, slices.Concat(warm.admittedNames(), slow.admittedNames()))
	c.waitClaimInvariant(t, tl, true)
}
