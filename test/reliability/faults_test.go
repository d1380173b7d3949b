//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/translate"
)

// Sizes of the loads: bounded so the whole run fits in minutes on 2 cores,
// paced so a fault lands in the middle of a burst, not after it.
const (
	burstSize        = 200
	burstConcurrency = 12
	burstRate        = 20 // creates per second: a 200-pod burst lasts 10 s.
	// settleTimeout bounds the wait for the invariant after a fault: the
	// orphan grace period, a leader election's lease, and time for a
	// busy machine to run a few hundred pods.
	settleTimeout = orphanGrace + 3*time.Minute
)

// assertOutcomes fails the test for creates whose outcome is not one of
// allowed, and for 503 refusals that do not say they can be retried.
func (b *burst) assertOutcomes(t *testing.T, allowed ...outcomeKind) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := map[outcomeKind]bool{}
	for _, k := range allowed {
		ok[k] = true
	}
	var unexpected, unclear []string
	for name, o := range b.outcomes {
		switch {
		case !ok[o.kind]:
			unexpected = append(unexpected, fmt.Sprintf("%s: %s %s: %s", name, o.kind, o.reason, o.message))
		case o.kind == refused503 && !strings.Contains(o.message, "retry"):
			unclear = append(unclear, fmt.Sprintf("%s: %s", name, o.message))
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("%d creates ended other than %v; first: %s", len(unexpected), allowed, unexpected[0])
	}
	if len(unclear) > 0 {
		t.Errorf("%d 503 refusals do not tell the tenant to retry; first: %s", len(unclear), unclear[0])
	}
}

// TestHostAPIServerStoppedDuringBurst stops the host kube-apiserver while
// pods are being created, and starts it again. Every create must either
// succeed with its host pod or be refused with a 503 that says to retry;
// no other failure, no admitted pod missing, no refused pod stored. After
// the host is back, every refused create succeeds when retried and the
// invariant holds with statuses.
func TestHostAPIServerStoppedDuringBurst(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook"})
	c.startReflector("reflector", false)

	b := newBurst(c, tl, "host-down", burstSize, burstConcurrency, burstRate).start(context.Background())
	b.waitProgress(t, "a quarter of the creates", func(total int, _ map[outcomeKind]int) bool { return total >= burstSize/4 })
	stopped := time.Now()
	if err := c.host.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// Keep the host down until the fault has visibly bitten.
	b.waitProgress(t, "30 refusals", func(_ int, k map[outcomeKind]int) bool { return k[refused503]+k[other] >= 30 })
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
	b.retryFailed(t, nil)
	c.waitInvariant(t, tl)
}

// TestWebhookKilledMidBurst kills the webhook process (SIGKILL) in the
// middle of a burst and restarts it on the same port. Admissions in flight
// fail (the apiserver cannot call the webhook), but after the orphan grace
// period the invariant holds: host pods whose admission died were removed
// by the reflector, every admitted pod has its host pod, and every failed
// create succeeds when retried.
func TestWebhookKilledMidBurst(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	webhook := c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook"})
	c.startReflector("reflector", false)

	b := newBurst(c, tl, "webhook-kill", burstSize, burstConcurrency, burstRate).start(context.Background())
	b.waitProgress(t, "a quarter of the creates", func(total int, _ map[outcomeKind]int) bool { return total >= burstSize/4 })
	if err := webhook.Kill(); err != nil {
		t.Fatal(err)
	}
	total, _ := b.completed()
	tl.fault("webhook SIGKILL after %d creates", total)
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
	// Half are retried; the host pods the other half's dying admissions
	// may have created are the reflector's to remove.
	b.retryFailed(t, everyOther)
	c.waitInvariant(t, tl)
}

