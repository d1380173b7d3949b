package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// Virtual nodes are the host's to decide. Every host node tenants may use
// is shown from the start, ready to schedule against: the host node's
// conditions and taints, not the not-ready taint the virtual apiserver
// gives every new Node. It stays the same object while pods come and go,
// and goes as soon as its host node does.
func TestVirtualNodesAreTheHostNodesTenantsMayUse(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	node := newHostNode(t)
	hostNode := &corev1.Node{}
	vnode := &corev1.Node{}
	eventually(t, 20*time.Second, "virtual node "+node+" mirrors its host node with no pod on it", func(ctx context.Context) (bool, string) {
		if err := hostClient.Get(ctx, client.ObjectKey{Name: node}, hostNode); err != nil {
			return false, err.Error()
		}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: node}, vnode); err != nil {
			return false, err.Error()
		}
		return slices.EqualFunc(vnode.Spec.Taints, hostNode.Spec.Taints, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) }) && isNodeReady(vnode),
			fmt.Sprintf("taints %v (host %v), ready %v", vnode.Spec.Taints, hostNode.Spec.Taints, isNodeReady(vnode))
	})
	if vnode.Labels[translate.LabelManagedBy] != translate.ManagedByValue || vnode.Labels[testNodeLabel] != node {
		t.Errorf("virtual node labels %v: want %s=%s and the host node's labels", vnode.Labels, translate.LabelManagedBy, translate.ManagedByValue)
	}
	nodeUID := vnode.UID

	// Each pod is deleted as the next is created on the same node.
	var last *corev1.Pod
	for i := range 3 {
		pod := podOnNode(ns, fmt.Sprintf("churn-%d", i), node)
		if last != nil {
			if err := virtualClient.Delete(ctx, last); err != nil {
				t.Fatal(err)
			}
		}
		if err := virtualClient.Create(ctx, pod); err != nil {
			t.Fatalf("creating virtual pod: %v", err)
		}
		pod = waitRunningBound(t, pod)
		if pod.Spec.NodeName != node {
			t.Fatalf("virtual pod %s bound to %q, want %q", pod.Name, pod.Spec.NodeName, node)
		}
		if err := virtualClient.Get(ctx, client.ObjectKey{Name: node}, vnode); err != nil {
			t.Fatalf("virtual node %s while pod %s is bound to it: %v", node, pod.Name, err)
		}
		if vnode.UID != nodeUID {
			t.Errorf("virtual node %s was re-created while its pods were replaced", node)
		}
		last = pod
	}

	// The host node goes while a pod is still bound to it.
	deletedBefore := actionCount(t, "node_delete")
	host, err := getHostPod(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	if err := hostClient.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		t.Fatalf("deleting host node: %v", err)
	}
	waitGone(t, virtualClient, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, 20*time.Second)
	if got := actionCount(t, "node_delete"); got <= deletedBefore {
		t.Errorf("node_delete actions %v, want more than %v", got, deletedBefore)
	}

	// No kubelet finishes the host pod any more; the host would garbage
	// collect it. Its removal takes the virtual pod with it.
	if err := hostClient.Delete(ctx, host, client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("removing host pod: %v", err)
	}
	waitGone(t, virtualClient, last, 20*time.Second)
}

