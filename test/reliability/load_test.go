//go:build reliability

package reliability

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
)

type outcomeKind int

const (
	admitted outcomeKind = iota
	// refused503 is the webhook's retryable refusal: the host was
	// unavailable or did not answer within the host timeout.
	refused503
	// other is any other failure: the webhook or the virtual apiserver
	// could not be reached, a timeout, ...
	other
)

func (k outcomeKind) String() string {
	return [...]string{"admitted", "refused503", "other"}[k]
}

// outcome is what became of one create.
type outcome struct {
	kind    outcomeKind
	reason  string // for other: code and reason, or the transport error
	message string
	latency time.Duration
}

func classify(err error, latency time.Duration) outcome {
	if err == nil {
		return outcome{kind: admitted, latency: latency}
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		if s.Code == http.StatusServiceUnavailable {
			return outcome{kind: refused503, reason: string(s.Reason), message: s.Message, latency: latency}
		}
		return outcome{kind: other, reason: fmt.Sprintf("%d %s", s.Code, s.Reason), message: s.Message, latency: latency}
	}
	return outcome{kind: other, reason: transportReason(err), message: err.Error(), latency: latency}
}

// transportReason names a failure that never reached an apiserver's answer.
func transportReason(err error) string {
	msg := err.Error()
	for _, known := range []string{"connection refused", "connection reset", "EOF", "context deadline exceeded", "i/o timeout"} {
		if strings.Contains(msg, known) {
			return known
		}
	}
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return msg
}

// burst creates pods (or claims: newClaimBurst) named prefix-NNN in the
// default namespace of the virtual cluster, concurrency at a time and at
// most rate per second, and records each outcome. Faults are injected
// while it runs: tests wait on its progress.
type burst struct {
	c           *cluster
	tl          *tally
	prefix      string
	count       int
	concurrency int
	rate        float32
	// object is the object of a name to create; stored lists the names
	// of those the virtual cluster holds.
	object func(name string) client.Object
	stored func(ctx context.Context) (map[string]bool, error)
	// retryAgain, when set, says after a retried create failed with o
	// whether to make it once more (it may wait first for what the refusal
	// said to wait for).
	retryAgain func(t *testing.T, name string, o outcome) bool
	// againAfter409 counts the creates retryAgain made once more.
	againAfter409 int

	mu       sync.Mutex
	outcomes map[string]outcome
	done     chan struct{}
}

func newBurst(c *cluster, tl *tally, prefix string, count, concurrency int, rate float32) *burst {
	return &burst{c: c, tl: tl, prefix: prefix, count: count, concurrency: concurrency, rate: rate,
		object: func(name string) client.Object { return newPod(name) },
		stored: func(ctx context.Context) (map[string]bool, error) {
			pods := &corev1.PodList{}
			if err := c.virtualClient.List(ctx, pods, client.InNamespace("default")); err != nil {
				return nil, fmt.Errorf("listing virtual pods: %w", err)
			}
			names := map[string]bool{}
			for _, p := range pods.Items {
				names[p.Name] = true
			}
			return names, nil
		},
		outcomes: map[string]outcome{}, done: make(chan struct{})}
}

func podName(prefix string, i int) string { return fmt.Sprintf("%s-%03d", prefix, i) }

func newPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"reliability": "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
	}
}

// start runs the burst in the background; wait returns when it is over.
func (b *burst) start(ctx context.Context) *burst {
	limiter := flowcontrol.NewTokenBucketRateLimiter(b.rate, 1)
	names := make(chan string)
	var wg sync.WaitGroup
	for range b.concurrency {
		wg.Go(func() {
			for name := range names {
				b.create(ctx, name, false)
			}
		})
	}
	go func() {
		defer close(b.done)
		for i := range b.count {
			if limiter.Wait(ctx) != nil {
				break
			}
			names <- podName(b.prefix, i)
		}
		close(names)
		wg.Wait()
	}()
	return b
}

// create makes one pod and records its outcome. The timeout is the
// client's bound, well above the webhook's: an answer that late is a hang.
func (b *burst) create(ctx context.Context, name string, retry bool) outcome {
	ctx, cancel := context.WithTimeout(ctx, 3*webhookTimeout)
	defer cancel()
	started := time.Now()
	err := b.c.virtualClient.Create(ctx, b.object(name))
	if retry && apierrors.IsAlreadyExists(err) {
		err = nil // the first attempt was stored after all; nothing lost.
	}
	o := classify(err, time.Since(started))
	b.mu.Lock()
	b.outcomes[name] = o
	b.mu.Unlock()
	b.tl.count(o, retry)
	return o
}

func (b *burst) wait() { <-b.done }

// completed returns how many creates have an outcome, and how many of
// each kind.
func (b *burst) completed() (total int, byKind map[outcomeKind]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	byKind = map[outcomeKind]int{}
	for _, o := range b.outcomes {
		byKind[o.kind]++
	}
	return len(b.outcomes), byKind
}

// waitProgress waits until condition holds for the burst's progress, or
// the burst ends.
func (b *burst) waitProgress(t *testing.T, what string, condition func(total int, byKind map[outcomeKind]int) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-b.done:
			return true, nil
		default:
		}
		return condition(b.completed()), nil
	})
	if err != nil {
		total, byKind := b.completed()
		t.Fatalf("burst %s: waiting for %s: %v (completed %d: %v)", b.prefix, what, err, total, byKind)
	}
}

// failed returns the names whose last create failed.
func (b *burst) failed() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var names []string
	for name, o := range b.outcomes {
		if o.kind != admitted {
			names = append(names, name)
		}
	}
	return names
}

