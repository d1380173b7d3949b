package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/translate"
)

// updateGuardCalls is how often the virtual apiserver has called the
// update guard, and how often its matchConditions spared the call.
func updateGuardCalls(ctx context.Context, t *testing.T) (called, skipped float64) {
	t.Helper()
	f, err := promscrape.ScrapeAPIServer(ctx, env.Virtual.Config)
	if err != nil {
		t.Fatal(err)
	}
	name := "pod-updates.podbridge.podbridge.io"
	for _, m := range f["apiserver_admission_webhook_admission_duration_seconds"].GetMetric() {
		if promscrape.Label(m, "name") == name {
			called += float64(m.GetHistogram().GetSampleCount())
		}
	}
	for _, m := range f["apiserver_admission_match_condition_exclusions_total"].GetMetric() {
		if promscrape.Label(m, "name") == name {
			skipped += m.GetCounter().GetValue()
		}
	}
	return called, skipped
}

// The update guard's matchConditions (issue 25) spare the webhook call
// for updates that touch none of podbridge's keys, and only those: every
// update that sets, changes or drops one, or claims the managed-by label,
// still reaches the guard, whatever else the tenant puts in the pod (an
// annotation map near the apiserver's size limit included: a condition
// that errored would skip the guard, which fails open).
func TestUpdateGuardOnlyForPodbridgeKeys(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "guarded")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	update := func(change func(p *corev1.Pod)) error { return updateVirtualPod(ctx, pod, "", change) }
	// Delta of calls and exclusions over one update.
	measure := func(change func(p *corev1.Pod)) (called, skipped float64, err error) {
		c0, s0 := updateGuardCalls(ctx, t)
		err = update(change)
		c1, s1 := updateGuardCalls(ctx, t)
		return c1 - c0, s1 - s0, err
	}

	t.Run("a tenant's own label and annotation changes cost no call", func(t *testing.T) {
		called, skipped, err := measure(func(p *corev1.Pod) {
			p.Labels["tier"] = "front"
			p.Annotations["owner"] = "team-a"
		})
		if err != nil || called != 0 || skipped != 1 {
			t.Errorf("update: %v; guard called %.0f times, spared %.0f, want 0 and 1", err, called, skipped)
		}
	})

	big := strings.Repeat("x", 1000)
	many := func(p *corev1.Pod) {
		// About 200 KiB of annotations in 200 keys: the apiserver allows 256 KiB.
		for i := range 200 {
			p.Annotations[fmt.Sprintf("bulk-%03d", i)] = big
		}
	}
	refused := []struct {
		name   string
		change func(p *corev1.Pod)
		field  string
	}{
		{"a changed sync ID", func(p *corev1.Pod) { p.Annotations[translate.AnnotationSyncID] = "someone-else" }, translate.AnnotationSyncID},
		{"a new podbridge annotation", func(p *corev1.Pod) { p.Annotations[translate.Prefix+"forged"] = "x" }, translate.Prefix + "forged"},
		{"a podbridge label", func(p *corev1.Pod) { p.Labels[translate.LabelVCluster] = "other" }, translate.LabelVCluster},
		{"the managed-by label", func(p *corev1.Pod) { p.Labels[translate.LabelManagedBy] = translate.ManagedByValue }, translate.LabelManagedBy},
		{"a changed sync ID among many annotations", func(p *corev1.Pod) {
			many(p)
			p.Annotations[translate.AnnotationSyncID] = "someone-else"
		}, translate.AnnotationSyncID},
	}
	for _, tc := range refused {
		t.Run(tc.name+" reaches the guard", func(t *testing.T) {
			called, skipped, err := measure(tc.change)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("update: %v, want it refused as invalid naming %s", err, tc.field)
			}
			if called != 1 {
				t.Errorf("guard called %.0f times (spared %.0f), want 1", called, skipped)
			}
		})
	}

	t.Run("dropped podbridge keys reach the guard and are kept", func(t *testing.T) {
		before := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), before); err != nil {
			t.Fatal(err)
		}
		// As kubectl replace of the tenant's own manifest does.
		called, skipped, err := measure(func(p *corev1.Pod) { p.Annotations = map[string]string{"owner": "team-b"} })
		// The guard's patch makes the apiserver run the admission chain
		// again, where the restored keys no longer match: one call, and a
		// spared reinvocation.
		if err != nil || called != 1 {
			t.Fatalf("update: %v; guard called %.0f times (spared %.0f), want 1", err, called, skipped)
		}
		after := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), after); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{translate.AnnotationSyncID, translate.AnnotationHostName} {
			if after.Annotations[key] == "" || after.Annotations[key] != before.Annotations[key] {
				t.Errorf("annotation %s: %q after the update, want %q kept", key, after.Annotations[key], before.Annotations[key])
			}
		}
		assertPaired(t, after)
	})
}