// A host node the platform keeps tenants off (here: a taint no tenant may
// tolerate) is never shown, and the tenant cannot make the reflector show
// it: a Node the tenant makes under podbridge's mark and with that node's
// name, even with a pod bound to it, keeps what the tenant wrote and is
// removed once the node grace period has passed. Before, the reflector
// filled it in with the host node's labels, capacity and conditions and
// kept it while the pod was bound.
func TestTenantCannotMakeThePlatformsNodesShow(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	platform := newHostNode(t, corev1.Taint{Key: "platform.example/system", Effect: corev1.TaintEffectNoSchedule})

	// A pod the host cannot place: pending, so the tenant may bind it.
	pending := podOnNode(ns, "bound-by-tenant", "no-such-node")
	if err := virtualClient.Create(ctx, pending); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), pending, client.GracePeriodSeconds(0)) })

	watcher, err := clientset(t, env.Virtual.Config).CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + platform})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Stop()
	forged := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: platform, Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue, "tenant": "wrote-this"}},
		Status: corev1.NodeStatus{
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: env.Kubelet.Address}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: env.Kubelet.Port}},
		},
	}
	if err := virtualClient.Create(ctx, forged); err != nil {
		t.Fatalf("creating the tenant's Node: %v", err)
	}
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pending.Name, Namespace: ns}, Target: corev1.ObjectReference{Kind: "Node", Name: platform}}
	if err := virtualClient.SubResource("binding").Create(ctx, pending, binding); err != nil {
		t.Fatalf("binding the pod to the tenant's Node: %v", err)
	}

	// Every state the Node passes through, until it is removed.
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-watcher.ResultChan():
			if !ok {
				t.Fatal("watch of the tenant's Node ended before its removal")
			}
			n, isNode := ev.Object.(*corev1.Node)
			if !isNode {
				t.Fatalf("watch event %s: %v", ev.Type, ev.Object)
			}
			if _, leaked := n.Labels[testNodeLabel]; leaked || n.Labels["tenant"] != "wrote-this" || len(n.Status.Capacity) > 0 {
				t.Fatalf("the tenant's Node shows the host node: labels %v, capacity %v", n.Labels, n.Status.Capacity)
			}
			if ev.Type == watch.Deleted {
				return
			}
		case <-deadline:
			t.Fatal("the tenant's Node under podbridge's mark is still there after 30s")
		}
	}
}

// Deleting the host pod of a Deployment's pod on the host fails the virtual
// pod with the reason, records an event and removes it; the Deployment
// replaces it.
func TestHostPodDeletionReplacesDeploymentPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "nginx"}}},
			},
		},
	}
	if err := virtualClient.Create(ctx, deploy); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	waitDeploymentReady(t, deploy, 2)

	pods := &corev1.PodList{}
	if err := virtualClient.List(ctx, pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	victim := &pods.Items[0]
	final := watchFinalState(t, ns, victim.Name)
	host, err := getHostPod(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := hostClient.Delete(ctx, host); err != nil {
		t.Fatalf("deleting host pod: %v", err)
	}

	last := final(20 * time.Second)
	if last.Status.Phase != corev1.PodFailed || last.Status.Reason != translate.ReasonHostPodDeleted {
		t.Errorf("final virtual status phase=%s reason=%q, want Failed %s", last.Status.Phase, last.Status.Reason, translate.ReasonHostPodDeleted)
	}
	if isReady(last) {
		t.Errorf("final virtual status still Ready: %v", last.Status.Conditions)
	}
	waitEvent(t, victim, translate.ReasonHostPodDeleted)
	waitDeploymentReady(t, deploy, 2)
	if err := virtualClient.List(ctx, pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Name == victim.Name {
			t.Errorf("virtual pod %s still listed after its host pod's deletion", p.Name)
		}
	}
}

// A bare pod whose host pod is deleted or evicted on the host ends Failed
// with the host's reason and an event, and is removed, not re-created.
func TestHostDeletionEndsBarePod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cases := []struct {
		name   string
		remove func(context.Context, *corev1.Pod) error
		reason string
	}{
		{"deleted", func(ctx context.Context, host *corev1.Pod) error { return hostClient.Delete(ctx, host) }, translate.ReasonHostPodDeleted},
		{"evicted", func(ctx context.Context, host *corev1.Pod) error {
			return hostClient.SubResource("eviction").Create(ctx, host, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: host.Name, Namespace: host.Namespace}})
		}, translate.ReasonEvicted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(ns, "bare-"+tc.name)
			if err := virtualClient.Create(ctx, pod); err != nil {
				t.Fatalf("creating virtual pod: %v", err)
			}
			pod = waitRunningBound(t, pod)
			final := watchFinalState(t, ns, pod.Name)
			host, err := getHostPod(ctx, pod)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.remove(ctx, host); err != nil {
				t.Fatalf("removing host pod: %v", err)
			}

			last := final(20 * time.Second)
			if last.Status.Phase != corev1.PodFailed || last.Status.Reason != tc.reason {
				t.Errorf("final virtual status phase=%s reason=%q message=%q, want Failed %s", last.Status.Phase, last.Status.Reason, last.Status.Message, tc.reason)
			}
			waitEvent(t, pod, tc.reason)
			// Nothing re-creates the pod on either side: the tenant sees it end.
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
				t.Errorf("virtual pod after its removal: %v, want NotFound", err)
			}
			if _, err := getHostPod(ctx, pod); !apierrors.IsNotFound(err) {
				t.Errorf("host pod after the virtual pod's removal: %v, want NotFound", err)
			}
		})
	}
}

