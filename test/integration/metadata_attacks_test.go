package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// allowedAnnotation is the one tenant annotation the test bed's podbridge
// copies to host pods (translate.Config.HostAnnotations, --host-annotations).
const allowedAnnotation = "example.com/allowed"

// podbridgePodLabels are the labels of podbridge's own webhook pods on the
// host (manifests/host/base): its Deployment, Service and
// PodDisruptionBudget select them. managed-by=podbridge is refused outright
// (TestHostilePods).
var podbridgePodLabels = map[string]string{
	"app.kubernetes.io/name":      "podbridge",
	"app.kubernetes.io/part-of":   "podbridge",
	"app.kubernetes.io/component": "webhook",
	"app.kubernetes.io/instance":  "podbridge",
}

// Attack: a tenant labels its pod exactly like podbridge's webhook pods, so
// that the host's podbridge Service sends it traffic, its PDB counts it and
// its ReplicaSet adopts it (and may delete podbridge's own pods). The host
// pod carries the labels only under podbridge's tenant keys: no host
// selector written for podbridge's pods selects it, while the tenant's own
// `kubectl get pods -l` still does.
func TestTenantLabelsDoNotJoinHostSelectors(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "impostor")
	for k, v := range podbridgePodLabels {
		pod.Labels[k] = v
	}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	hostNS := env.Options.Translate.HostNamespace
	selectors := map[string]map[string]string{
		"webhook Deployment, Service and PDB": {"app.kubernetes.io/component": "webhook", "app.kubernetes.io/instance": "podbridge"},
		"reflector Deployment":                {"app.kubernetes.io/component": "reflector", "app.kubernetes.io/instance": "podbridge"},
		"metrics Service":                     {"app.kubernetes.io/instance": "podbridge"},
		"kustomize common labels":             {"app.kubernetes.io/name": "podbridge", "app.kubernetes.io/part-of": "podbridge"},
	}
	for what, selector := range selectors {
		selected := &corev1.PodList{}
		if err := hostClient.List(ctx, selected, client.InNamespace(hostNS), client.MatchingLabels(selector)); err != nil {
			t.Fatal(err)
		}
		for _, p := range selected.Items {
			if p.Annotations[translate.AnnotationVCluster] != "" {
				t.Errorf("the %s selector %v selects tenant host pod %s", what, selector, p.Name)
			}
		}
	}
	for k, v := range podbridgePodLabels {
		if got, ok := host.Labels[k]; ok {
			t.Errorf("host pod carries the tenant's label %s=%q verbatim", k, got)
		}
		if got := host.Labels[translate.TenantKey(k)]; got != v {
			t.Errorf("host label %s = %q, want the tenant's %q", translate.TenantKey(k), got, v)
		}
	}

	// The virtual side reads the tenant's own labels (kubectl get pods -l).
	listed := &corev1.PodList{}
	if err := virtualClient.List(ctx, listed, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/component": "webhook", "app.kubernetes.io/instance": "podbridge"}); err != nil {
		t.Fatal(err)
	}
	if len(listed.Items) != 1 || listed.Items[0].Name != pod.Name {
		t.Errorf("virtual pods with the tenant's labels: %d, want %s", len(listed.Items), pod.Name)
	}
	// A tenant label spelled as a host key is translated like any other:
	// the tenant cannot write a host key directly.
	sneaky := simplePod(ns, "sneaky")
	sneaky.Labels[translate.TenantKey("app.kubernetes.io/component")] = "webhook"
	if err := virtualClient.Create(ctx, sneaky); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	sneakyHost, err := getHostPod(ctx, sneaky)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sneakyHost.Labels[translate.TenantKey("app.kubernetes.io/component")]; ok {
		t.Errorf("a tenant label spelled as a host key reached the host as that host key: %v", sneakyHost.Labels)
	}
}

// Attack: a tenant annotates its pod for host features keyed on
// annotations: Multus networks, a fixed IP from Calico, a mesh opt-out.
// None reaches the host pod, at creation or by a later update; the
// allow-listed annotation does, and follows the tenant's changes.
func TestTenantAnnotationsDoNotSteerHost(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	hostile := map[string]string{
		"k8s.v1.cni.cncf.io/networks":                      `[{"name":"host-underlay","namespace":"kube-system"}]`,
		"cni.projectcalico.org/ipAddrs":                    `["10.0.0.9"]`,
		"sidecar.istio.io/inject":                          "false",
		"traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0",
	}
	pod := simplePod(ns, "annotated")
	pod.Annotations = map[string]string{allowedAnnotation: "one"}
	for k, v := range hostile {
		pod.Annotations[k] = v
	}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	for k := range hostile {
		if v, ok := host.Annotations[k]; ok {
			t.Errorf("host pod carries the tenant's annotation %s=%q", k, v)
		}
	}
	if got := host.Annotations[allowedAnnotation]; got != "one" {
		t.Errorf("allow-listed annotation %s = %q on the host, want %q", allowedAnnotation, got, "one")
	}

	// Updates: the reflector carries the allow-listed change, and still no
	// other tenant annotation.
	err = updateVirtualPod(ctx, pod, "", func(p *corev1.Pod) {
		p.Annotations[allowedAnnotation] = "two"
		p.Annotations["v1.multus-cni.io/default-network"] = "kube-system/host-underlay"
	})
	if err != nil {
		t.Fatalf("updating virtual pod: %v", err)
	}
	eventually(t, 20*time.Second, "allow-listed annotation updated on the host", func(ctx context.Context) (bool, string) {
		host, err := getHostPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		return host.Annotations[allowedAnnotation] == "two", fmt.Sprint(host.Annotations)
	})
	host, err = getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v1.multus-cni.io/default-network", "k8s.v1.cni.cncf.io/networks"} {
		if v, ok := host.Annotations[k]; ok {
			t.Errorf("after the update, host pod carries the tenant's annotation %s=%q", k, v)
		}
	}
}

