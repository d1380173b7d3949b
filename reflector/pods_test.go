package reflector

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// writeLog records the writes a reconciler makes, in order.
type writeLog struct{ writes []string }

func (l *writeLog) client(side string, objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(objs...).
		WithIndex(&corev1.Pod{}, indexHostPodVirtualKey, func(obj client.Object) []string {
			return []string{virtualKeyOf(obj.(*corev1.Pod)).String()}
		}).
		WithInterceptorFuncs(interceptor.Funcs{
			Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				o := &client.DeleteOptions{}
				o.ApplyOptions(opts)
				w := fmt.Sprintf("%s delete %s", side, obj.GetName())
				if o.GracePeriodSeconds != nil {
					w += fmt.Sprintf(" grace=%d", *o.GracePeriodSeconds)
				}
				if o.Preconditions != nil && o.Preconditions.UID != nil {
					w += " uid=" + string(*o.Preconditions.UID)
				}
				l.writes = append(l.writes, w)
				return c.Delete(ctx, obj, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				l.writes = append(l.writes, fmt.Sprintf("%s update %s", side, obj.GetName()))
				return c.Update(ctx, obj, opts...)
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				l.writes = append(l.writes, fmt.Sprintf("%s patch %s", side, obj.GetName()))
				return c.Patch(ctx, obj, patch, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				w := fmt.Sprintf("%s update %s/%s", side, obj.GetName(), sub)
				if pod, ok := obj.(*corev1.Pod); ok && sub == "status" {
					w += fmt.Sprintf(" phase=%s reason=%s", pod.Status.Phase, pod.Status.Reason)
				}
				l.writes = append(l.writes, w)
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
			SubResourceCreate: func(ctx context.Context, c client.Client, sub string, obj, subObj client.Object, opts ...client.SubResourceCreateOption) error {
				l.writes = append(l.writes, fmt.Sprintf("%s create %s/%s", side, obj.GetName(), sub))
				return c.SubResource(sub).Create(ctx, obj, subObj, opts...)
			},
		}).Build()
}

// keep lets the fake client store a pod that is being deleted, as the
// apiserver does: it refuses a deletionTimestamp without finalizers.
func keep(p *corev1.Pod) { p.Finalizers = []string{"test/keep"} }

// The reconciler, fed both clusters' state, makes exactly the writes each
// branch calls for, and no others.
func TestPodReconcilerWrites(t *testing.T) {
	tests := []struct {
		name    string
		key     types.NamespacedName
		virtual []client.Object
		host    []client.Object
		want    []string
	}{
		{
			name:    "virtual pod left at grace 0 by a cut-off removal is deleted again",
			virtual: []client.Object{virtualPod("a", deleting(time.Minute, 0), keep)},
			want:    []string{"virtual delete web grace=0 uid=virtual-uid"},
		},
		{
			name:    "virtual pod being removed right now is left to the apiserver",
			virtual: []client.Object{virtualPod("a", deleting(time.Second, 0), keep)},
		},
		{
			name: "host pod left at grace 0 by a cut-off removal is deleted again",
			host: []client.Object{hostPod("a", deleting(time.Minute, 0), keep)},
			want: []string{"host delete " + testHostName + " grace=0 uid=host-a"},
		},
		{
			name: "host pod under another name with a sync ID no virtual pod has is deleted",
			host: []client.Object{hostPod("stale", named("old-scheme-web"), aged(time.Minute))},
			want: []string{"host delete old-scheme-web uid=host-stale"},
		},
		{
			name:    "virtual deletion reaches the host pod with its grace period",
			virtual: []client.Object{virtualPod("a", deleting(0, 30), keep)},
			host:    []client.Object{hostPod("a")},
			want:    []string{"host delete " + testHostName + " grace=30 uid=host-a"},
		},
		{
			name:    "host pod gone on the host: final status, then the virtual pod is removed",
			virtual: []client.Object{virtualPod("a")},
			want:    []string{"virtual update web/status phase=Failed reason=" + translate.ReasonHostPodDeleted, "virtual delete web grace=0 uid=virtual-uid"},
		},
		{
			name:    "young virtual pod without a cached host pod: no write",
			virtual: []client.Object{virtualPod("a", aged(time.Second))},
		},
		{
			name: "young orphan: no write",
			host: []client.Object{hostPod("a", aged(5*time.Second))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &writeLog{}
			host, virtual := log.client("host", tt.host...), log.client("virtual", tt.virtual...)
			clock := clocktesting.NewFakePassiveClock(testNow)
			r := &podReconciler{
				Host: host, HostReader: host, Virtual: virtual, VirtualReader: virtual,
				Recorder:          events.NewFakeRecorder(10),
				Config:            translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"},
				OrphanGracePeriod: testGrace,
				Clock:             clock,
				Nodes:             &nodeGuard{},
				Gone:              newGonePods(testGrace, clock),
			}
			key := tt.key
			if key == (types.NamespacedName{}) {
				key = testKey
			}
			if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if !slices.Equal(log.writes, tt.want) {
				t.Errorf("writes:\n  %q\nwant:\n  %q", log.writes, tt.want)
			}
		})
	}
}

// A stray host pod is enqueued under the pair its annotations name, and
// one that names no virtual pod under its own name.
func TestVirtualKeyOf(t *testing.T) {
	if got := virtualKeyOf(hostPod("a", named("whatever"))); got != testKey {
		t.Errorf("annotated host pod: %v, want %v", got, testKey)
	}
	bare := hostPod("a")
	bare.Annotations = nil
	if got := virtualKeyOf(bare); got != (types.NamespacedName{Name: testHostName}) {
		t.Errorf("host pod naming no virtual pod: %v", got)
	}
}