// A pod the host cannot schedule shows why on its virtual pod, which stays
// unbound; deleting it (the apiserver removes an unbound pod at once, with
// no graceful phase for the reflector to see) removes its host pod at once
// rather than through the orphan grace period.
func TestUnboundPodDeletionRemovesHostPodAtOnce(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "nowhere")
	pod.Spec.NodeSelector = map[string]string{"example.com/no-such-node": "true"}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	eventually(t, 30*time.Second, "virtual pod shows the host's Unschedulable", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable, fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
			}
		}
		return false, "no PodScheduled condition"
	})
	if pod.Spec.NodeName != "" {
		t.Fatalf("virtual pod bound to %s, want unbound", pod.Spec.NodeName)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatalf("reading host pod: %v", err)
	}

	deletes, orphans := actionCount(t, "delete_host"), actionCount(t, "orphan_delete")
	if err := virtualClient.Delete(ctx, pod); err != nil {
		t.Fatalf("deleting virtual pod: %v", err)
	}
	// The counter moves once the reflector has its answer, a moment after
	// the host pod shows its deletion.
	eventually(t, orphanGrace+20*time.Second, "host pod deleted by the reflector", func(ctx context.Context) (bool, string) {
		done, state := goneOrGoing(ctx, hostClient, host)
		counted := actionCount(t, "delete_host")
		return done && counted > deletes, fmt.Sprintf("%s; delete_host actions %v (before: %v)", state, counted, deletes)
	})
	if got := actionCount(t, "orphan_delete"); got != orphans {
		t.Errorf("orphan_delete actions %v, want %v: the host pod waited for the orphan grace period", got, orphans)
	}
}

// A host pod carrying this virtual cluster's marks whose virtual pod does
// not exist is deleted once it is older than the orphan grace period, and
// not before; another virtual cluster's pod is left alone.
func TestOrphanHostPodDeletedAfterGracePeriod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	before := actionCount(t, "orphan_delete")
	orphan := hostPodFor(env.Options.Translate.VCluster, ns, "orphan-"+ns)
	foreign := hostPodFor("other-vcluster", ns, "foreign-"+ns)
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), foreign, client.GracePeriodSeconds(0)) })

	start := time.Now()
	for _, p := range []*corev1.Pod{orphan, foreign} {
		if err := hostClient.Create(ctx, p); err != nil {
			t.Fatalf("creating host pod %s: %v", p.Name, err)
		}
	}
	var deletedAfter time.Duration
	eventually(t, orphanGrace+20*time.Second, "orphan host pod deleted", func(ctx context.Context) (bool, string) {
		done, state := goneOrGoing(ctx, hostClient, orphan)
		if done && deletedAfter == 0 {
			deletedAfter = time.Since(start)
		}
		// The counter moves once the reflector has its answer, a moment
		// after the pod shows its deletion.
		counted := actionCount(t, "orphan_delete")
		return done && counted > before, fmt.Sprintf("%s; orphan_delete actions %v (before: %v)", state, counted, before)
	})
	if deletedAfter < orphanGrace {
		t.Errorf("orphan host pod deleted %s after its creation, before the grace period of %s", deletedAfter, orphanGrace)
	}
	// Older than the grace period too, but not ours.
	if err := hostClient.Get(ctx, client.ObjectKeyFromObject(foreign), foreign); err != nil || foreign.DeletionTimestamp != nil {
		t.Errorf("another virtual cluster's host pod: err=%v deletionTimestamp=%v, want untouched", err, foreign.DeletionTimestamp)
	}
}

