package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/translate"
)

// A tenant's own admission policy refuses every pod after podbridge's
// webhook made its host pod, and the tenant creates pods in a loop: each
// refused create leaves a held host pod until it is collected. They count
// against the virtual cluster's cap on host pods, so the flood fills the
// tenant's own cap and stops there, refused with the flag named, instead
// of filling the shared host.
func TestPodFloodStopsAtTheCapOnHostPods(t *testing.T) {
	ctx := context.Background()
	const name, maxHostPods = "zz-flood", 3
	tc := env.Options.Translate
	tc.VCluster = "floodtest"
	startExtraWebhookWithLimits(t, name, tc, certsSelfManaged(t, "flood-test-tls"), caps.Limits{MaxHostPods: maxHostPods})
	t.Cleanup(func() { removeHostObjectsOf(t, tc) })
	virtual := secondClient
	floodPod := func(podName string) *corev1.Pod {
		pod := simplePod("default", podName)
		pod.Labels[certTestLabel] = name
		pod.Labels["flood"] = "true"
		pod.Spec.AutomountServiceAccountToken = ptr.To(false)
		return pod
	}
	eventually(t, 30*time.Second, "the flood webhook to answer", func(ctx context.Context) (bool, string) {
		pod := floodPod("flood-probe")
		err := virtual.Create(ctx, pod, client.DryRunAll)
		return err == nil && pod.Annotations[translate.AnnotationHostName] != "", fmt.Sprint(err)
	})
	refuseAfterPodbridge(t, "flood")

	// Each create is refused after podbridge admitted it; its host pod stays.
	for i := range maxHostPods {
		err := virtual.Create(ctx, floodPod("flood-"+itoa(i)))
		if err == nil || !strings.Contains(err.Error(), "tenant refuses floods") {
			t.Fatalf("create %d: %v, want the tenant's policy to refuse it", i, err)
		}
	}
	err := virtual.Create(ctx, floodPod("flood-over"))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "--max-host-pods") || !strings.Contains(err.Error(), fmt.Sprintf("limit of %d", maxHostPods)) {
		t.Fatalf("create past the cap: %v, want 403 naming --max-host-pods and its limit", err)
	}
	pods := &corev1.PodList{}
	if err := hostClient.List(ctx, pods, client.InNamespace(tc.HostNamespace), client.MatchingLabels{translate.LabelVCluster: tc.VCluster}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != maxHostPods {
		t.Fatalf("%d host pods of the flooding virtual cluster, want the cap, %d", len(pods.Items), maxHostPods)
	}
	for _, p := range pods.Items {
		if !translate.HeldForVirtualPod(&p) {
			t.Errorf("host pod %s of a refused create is not held", p.Name)
		}
	}
}

// refuseAfterPodbridge installs a ValidatingAdmissionPolicy in the second
// virtual cluster that refuses pods labelled label, as a tenant may:
// validation runs after every mutating webhook, podbridge's included.
func refuseAfterPodbridge(t *testing.T, label string) {
	t.Helper()
	denyPods(t, secondClient, "refuse-"+label, admissionregistrationv1.Validation{
		Expression: "!has(object.metadata.labels) || !('" + label + "' in object.metadata.labels)",
		Message:    "the tenant refuses floods",
	})
	eventually(t, 30*time.Second, "the tenant's policy to refuse", func(ctx context.Context) (bool, string) {
		probe := simplePod("default", "policy-probe")
		probe.Labels[label] = "true"
		err := secondClient.Create(ctx, probe, client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "tenant refuses floods"), fmt.Sprint(err)
	})
}

// denyPods creates, through c, a ValidatingAdmissionPolicy named name
// that refuses pod creates failing validation, and its binding; both go
// when the test ends. The apiserver loads it asynchronously: callers wait
// until it refuses.
func denyPods(t *testing.T, c client.Client, name string, validation admissionregistrationv1.Validation) {
	t.Helper()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{validation},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	for _, obj := range []client.Object{policy, binding} {
		if err := c.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
	}
}