// TestReflectorKilledDuringChurn kills the reflector (SIGKILL) while pods
// are created and deleted, deletes pods on both sides while it is down,
// and restarts it. The restarted reflector must carry out every deletion
// issued while it was down, in both directions, bind and reflect the pods
// created meanwhile, and converge to the invariant with statuses.
func TestReflectorKilledDuringChurn(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook"})
	reflector := c.startReflector("reflector", false)
	ctx := context.Background()

	base := newBurst(c, tl, "base", 90, burstConcurrency, 40).start(ctx)
	base.wait()
	base.assertOutcomes(t, admitted)
	c.waitInvariant(t, tl)

	// Churn: creates, and deletions of base-000..029 alongside them.
	churn := newBurst(c, tl, "churn", 80, 8, burstRate).start(ctx)
	deleted := map[string]bool{}
	var deletedMu sync.Mutex
	deleteVirtual := func(names ...string) {
		for _, name := range names {
			if err := c.virtualClient.Delete(ctx, newPod(name)); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting virtual pod %s: %v", name, err)
			}
			deletedMu.Lock()
			deleted[name] = true
			deletedMu.Unlock()
		}
	}
	churnDeletes := make(chan struct{})
	go func() {
		defer close(churnDeletes)
		for i := range 30 {
			deleteVirtual(podName("base", i))
		}
	}()
	churn.waitProgress(t, "a quarter of the churn", func(total int, _ map[outcomeKind]int) bool { return total >= 20 })
	if err := reflector.Kill(); err != nil {
		t.Fatal(err)
	}
	total, _ := churn.completed()
	tl.fault("reflector SIGKILL after %d churn creates", total)

	// While it is down: tenants delete virtual pods, and host pods go
	// away on their own (evicted, deleted by an operator).
	var whileDown []string
	for i := 30; i < 50; i++ {
		whileDown = append(whileDown, podName("base", i))
	}
	deleteVirtual(whileDown...)
	var hostDeleted []string
	for i := 50; i < 65; i++ {
		name := podName("base", i)
		host := &corev1.Pod{}
		host.Namespace, host.Name = c.config.HostNamespace, translate.HostName(name, "default", c.config.VCluster)
		if err := c.hostClient.Delete(ctx, host); err != nil {
			t.Fatalf("deleting host pod %s: %v", host.Name, err)
		}
		hostDeleted = append(hostDeleted, name)
	}
	tl.note("deleted while the reflector was down: %d virtual pods, %d host pods", len(whileDown), len(hostDeleted))
	churn.wait()
	<-churnDeletes
	churn.assertOutcomes(t, admitted)
	if err := reflector.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	for _, name := range hostDeleted {
		deleted[name] = true
	}
	c.waitDeletionsCarried(t, deleted, settleTimeout)
	churn.assertNothingLost(t, nil)
	base.assertNothingLost(t, deleted)
	c.waitInvariant(t, tl)
}

// waitDeletionsCarried waits until every named pod is gone from both
// clusters: deleted on one side, the reflector removed the other.
func (c *cluster) waitDeletionsCarried(t *testing.T, names map[string]bool, timeout time.Duration) {
	t.Helper()
	var remaining []string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		remaining = remaining[:0]
		for name := range names {
			if err := c.virtualClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
				remaining = append(remaining, "virtual "+name)
			}
			hostName := translate.HostName(name, "default", c.config.VCluster)
			if err := c.hostClient.Get(ctx, client.ObjectKey{Namespace: c.config.HostNamespace, Name: hostName}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
				remaining = append(remaining, "host "+hostName)
			}
		}
		return len(remaining) == 0, nil
	})
	if err != nil {
		t.Fatalf("deletions not carried out within %s: %d pods remain: %v", timeout, len(remaining), remaining)
	}
}

// relistBound is how many pod LISTs the restarted virtual apiserver may
// serve while the reflector resumes. Clients with a pod informer on the
// virtual cluster (the reflector and kube-controller-manager) each list
// once when their watch cannot resume from the new apiserver's watch
// cache, and the reflector's node controller reads bound pods through
// uncached lists (one per node reconcile). A re-list storm, one list per
// pod or an informer looping, is well above it: the cluster has over a
// hundred pods.
const relistBound = 15