// The updates Kubernetes allows on a pod reach its host pod: in-place
// resize, images, activeDeadlineSeconds, tolerations, scheduling gates,
// node selection of a gated pod, labels and annotations. podbridge's own
// keys and keys the host added stay, whatever the tenant writes.
func TestVirtualPodUpdatesReachHostPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate
	updatesBefore := actionCount(t, "update_host")

	pod := simplePod(ns, "upd")
	pod.Labels = map[string]string{"app": "upd", "tier": "front", "drop": "me"}
	pod.Annotations = map[string]string{allowedAnnotation: "one", "gone": "soon", "k8s.v1.cni.cncf.io/networks": "underlay"}
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	// Gated, so the host scheduler waits and resize applies to a pod
	// without running containers (kwok reports no container resources).
	pod.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/hold"}}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	syncID := pod.Annotations[translate.AnnotationSyncID]

	// Something on the host labels and annotates the host pod; podbridge
	// must leave that alone.
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(host.DeepCopy())
	host.Labels["host.example/team"] = "infra"
	host.Annotations["host.example/ip"] = "10.0.0.1"
	if err := hostClient.Patch(ctx, host, patch, client.FieldOwner("host-controller")); err != nil {
		t.Fatalf("labelling host pod: %v", err)
	}

	// In-place resize.
	err = updateVirtualPod(ctx, pod, "resize", func(pod *corev1.Pod) {
		pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("150m")
	})
	if err != nil {
		t.Fatalf("resizing virtual pod: %v", err)
	}
	eventually(t, 20*time.Second, "host pod resized", func(ctx context.Context) (bool, string) {
		host, err := getHostPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		cpu := host.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]
		return cpu.Cmp(resource.MustParse("150m")) == 0, "cpu request " + cpu.String()
	})

	err = updateVirtualPod(ctx, pod, "", func(pod *corev1.Pod) {
		pod.Spec.Containers[0].Image = "nginx:1.27"
		pod.Spec.InitContainers[0].Image = "busybox:1.36"
		pod.Spec.ActiveDeadlineSeconds = ptr.To[int64](600)
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Key: "example.com/dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
		pod.Spec.SchedulingGates = nil
		pod.Spec.NodeSelector = map[string]string{"type": "kwok"}
		delete(pod.Labels, "drop")
		pod.Labels["tier"] = "back"
		pod.Labels["track"] = "canary"
		// The webhook refuses podbridge.io/ keys on update
		// (TestUpdatesCannotForgePodbridgeKeys); managed-by is the tenant's
		// on the virtual pod, podbridge's on the host pod.
		pod.Labels[translate.LabelManagedBy] = "Helm"
		delete(pod.Annotations, "gone")
		pod.Annotations[allowedAnnotation] = "two"
		pod.Annotations["fresh"] = "yes"
		pod.Annotations["cni.projectcalico.org/ipAddrs"] = `["10.0.0.9"]`
	})
	if err != nil {
		t.Fatalf("updating virtual pod: %v", err)
	}

	tk := translate.TenantKey
	wantLabels := map[string]string{
		tk("app"): "upd", tk("tier"): "back", tk("track"): "canary", tk(translate.LabelManagedBy): "Helm", "host.example/team": "infra",
		translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: cfg.VCluster, translate.LabelNamespace: ns,
	}
	wantAnnotations := map[string]string{
		allowedAnnotation: "two", "host.example/ip": "10.0.0.1",
		translate.AnnotationSyncID: syncID, translate.AnnotationName: "upd", translate.AnnotationNamespace: ns, translate.AnnotationVCluster: cfg.VCluster,
	}
	eventually(t, 20*time.Second, "host pod updated like the virtual pod", func(ctx context.Context) (bool, string) {
		host, err := getHostPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		var diffs []string
		for k, v := range wantLabels {
			if host.Labels[k] != v {
				diffs = append(diffs, fmt.Sprintf("label %s=%q want %q", k, host.Labels[k], v))
			}
		}
		for k, v := range wantAnnotations {
			if host.Annotations[k] != v {
				diffs = append(diffs, fmt.Sprintf("annotation %s=%q want %q", k, host.Annotations[k], v))
			}
		}
		if _, ok := host.Labels[tk("drop")]; ok {
			diffs = append(diffs, "label drop still set")
		}
		// Only the allow-listed tenant annotation reaches the host.
		for _, k := range []string{"gone", "fresh", "k8s.v1.cni.cncf.io/networks", "cni.projectcalico.org/ipAddrs"} {
			if _, ok := host.Annotations[k]; ok {
				diffs = append(diffs, "annotation "+k+" on the host")
			}
		}
		spec := host.Spec
		if spec.Containers[0].Image != "nginx:1.27" || spec.InitContainers[0].Image != "busybox:1.36" {
			diffs = append(diffs, fmt.Sprintf("images %s, %s", spec.InitContainers[0].Image, spec.Containers[0].Image))
		}
		if spec.ActiveDeadlineSeconds == nil || *spec.ActiveDeadlineSeconds != 600 {
			diffs = append(diffs, fmt.Sprintf("activeDeadlineSeconds %v", spec.ActiveDeadlineSeconds))
		}
		if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == "example.com/dedicated" }) {
			diffs = append(diffs, "toleration missing")
		}
		if len(spec.SchedulingGates) != 0 {
			diffs = append(diffs, fmt.Sprintf("gates %v", spec.SchedulingGates))
		}
		if spec.NodeSelector["type"] != "kwok" {
			diffs = append(diffs, fmt.Sprintf("nodeSelector %v", spec.NodeSelector))
		}
		return len(diffs) == 0, strings.Join(diffs, "; ")
	})
	// With its gate gone, the host schedules and runs the pod.
	waitRunningBound(t, pod)
	if got := actionCount(t, "update_host"); got < updatesBefore+2 {
		t.Errorf("update_host actions %v, want at least %v (the resize and the update)", got, updatesBefore+2)
	}
}

