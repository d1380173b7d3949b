//go:build node

package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Pod-start latency on the real node, side by side in one run: a tenant
// pod through podbridge (create in the virtual cluster until the virtual
// pod is Ready: webhook, host create, gate released after the token is
// bound, real start, status reflected back) against the same pod created
// directly on the host (until the host pod is Ready). It reports the
// medians and their ratio, and asserts every pod started.
func TestPodStartLatencyThroughPodbridgeVsDirect(t *testing.T) {
	const rounds = 5
	ctx := context.Background()
	ns := namespace(t)
	hostNS := "direct-latency"
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hostNS}},
		// The dev host runs no controller manager to create it.
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: hostNS}},
	} {
		if err := hostClient.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = hostClient.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(hostNS), client.GracePeriodSeconds(0))
	})
	var through, direct []time.Duration
	for i := range rounds {
		v := realPod(ns, fmt.Sprintf("latency-%d", i), "pause")
		h := realPod(hostNS, fmt.Sprintf("direct-%d", i), "pause")
		h.Spec.AutomountServiceAccountToken = ptr.To(false) // no token controller on the dev host
		measureVirtual := func() {
			start := time.Now()
			create(t, v)
			through = append(through, timeUntil(t, start, func(ctx context.Context) (bool, error) {
				p, err := virtualPod(ctx, v)
				return err == nil && ready(p) == corev1.ConditionTrue, err
			}))
		}
		measureDirect := func() {
			start := time.Now()
			if err := hostClient.Create(ctx, h); err != nil {
				t.Fatal(err)
			}
			direct = append(direct, timeUntil(t, start, func(ctx context.Context) (bool, error) {
				p := &corev1.Pod{}
				err := hostClient.Get(ctx, client.ObjectKeyFromObject(h), p)
				return err == nil && ready(p) == corev1.ConditionTrue, err
			}))
		}
		// Alternate which goes first, so neither always meets a busier node.
		if i%2 == 0 {
			measureVirtual()
			measureDirect()
		} else {
			measureDirect()
			measureVirtual()
		}
	}
	mt, md := median(through), median(direct)
	t.Logf("pod start on the real node, %d rounds: through podbridge median %s %v; direct on the host median %s %v; ratio %.2f",
		rounds, mt.Round(time.Millisecond), round(through), md.Round(time.Millisecond), round(direct), float64(mt)/float64(md))
}

// timeUntil polls condition every 20 ms (one minute at most) and returns
// the time since start when it held.
func timeUntil(t *testing.T, start time.Time, condition func(ctx context.Context) (bool, error)) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var last error
	for {
		ok, err := condition(ctx)
		if ok {
			return time.Since(start)
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod not Ready within a minute (last error: %v)", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func round(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v.Round(time.Millisecond)
	}
	return out
}