// TestVirtualAPIServerRestartWithoutRelistStorm restarts the virtual
// kube-apiserver under a reflector that reflects a hundred pods. The
// reflector must resume (pods created and deleted afterwards are
// reflected, bound and carried out) without a re-list storm: the pod
// LISTs the restarted apiserver serves, counted from its
// apiserver_request_total, stay under relistBound.
func TestVirtualAPIServerRestartWithoutRelistStorm(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook"})
	reflector := c.startReflector("reflector", false)
	ctx := context.Background()
	podLists := map[string]string{"verb": "LIST", "resource": "pods"}

	base := newBurst(c, tl, "base", 100, burstConcurrency, 40).start(ctx)
	base.wait()
	base.assertOutcomes(t, admitted)
	c.waitInvariant(t, tl)
	before, err := apiserverMetric(ctx, c.virtual, "apiserver_request_total", podLists)
	if err != nil {
		t.Fatal(err)
	}
	if before == 0 {
		t.Fatalf("apiserver_request_total%v counted nothing although the reflector listed pods: the measurement below would be vacuous", podLists)
	}

	stopped := time.Now()
	if err := c.virtual.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.virtual.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	tl.fault("virtual kube-apiserver restarted (down %s)", time.Since(stopped).Round(100*time.Millisecond))

	// The reflector has resumed when it reflects what happens after the
	// restart. Only Gets here: the test's own LISTs would be counted.
	c.waitWebhookAdmits()
	after := newBurst(c, tl, "after-restart", 20, 4, burstRate).start(ctx)
	after.wait()
	after.assertOutcomes(t, admitted)
	deleted := map[string]bool{}
	for i := range 10 {
		name := podName("base", i)
		if err := c.virtualClient.Delete(ctx, newPod(name)); err != nil {
			t.Fatalf("deleting virtual pod %s: %v", name, err)
		}
		deleted[name] = true
	}
	var created []string
	for i := range 20 {
		created = append(created, podName("after-restart", i))
	}
	c.waitRunning(t, created, settleTimeout)
	c.waitDeletionsCarried(t, deleted, settleTimeout)
	if err := reflector.Exited(); err != nil {
		t.Fatalf("the reflector did not survive the restart: %v", err)
	}

	lists, err := apiserverMetric(ctx, c.virtual, "apiserver_request_total", podLists)
	if err != nil {
		t.Fatal(err)
	}
	watches, err := apiserverMetric(ctx, c.virtual, "apiserver_request_total", map[string]string{"verb": "WATCH", "resource": "pods"})
	if err != nil {
		t.Fatal(err)
	}
	tl.note("pod LISTs: %.0f served by the first virtual apiserver in its life, %.0f by the restarted one until the reflector had resumed (bound %d); pod WATCHes opened on the restarted one: %.0f",
		before, lists, relistBound, watches)
	if watches == 0 {
		t.Errorf("no pod watch was opened on the restarted virtual apiserver: the reflector did not resume watching")
	}
	if lists > relistBound {
		t.Errorf("the restarted virtual apiserver served %.0f pod LISTs while the reflector resumed (bound %d): a re-list storm", lists, relistBound)
	}
	base.assertNothingLost(t, deleted)
	c.waitInvariant(t, tl)
}

// waitRunning waits, with Gets only, until every named virtual pod is
// bound and Running: the reflector reflected it.
func (c *cluster) waitRunning(t *testing.T, names []string, timeout time.Duration) {
	t.Helper()
	var pending []string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pending = pending[:0]
		for _, name := range names {
			pod := &corev1.Pod{}
			err := c.virtualClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, pod)
			if err != nil || pod.Status.Phase != corev1.PodRunning || pod.Spec.NodeName == "" {
				pending = append(pending, name)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		t.Fatalf("virtual pods not bound and Running within %s: %v", timeout, pending)
	}
}

// slowHostLatency is added to every answer on the webhook's host
// connection: longer than the webhook's host timeout, so the host pod is
// created but podbridge never hears of it in time.
const slowHostLatency = hostTimeout + 5*time.Second

// TestSlowHostAnswersWithinTimeout puts toxiproxy between the webhook and
// the host apiserver and delays the host's answers past the webhook's host
// timeout. Every create must be refused with a 503 that says to retry,
// sooner than the webhook timeout (podbridge answers; the apiserver does
// not have to give up on it). The host pods those creates left behind are
// orphans: after the grace period the invariant holds, half of them
// replaced by retried creates, the other half removed by the reflector.
func TestSlowHostAnswersWithinTimeout(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	hostURL, err := url.Parse(c.host.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startToxiproxy(t, "host-apiserver", hostURL.Host)
	hostViaProxy := kubeconfigVia(t, c.host.Kubeconfig, proxy.Listen, filepath.Join(c.dir, "host-via-toxiproxy.kubeconfig"))
	c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook", HostKubeconfig: hostViaProxy})
	c.startReflector("reflector", false)
	ctx := context.Background()

	warm := newBurst(c, tl, "warm", 20, 4, burstRate).start(ctx)
	warm.wait()
	warm.assertOutcomes(t, admitted)

	addLatency(t, proxy, slowHostLatency)
	tl.fault("latency %s on the webhook's host connection", slowHostLatency)
	slow := newBurst(c, tl, "slow", 48, 16, 100).start(ctx)
	slow.wait()
	removeLatency(t, proxy)

	slow.assertOutcomes(t, refused503)
	slowest := time.Duration(0)
	for _, o := range slow.outcomes {
		slowest = max(slowest, o.latency)
	}
	tl.note("slowest create answered in %s (host timeout %s, webhook timeout %s)", slowest.Round(10*time.Millisecond), hostTimeout, webhookTimeout)
	if slowest >= webhookTimeout {
		t.Errorf("a create took %s: podbridge did not answer within its webhook timeout %s", slowest, webhookTimeout)
	}
	slow.assertNothingLost(t, nil)

	c.waitWebhookAdmits()
	slow.retryFailed(t, everyOther)
	c.waitInvariant(t, tl)
}

// startToxiproxy runs a toxiproxy proxy in this process in front of
// upstream, on a free loopback port.
func startToxiproxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	logger := zerolog.New(os.Stderr).Level(zerolog.ErrorLevel) // its failures to reach upstream
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), logger)
	proxy := toxiproxy.NewProxy(server, name, loopback(freePort(t)), upstream)
	if err := proxy.Start(); err != nil {
		t.Fatalf("starting toxiproxy: %v", err)
	}
	t.Cleanup(proxy.Stop)
	return proxy
}