// A reflector restarted after changes it missed converges: a virtual pod
// deleted meanwhile goes on both sides, a host pod deleted meanwhile takes
// its virtual pod with it, labels changed meanwhile reach the host, a pod
// created meanwhile gets its status and node, and an orphan left meanwhile
// is deleted.
func TestRestartedReflectorConverges(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"deleted", "host-lost", "relabelled"} {
		pod := simplePod(ns, name)
		if err := virtualClient.Create(ctx, pod); err != nil {
			t.Fatalf("creating virtual pod: %v", err)
		}
		pods[name] = pod
	}
	for name, pod := range pods {
		pods[name] = waitRunningBound(t, pod)
	}
	hostLost, err := getHostPod(ctx, pods["host-lost"])
	if err != nil {
		t.Fatal(err)
	}

	if err := env.StopReflector(); err != nil {
		t.Fatalf("stopping the reflector: %v", err)
	}
	t.Cleanup(func() {
		if err := env.StartReflector(); err != nil {
			t.Errorf("starting the reflector: %v", err)
		}
	})

	if err := virtualClient.Delete(ctx, pods["deleted"]); err != nil {
		t.Fatal(err)
	}
	if err := hostClient.Delete(ctx, hostLost); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, hostLost, 20*time.Second)
	relabelled := pods["relabelled"]
	patch := client.MergeFrom(relabelled.DeepCopy())
	relabelled.Labels["phase"] = "two"
	if err := virtualClient.Patch(ctx, relabelled, patch); err != nil {
		t.Fatal(err)
	}
	late := simplePod(ns, "late")
	if err := virtualClient.Create(ctx, late); err != nil {
		t.Fatalf("creating virtual pod while the reflector is down: %v", err)
	}
	// The webhook created its host pod, which waits for its bound token.
	if host, err := getHostPod(ctx, late); err != nil || !translate.HeldForVirtualPod(host) {
		t.Fatalf("host pod of the late pod: err=%v, want it held by %s", err, translate.GateVirtualPod)
	}
	orphan := hostPodFor(env.Options.Translate.VCluster, ns, "orphan-"+ns)
	if err := hostClient.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	// Nothing reflected while the reflector was down.
	deleted := &corev1.Pod{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pods["deleted"]), deleted); err != nil || deleted.DeletionTimestamp == nil {
		t.Fatalf("deleted virtual pod while the reflector is down: err=%v, want it terminating", err)
	}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(late), late); err != nil || late.Spec.NodeName != "" {
		t.Fatalf("late virtual pod while the reflector is down: err=%v node=%q, want unbound", err, late.Spec.NodeName)
	}

	if err := env.StartReflector(); err != nil {
		t.Fatalf("starting the reflector: %v", err)
	}
	waitGone(t, virtualClient, deleted, 20*time.Second)
	if _, err := getHostPod(ctx, deleted); !apierrors.IsNotFound(err) {
		t.Errorf("host pod of the deleted virtual pod: %v, want NotFound", err)
	}
	waitGone(t, virtualClient, pods["host-lost"], 20*time.Second)
	eventually(t, 20*time.Second, "host pod relabelled", func(ctx context.Context) (bool, string) {
		host, err := getHostPod(ctx, relabelled)
		if err != nil {
			return false, err.Error()
		}
		return host.Labels[translate.TenantKey("phase")] == "two", fmt.Sprint(host.Labels)
	})
	waitRunningBound(t, late)
	eventually(t, orphanGrace+20*time.Second, "orphan host pod deleted", func(ctx context.Context) (bool, string) {
		return goneOrGoing(ctx, hostClient, orphan)
	})
}

