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

func TestNodeReconciler(t *testing.T) {
	const grace = 30 * time.Second
	hostNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}}
	ours := func() *corev1.Node { return translate.VirtualNode(hostNode, translate.KubeletEndpoint{}) }
	boundPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: "n1"}}

	type step struct {
		advance     time.Duration
		wantNode    bool
		wantRequeue bool
	}
	cases := []struct {
		name    string
		host    []client.Object
		virtual []client.Object
		steps   []step
	}{
		{
			name:    "kept while a pod is bound",
			host:    []client.Object{hostNode},
			virtual: []client.Object{ours(), boundPod},
			steps:   []step{{wantNode: true}, {advance: 2 * grace, wantNode: true}},
		},
		{
			name:    "removed once empty for the grace period",
			host:    []client.Object{hostNode},
			virtual: []client.Object{ours()},
			steps:   []step{{wantNode: true, wantRequeue: true}, {advance: grace / 2, wantNode: true, wantRequeue: true}, {advance: grace / 2, wantNode: false}},
		},
		{
			name:    "removed at once when the host node is gone, pods or not",
			virtual: []client.Object{ours(), boundPod},
			steps:   []step{{wantNode: false}},
		},
		{
			name:    "re-created when missing under a bound pod",
			host:    []client.Object{hostNode},
			virtual: []client.Object{boundPod},
			steps:   []step{{wantNode: true}},
		},
		{
			name:    "not created for nothing",
			host:    []client.Object{hostNode},
			virtual: []client.Object{},
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
			virtual := fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(tc.virtual...).
				WithIndex(&corev1.Pod{}, indexNodeName, func(o client.Object) []string {
					if n := o.(*corev1.Pod).Spec.NodeName; n != "" {
						return []string{n}
					}
					return nil
				}).Build()
			clock := clocktesting.NewFakePassiveClock(time.Now())
			r := &nodeReconciler{
				Host:             fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(tc.host...).Build(),
				Virtual:          virtual,
				VirtualReader:    virtual,
				Nodes:            &nodeGuard{},
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
				err = virtual.Get(ctx, types.NamespacedName{Name: "n1"}, &corev1.Node{})
				if got := err == nil; got != s.wantNode || (err != nil && !apierrors.IsNotFound(err)) {
					t.Errorf("step %d: virtual node: %v, want present %v", i, err, s.wantNode)
				}
			}
		})
	}
}