// Pod (anti-)affinity and topology spread between tenant pods behave on the
// host as the tenant wrote them, though their labels are under host keys:
// the host scheduler places the pods. Two fresh nodes hold them (topology
// key testNodeLabel: test nodes have no kubernetes.io/hostname), so the
// counts are exact: required anti-affinity puts two pods on different
// nodes and leaves a third unschedulable; required affinity puts a pod next
// to its target; a spread constraint sends a pod to the emptier node.
func TestTenantSelectorsScheduleAsWritten(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	nodes := []string{newHostNode(t), newHostNode(t)}
	onTestNodes := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: testNodeLabel, Operator: corev1.NodeSelectorOpIn, Values: nodes}}}},
	}}}
	hostNode := func(ctx context.Context, p *corev1.Pod) (string, string) {
		host, err := getHostPod(ctx, p)
		if err != nil {
			return "", err.Error()
		}
		return host.Spec.NodeName, fmt.Sprintf("node %q, conditions %v", host.Spec.NodeName, host.Status.Conditions)
	}
	placed := func(p *corev1.Pod) string {
		var node string
		eventually(t, 30*time.Second, "host pod of "+p.Name+" placed", func(ctx context.Context) (bool, string) {
			var detail string
			node, detail = hostNode(ctx, p)
			return node != "", detail
		})
		return node
	}
	create := func(p *corev1.Pod) {
		t.Helper()
		if err := virtualClient.Create(ctx, p); err != nil {
			t.Fatalf("creating %s: %v", p.Name, err)
		}
	}

	// Anti-affinity: "apart" pods never share a node.
	apart := func(i int) *corev1.Pod {
		p := simplePod(ns, fmt.Sprintf("apart-%d", i))
		p.Labels["example.com/group"] = "apart"
		p.Spec.Affinity = onTestNodes.DeepCopy()
		p.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey: testNodeLabel, LabelSelector: metav1LabelSelectorFor("example.com/group", "apart"),
		}}}
		return p
	}
	first, second, third := apart(0), apart(1), apart(2)
	create(first)
	create(second)
	n1, n2 := placed(first), placed(second)
	if n1 == n2 || !slices.Contains(nodes, n1) || !slices.Contains(nodes, n2) {
		t.Errorf("anti-affine pods placed on %s and %s, want the two test nodes %v", n1, n2, nodes)
	}
	create(third)
	eventually(t, 30*time.Second, "third anti-affine pod unschedulable on the host", func(ctx context.Context) (bool, string) {
		host, err := getHostPod(ctx, third)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range host.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return host.Spec.NodeName == "", "node " + host.Spec.NodeName
			}
		}
		return false, fmt.Sprintf("node %q, conditions %v", host.Spec.NodeName, host.Status.Conditions)
	})

	// Affinity: "near" goes where the first "apart" pod is.
	near := simplePod(ns, "near")
	near.Spec.Affinity = onTestNodes.DeepCopy()
	near.Spec.Affinity.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		TopologyKey: testNodeLabel, LabelSelector: metav1LabelSelectorFor("app", first.Name),
	}}}
	create(near)
	if got := placed(near); got != n1 {
		t.Errorf("affine pod placed on %s, want %s next to %s", got, n1, first.Name)
	}

	// Topology spread: two "spread" pods on the first node; a third must
	// go to the second (a skew of 3 would exceed 1).
	spread := func(name, node string) *corev1.Pod {
		p := simplePod(ns, name)
		p.Labels["example.com/spread"] = "s"
		if node != "" {
			p.Spec.NodeSelector = map[string]string{testNodeLabel: node}
			return p
		}
		p.Spec.Affinity = onTestNodes.DeepCopy()
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: testNodeLabel, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: metav1LabelSelectorFor("example.com/spread", "s"),
		}}
		return p
	}
	pinned := []*corev1.Pod{spread("pinned-0", nodes[0]), spread("pinned-1", nodes[0])}
	for _, p := range pinned {
		create(p)
		placed(p)
	}
	spreading := spread("spreading", "")
	create(spreading)
	if got := placed(spreading); got != nodes[1] {
		t.Errorf("spread pod placed on %s, want %s (two matching pods on %s)", got, nodes[1], nodes[0])
	}
	for _, p := range append(pinned, first, second, third, near, spreading) {
		if err := virtualClient.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting %s: %v", p.Name, err)
		}
	}
}