// retryFailed creates again, once, every pod whose create failed and
// which, when given, pick selects: after the fault is over each must be
// admitted, which proves the refusals were retryable and that the failed
// attempt (a host pod it may have left) is not in the way. Tests leave
// some failed creates alone, so that what they left on the host must be
// removed by the reflector as orphans.
func (b *burst) retryFailed(t *testing.T, pick func(name string) bool) {
	t.Helper()
	var failed []string
	for _, name := range b.failed() {
		if pick == nil || pick(name) {
			failed = append(failed, name)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, b.concurrency)
	var mu sync.Mutex
	var refused []string
	for _, name := range failed {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			o := b.create(context.Background(), name, true)
			if o.kind != admitted && b.retryAgain != nil && b.retryAgain(t, name, o) {
				o = b.create(context.Background(), name, true)
			}
			if o.kind != admitted {
				mu.Lock()
				refused = append(refused, fmt.Sprintf("%s: %s %s: %s", name, o.kind, o.reason, o.message))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(refused) > 0 {
		t.Errorf("%d of %d retried creates failed after the fault was over; first: %s", len(refused), len(failed), refused[0])
	}
}

// assertNothingLost compares the outcomes with the virtual cluster: an
// admitted create must have its object, a refused (503) one must not. Creates
// that failed otherwise (say, the apiserver timed out after storing) may
// or may not; the invariant covers them. deleted are pods the test
// removed itself.
func (b *burst) assertNothingLost(t *testing.T, deleted map[string]bool) {
	t.Helper()
	present, err := b.stored(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var lost, ghosts []string
	for name, o := range b.outcomes {
		switch {
		case o.kind == admitted && !present[name] && !deleted[name]:
			lost = append(lost, name)
		case o.kind == refused503 && present[name]:
			ghosts = append(ghosts, name)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d admitted creates have no virtual object (lost silently): %v", len(lost), lost)
	}
	if len(ghosts) > 0 {
		t.Errorf("%d creates refused with 503 have a virtual object anyway: %v", len(ghosts), ghosts)
	}
}

// waitInvariant polls check.Run until it reports no violation, statuses
// included, and every virtual pod is bound and Running (two Pending pods
// agree vacuously): nothing lost, no status lost. It fails the test with
// the last violations after settleTimeout. It is called once every create has
// returned, so no admission is under way: a host pod without its virtual
// pod is an orphan at any age (OrphanGracePeriod 0), and the check passes
// only once the reflector has removed it, which it does once the pod is
// older than its grace period.
func (c *cluster) waitInvariant(t *testing.T, tl *tally) {
	t.Helper()
	c.settle(t, tl, invariant{
		what:    "the invariant",
		run:     check.Run,
		orphan:  check.Orphan,
		pending: c.notRunning,
		waiting: "virtual pods not bound and Running",
	})
}

// invariant is what settle polls: a check, the kind of its violations
// that are orphans the reflector collects, and what must also be empty
// (nil: nothing).
type invariant struct {
	what    string
	run     func(context.Context, client.Reader, client.Reader, check.Options) ([]check.Violation, error)
	orphan  string
	pending func(context.Context) ([]string, error)
	waiting string
}

// settle polls inv until it reports no violation and nothing pending,
// counts the orphans it saw collected and the violations left in tl, and
// fails the test with the last of them after settleTimeout.
func (c *cluster) settle(t *testing.T, tl *tally, inv invariant) {
	t.Helper()
	orphans := map[string]bool{}
	var last []check.Violation
	var pending []string
	var lastErr error
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, settleTimeout, true, func(ctx context.Context) (bool, error) {
		last, lastErr = inv.run(ctx, c.hostClient, c.virtualClient, check.Options{Config: c.config, Statuses: true, Now: time.Now()})
		if lastErr != nil {
			return false, nil //nolint:nilerr // an apiserver may be starting: retry, report the last error at the end.
		}
		for _, v := range last {
			if v.Kind == inv.orphan {
				orphans[v.Host] = true
			}
		}
		pending = nil
		if inv.pending != nil {
			if pending, lastErr = inv.pending(ctx); lastErr != nil {
				return false, nil //nolint:nilerr // as above.
			}
		}
		return len(last) == 0 && len(pending) == 0, nil
	})
	tl.mu.Lock()
	tl.OrphansCleaned += len(orphans)
	tl.Violations = len(last)
	tl.mu.Unlock()
	if err != nil {
		var lines []string
		for i, v := range last {
			if i == 20 {
				lines = append(lines, fmt.Sprintf("... and %d more", len(last)-i))
				break
			}
			lines = append(lines, v.String())
		}
		t.Fatalf("%s did not hold within %s: %d violations, %d %s %.300v (last error: %v):\n%s",
			inv.what, settleTimeout, len(last), len(pending), inv.waiting, pending, lastErr, strings.Join(lines, "\n"))
	}
}

// notRunning lists the virtual pods, not being deleted, that are not yet
// bound and Running.
func (c *cluster) notRunning(ctx context.Context) ([]string, error) {
	pods := &corev1.PodList{}
	if err := c.virtualClient.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("listing virtual pods: %w", err)
	}
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && (p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "") {
			names = append(names, fmt.Sprintf("%s (%s, node %q)", p.Name, p.Status.Phase, p.Spec.NodeName))
		}
	}
	return names, nil
}

// everyOther picks half of the names of a burst: those with an even index.
func everyOther(name string) bool {
	return strings.ContainsAny(name[len(name)-1:], "02468")
}