// Binding and status reflection are visible to the tenant as a Scheduled
// event and to operators as metrics.
func TestBindingEventAndMetrics(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	binds, statuses, lags := actionCount(t, "bind"), actionCount(t, "status_update"), lagObservations(t)
	pod := simplePod(ns, "observed")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	pod = waitRunningBound(t, pod)
	if msg := waitEvent(t, pod, "Scheduled"); !strings.Contains(msg, pod.Spec.NodeName) || !strings.Contains(msg, ns+"/"+pod.Name) {
		t.Errorf("Scheduled event message %q does not name node %s and pod %s/%s", msg, pod.Spec.NodeName, ns, pod.Name)
	}
	if got := actionCount(t, "bind"); got < binds+1 {
		t.Errorf("bind actions %v, want at least %v", got, binds+1)
	}
	if got := actionCount(t, "status_update"); got < statuses+1 {
		t.Errorf("status_update actions %v, want at least %v", got, statuses+1)
	}
	if got := lagObservations(t); got < lags+1 {
		t.Errorf("reflection lag observations %d, want at least %d", got, lags+1)
	}
}

func waitDeploymentReady(t *testing.T, deploy *appsv1.Deployment, replicas int32) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("deployment %d/%d ready", replicas, replicas), func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(deploy), deploy); err != nil {
			return false, err.Error()
		}
		s := deploy.Status
		return s.ReadyReplicas == replicas && s.Replicas == replicas && s.UpdatedReplicas == replicas,
			fmt.Sprintf("ready=%d replicas=%d updated=%d", s.ReadyReplicas, s.Replicas, s.UpdatedReplicas)
	})
}

// An ephemeral container (kubectl debug) is checked like the pod was and
// reaches the host pod translated: its references read the host copies,
// its downward references the virtual values. One the security policy
// forbids is refused with a message naming it.
func TestEphemeralContainersReachHostPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "debug-settings", Namespace: ns}, Data: map[string]string{"k": "v"}}
	if err := virtualClient.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	pod := simplePod(ns, "debugged")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitReady(t, pod)

	addEphemeral := func(c corev1.EphemeralContainer) error {
		return updateVirtualPod(ctx, pod, "ephemeralcontainers", func(pod *corev1.Pod) {
			pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, c)
		})
	}
	privileged := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "root", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
	}}
	if err := addEphemeral(privileged); err == nil || !strings.Contains(err.Error(), "privileged") {
		t.Errorf("privileged ephemeral container: got %v, want refused naming privileged", err)
	}

	debug := corev1.EphemeralContainer{
		TargetContainerName: pod.Spec.Containers[0].Name,
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox", Env: []corev1.EnvVar{
			{Name: "SETTING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}, Key: "k"}}},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		}},
	}
	if err := addEphemeral(debug); err != nil {
		t.Fatalf("adding ephemeral container: %v", err)
	}
	var host *corev1.Pod
	eventually(t, 20*time.Second, "ephemeral container on the host pod", func(ctx context.Context) (bool, string) {
		var err error
		if host, err = getHostPod(ctx, pod); err != nil {
			return false, err.Error()
		}
		return len(host.Spec.EphemeralContainers) == 1, fmt.Sprintf("%d ephemeral containers", len(host.Spec.EphemeralContainers))
	})
	debugEnv := tenantEnv(host.Spec.EphemeralContainers[0].Env)
	if len(debugEnv) != 2 || debugEnv[0].ValueFrom == nil || debugEnv[1].ValueFrom == nil {
		t.Fatalf("ephemeral container's env ends %+v, want the tenant's two references", debugEnv)
	}
	if got, want := debugEnv[0].ValueFrom.ConfigMapKeyRef.Name, translate.HostName(cm.Name, ns, cfg.VCluster); got != want {
		t.Errorf("ephemeral container reads ConfigMap %q, want the host copy %q", got, want)
	}
	if got := resolveFieldRef(host, debugEnv[1].ValueFrom.FieldRef.FieldPath); got != pod.Name {
		t.Errorf("ephemeral container's metadata.name reads %q, want the virtual name %q", got, pod.Name)
	}
	eventually(t, 15*time.Second, "host copy of the ConfigMap the ephemeral container reads", func(ctx context.Context) (bool, string) {
		err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfg.HostNamespace, Name: debugEnv[0].ValueFrom.ConfigMapKeyRef.Name}, &corev1.ConfigMap{})
		return err == nil, fmt.Sprint(err)
	})
}

