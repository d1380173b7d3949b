package reflector

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

func TestDecideNode(t *testing.T) {
	const grace = 30 * time.Second
	host, virtual := &corev1.Node{}, &corev1.Node{}
	cases := []struct {
		name  string
		facts nodeFacts
		want  nodeDecision
	}{
		{name: "neither node", facts: nodeFacts{}, want: nodeDecision{}},
		{name: "host node gone: removed, pods or not", facts: nodeFacts{virtual: virtual, hostPods: true}, want: nodeDecision{action: nodeDelete}},
		{name: "a tenant node is shown from the start", facts: nodeFacts{host: host, tenantNode: true}, want: nodeDecision{action: nodeCreate}},
		{name: "a tenant node is kept fresh", facts: nodeFacts{host: host, virtual: virtual, tenantNode: true}, want: nodeDecision{action: nodeSync}},
		{name: "another node is shown while host pods are on it", facts: nodeFacts{host: host, hostPods: true}, want: nodeDecision{action: nodeCreate}},
		{name: "and kept fresh", facts: nodeFacts{host: host, virtual: virtual, hostPods: true}, want: nodeDecision{action: nodeSync}},
		{name: "another node without host pods is never shown", facts: nodeFacts{host: host}, want: nodeDecision{}},
		{name: "one shown before is left as it is for the grace period, not filled in",
			facts: nodeFacts{host: host, virtual: virtual, emptyFor: grace / 3}, want: nodeDecision{after: grace - grace/3}},
		{name: "then removed", facts: nodeFacts{host: host, virtual: virtual, emptyFor: grace}, want: nodeDecision{action: nodeDeleteUnused}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideNode(tc.facts, grace); got != tc.want {
				t.Errorf("decideNode = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNodeReconciler(t *testing.T) {
	const grace = 30 * time.Second
	cfg := translate.Config{VCluster: "vc", HostNamespace: "host", NodeSelector: map[string]string{"pool": "tenants"}}
	tenantNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"pool": "tenants"}}}
	platformNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"pool": "control-plane", "secret-zone": "x"}}}
	// A Node the tenant made under podbridge's mark, named like a host node.
	forged := func() *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue}}}
	}
	hostPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "host", Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "vc"}},
		Spec:       corev1.PodSpec{NodeName: "n1"},
	}

	type step struct {
		advance     time.Duration
		wantNode    bool
		wantLabel   string // a label the virtual node must carry
		noLabel     string // and one it must not
		wantRequeue bool
	}
	cases := []struct {
		name    string
		host    []client.Object
		virtual []client.Object
		steps   []step
	}{
		{
			name:  "a tenant node is shown with no pod on it",
			host:  []client.Object{tenantNode},
			steps: []step{{wantNode: true, wantLabel: "pool"}, {advance: 2 * grace, wantNode: true}},
		},
		{
			name:  "a platform node is not",
			host:  []client.Object{platformNode},
			steps: []step{{wantNode: false}},
		},
		{
			name:  "a platform node is shown while the virtual cluster's host pods are on it",
			host:  []client.Object{platformNode, hostPod},
			steps: []step{{wantNode: true, wantLabel: "secret-zone"}, {advance: 2 * grace, wantNode: true}},
		},
		{
			name:    "a forged node named like a platform node learns nothing, and goes",
			host:    []client.Object{platformNode},
			virtual: []client.Object{forged()},
			steps: []step{
				{wantNode: true, noLabel: "secret-zone", wantRequeue: true},
				{advance: grace, wantNode: false},
			},
		},
		{
			name:    "removed at once when the host node is gone, pods or not",
			host:    []client.Object{hostPod},
			virtual: []client.Object{translate.VirtualNode(tenantNode, translate.KubeletEndpoint{}, nil)},
			steps:   []step{{wantNode: false}},
		},
		{
			name:    "the tenant's own node is left alone",
			virtual: []client.Object{&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}},
			steps:   []step{{wantNode: true}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			host := fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(tc.host...).
				WithIndex(&corev1.Pod{}, indexNodeName, func(o client.Object) []string {
					if n := o.(*corev1.Pod).Spec.NodeName; n != "" {
						return []string{n}
					}
					return nil
				}).Build()
			virtual := fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(tc.virtual...).Build()
			clock := clocktesting.NewFakePassiveClock(time.Now())
			r := &nodeReconciler{
				Host:             host,
				HostReader:       host,
				Virtual:          virtual,
				Nodes:            &nodeGuard{},
				Config:           cfg,
				EmptyGracePeriod: grace,
				Clock:            clock,
			}
			for i, s := range tc.steps {
				clock.SetTime(clock.Now().Add(s.advance))
				res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: "n1"}})
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := res.RequeueAfter > 0; got != s.wantRequeue {
					t.Errorf("step %d: requeue after %s, want requeue %v", i, res.RequeueAfter, s.wantRequeue)
				}
				node := &corev1.Node{}
				err = virtual.Get(ctx, types.NamespacedName{Name: "n1"}, node)
				if got := err == nil; got != s.wantNode || (err != nil && !apierrors.IsNotFound(err)) {
					t.Fatalf("step %d: virtual node: %v, want present %v", i, err, s.wantNode)
				}
				if _, ok := node.Labels[s.wantLabel]; s.wantLabel != "" && !ok {
					t.Errorf("step %d: virtual node labels %v lack %q", i, node.Labels, s.wantLabel)
				}
				if _, ok := node.Labels[s.noLabel]; s.noLabel != "" && ok {
					t.Errorf("step %d: virtual node labels %v carry the host's %q", i, node.Labels, s.noLabel)
				}
			}
		})
	}
}