// addLatency delays every answer the upstream sends by latency.
func addLatency(t *testing.T, proxy *toxiproxy.Proxy, latency time.Duration) {
	t.Helper()
	toxic := fmt.Sprintf(`{"name":"slow-host","type":"latency","stream":"downstream","attributes":{"latency":%d}}`, latency.Milliseconds())
	if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		t.Fatalf("adding latency: %v", err)
	}
}

func removeLatency(t *testing.T, proxy *toxiproxy.Proxy) {
	t.Helper()
	if err := proxy.Toxics.RemoveToxic(context.Background(), "slow-host"); err != nil {
		t.Fatalf("removing latency: %v", err)
	}
}

// TestReplicasKilledUnderLoad runs two webhook replicas behind a
// round-robin load balancer and two reflector replicas with leader
// election, and under a burst kills (SIGKILL) the webhook replica that
// has served admissions and the reflector leader, restarting neither. The
// survivors must carry everything: no pod with two host pods, no status
// lost (every pair agrees and is Running), every failed create admitted
// on retry, the other reflector elected.
func TestReplicasKilledUnderLoad(t *testing.T) {
	tl := newTally(t)
	c := startCluster(t)
	ports := []int{freePort(t), freePort(t)}
	lb := startRoundRobin(t, []string{loopback(ports[0]), loopback(ports[1])})
	url := "https://" + lb.address() + translate.WebhookPath
	webhooks := []*podbridgeproc.Process{
		c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook-0", Port: ports[0], RegisterURL: url}),
		c.startWebhook(podbridgeproc.WebhookOptions{Name: "webhook-1", Port: ports[1], RegisterURL: url}),
	}
	reflectors := []*podbridgeproc.Process{c.startReflector("reflector-0", true), c.startReflector("reflector-1", true)}
	leaseName := "podbridge-reflector-" + c.config.VCluster
	leader := c.waitLeader(t, reflectors, leaseName)
	ctx := context.Background()

	b := newBurst(c, tl, "replicas", burstSize, burstConcurrency, burstRate).start(ctx)
	b.waitProgress(t, "a third of the creates", func(total int, _ map[outcomeKind]int) bool { return total >= burstSize/3 })
	// The apiserver keeps its connection to one replica: kill the one
	// that has been answering, or the fault would miss the load.
	busiest, most := webhooks[0], -1.0
	for _, w := range webhooks {
		n, err := w.Metric(ctx, "podbridge_webhook_admissions_total", nil)
		if err != nil {
			t.Fatal(err)
		}
		if n > most {
			busiest, most = w, n
		}
	}
	if err := busiest.Kill(); err != nil {
		t.Fatal(err)
	}
	tl.fault("SIGKILL %s after %.0f admissions", busiest.Name, most)
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	tl.fault("SIGKILL %s (leader)", leader.Name)
	b.wait()

	var survivor *podbridgeproc.Process
	for _, r := range reflectors {
		if r != leader {
			survivor = r
		}
	}
	if got := c.waitLeader(t, []*podbridgeproc.Process{survivor}, leaseName); got != survivor {
		t.Fatalf("%s did not take over", survivor.Name)
	}
	b.assertNothingLost(t, nil)
	c.waitWebhookAdmits()
	b.retryFailed(t, nil)
	c.waitInvariant(t, tl)
}

// waitLeader waits until one of the reflectors reports itself leader
// (controller-runtime's leader_election_master_status) and returns it.
func (c *cluster) waitLeader(t *testing.T, reflectors []*podbridgeproc.Process, lease string) *podbridgeproc.Process {
	t.Helper()
	var leader *podbridgeproc.Process
	// A lease outlives a killed leader by its duration (15 s), then the
	// next candidate's retry period (2 s) passes before it takes over.
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, r := range reflectors {
			if err := r.Exited(); err != nil {
				return false, err
			}
			v, err := r.Metric(ctx, "leader_election_master_status", map[string]string{"name": lease})
			if err == nil && v == 1 {
				leader = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("waiting for a reflector leader: %v", err)
	}
	return leader
}