// The virtual pod's status is the host's for its own containers (init
// containers included), IPs and start time, while what the virtual cluster
// owns stays: its QoS class, and the readiness-gate condition a tenant
// controller sets, which the host cannot see and which decides readiness.
func TestStatusDetailsReachVirtualPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	const gate = corev1.PodConditionType("example.com/load-balancer-ready")
	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
	}
	pod := simplePod(ns, "gated-ready")
	pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gate}}
	pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox", Resources: resources}}
	pod.Spec.Containers[0].Resources = resources
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "sidecar", Image: "envoy", Resources: resources})
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating virtual pod: %v", err)
	}
	qos := pod.Status.QOSClass
	if qos != corev1.PodQOSGuaranteed {
		t.Fatalf("virtual apiserver computed QoS %q, want Guaranteed", qos)
	}
	eventually(t, 30*time.Second, "virtual pod Running with its containers ready", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		return pod.Status.Phase == corev1.PodRunning && conditionIs(pod, corev1.ContainersReady, corev1.ConditionTrue),
			fmt.Sprintf("phase=%s conditions %+v", pod.Status.Phase, pod.Status.Conditions)
	})
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Spec.ReadinessGates) != 0 {
		t.Errorf("host pod readiness gates %v: the host cannot set the tenant's conditions", host.Spec.ReadinessGates)
	}

	s := pod.Status
	if s.QOSClass != qos {
		t.Errorf("QoS class %q, want the virtual %q", s.QOSClass, qos)
	}
	if s.PodIP == "" || s.PodIP != host.Status.PodIP || s.HostIP != host.Status.HostIP || s.StartTime == nil || !s.StartTime.Equal(host.Status.StartTime) {
		t.Errorf("virtual podIP %q hostIP %q start %v; host %q %q %v", s.PodIP, s.HostIP, s.StartTime, host.Status.PodIP, host.Status.HostIP, host.Status.StartTime)
	}
	var names []string
	for _, c := range s.InitContainerStatuses {
		state := "not terminated"
		if c.State.Terminated != nil {
			state = c.State.Terminated.Reason
		}
		names = append(names, "init:"+c.Name+":"+state)
	}
	for _, c := range s.ContainerStatuses {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if want := []string{"app", "init:setup:Completed", "sidecar"}; !slices.Equal(names, want) {
		t.Errorf("container statuses %v, want %v", names, want)
	}
	if !conditionIs(pod, corev1.PodReady, corev1.ConditionFalse) {
		t.Errorf("with the gate unset, want Ready False: %+v", s.Conditions)
	}

	// A tenant controller opens the gate; the reflector keeps its condition
	// and the pod becomes Ready.
	err = updateVirtualPod(ctx, pod, "status", func(pod *corev1.Pod) {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: gate, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
	})
	if err != nil {
		t.Fatalf("setting the readiness gate: %v", err)
	}
	eventually(t, 30*time.Second, "virtual pod Ready once its gate is set", func(ctx context.Context) (bool, string) {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		return conditionIs(pod, corev1.PodReady, corev1.ConditionTrue) && conditionIs(pod, gate, corev1.ConditionTrue),
			fmt.Sprintf("conditions %+v", pod.Status.Conditions)
	})
}

func conditionIs(pod *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == typ {
			return c.Status == status
		}
	}
	return false
}
