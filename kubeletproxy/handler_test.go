package kubeletproxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

var testConfig = translate.Config{VCluster: "tenant-a", HostNamespace: "hostns", HostServiceAccount: "default"}

func virtualPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "uid-1", Annotations: map[string]string{translate.AnnotationSyncID: "sync-1"}},
		Spec: corev1.PodSpec{
			Containers:          []corev1.Container{{Name: "app"}},
			InitContainers:      []corev1.Container{{Name: "init"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger"}}, {EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "sidecar"}}},
		},
	}
}

// hostPod is the host pod podbridge made for virtualPod, plus a container
// the host added of its own ("sidecar", which the tenant also names as an
// ephemeral container of its virtual pod).
func hostPod(change func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: translate.HostName("web", "apps", "tenant-a"), Namespace: "hostns",
			Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "tenant-a"},
			Annotations: map[string]string{
				translate.AnnotationSyncID: "sync-1", translate.AnnotationName: "web", translate.AnnotationNamespace: "apps", translate.AnnotationVCluster: "tenant-a",
			},
		},
		Spec: corev1.PodSpec{
			Containers:          []corev1.Container{{Name: "app"}, {Name: "sidecar"}},
			InitContainers:      []corev1.Container{{Name: "init"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger"}}},
		},
	}
	p.ManagedFields = []metav1.ManagedFieldsEntry{ephemeralAddedBy(translate.FieldManagerReflector, "debugger")}
	if change != nil {
		change(p)
	}
	return p
}

// ephemeralAddedBy is the managed-fields entry of manager adding the
// ephemeral container name through pods/ephemeralcontainers.
func ephemeralAddedBy(manager, name string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", Subresource: "ephemeralcontainers",
		FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:ephemeralContainers":{"k:{\"name\":\"` + name + `\"}":{".":{},"f:image":{},"f:name":{}}}}}`),
	}
}

// resolve is the one place a request's path becomes a host pod: every
// path part is the caller's, so each attack names something it must not
// reach.
func TestResolveConfinesToTheStoredPodsHostPod(t *testing.T) {
	cases := []struct {
		name                           string
		namespace, pod, uid, container string
		host                           []client.Object
		virtual                        func(*corev1.Pod)
		wantPod                        string
		wantCode                       int32
	}{
		{name: "a container", namespace: "apps", pod: "web", container: "app", wantPod: translate.HostName("web", "apps", "tenant-a")},
		{name: "an init container", namespace: "apps", pod: "web", container: "init", wantPod: translate.HostName("web", "apps", "tenant-a")},
		{name: "an ephemeral container", namespace: "apps", pod: "web", container: "debugger", wantPod: translate.HostName("web", "apps", "tenant-a")},
		{name: "with the pod's UID", namespace: "apps", pod: "web", uid: "uid-1", container: "app", wantPod: translate.HostName("web", "apps", "tenant-a")},
		{name: "a container the virtual spec lacks", namespace: "apps", pod: "web", container: "istio-proxy", wantCode: http.StatusBadRequest},
		{name: "a host-only container named as an ephemeral one", namespace: "apps", pod: "web", container: "sidecar", wantCode: http.StatusBadRequest},
		{name: "path traversal in the namespace", namespace: "../hostns", pod: "web", container: "app", wantCode: http.StatusUnprocessableEntity},
		{name: "path traversal in the pod", namespace: "apps", pod: "../../hostns/pods/x", container: "app", wantCode: http.StatusUnprocessableEntity},
		{name: "a slash in the container", namespace: "apps", pod: "web", container: "app/../../x", wantCode: http.StatusUnprocessableEntity},
		{name: "the host pod's own name and namespace", namespace: "hostns", pod: translate.HostName("web", "apps", "tenant-a"), container: "app", wantCode: http.StatusNotFound},
		{name: "another UID", namespace: "apps", pod: "web", uid: "uid-2", container: "app", wantCode: http.StatusNotFound},
		{name: "a pod with no virtual pod", namespace: "apps", pod: "other", container: "app", wantCode: http.StatusNotFound},
		{name: "a host pod of another virtual cluster under the name", namespace: "apps", pod: "web", container: "app",
			host: []client.Object{hostPod(func(p *corev1.Pod) { p.Labels[translate.LabelVCluster] = "tenant-b" })}, wantCode: http.StatusNotFound},
		{name: "a host pod that is not podbridge's", namespace: "apps", pod: "web", container: "app",
			host: []client.Object{hostPod(func(p *corev1.Pod) { delete(p.Labels, translate.LabelManagedBy) })}, wantCode: http.StatusNotFound},
		{name: "a host pod of another sync ID (not this pod's)", namespace: "apps", pod: "web", container: "app",
			host: []client.Object{hostPod(func(p *corev1.Pod) { p.Annotations[translate.AnnotationSyncID] = "sync-2" })}, wantCode: http.StatusNotFound},
		{name: "an ephemeral container a host operator added under the tenant's name", namespace: "apps", pod: "web", container: "debugger",
			host: []client.Object{hostPod(func(p *corev1.Pod) {
				p.ManagedFields = []metav1.ManagedFieldsEntry{ephemeralAddedBy("kubectl-debug", "debugger")}
			})}, wantCode: http.StatusBadRequest},
		{name: "an ephemeral container whose adder is unknown", namespace: "apps", pod: "web", container: "debugger",
			host: []client.Object{hostPod(func(p *corev1.Pod) { p.ManagedFields = nil })}, wantCode: http.StatusBadRequest},
		{name: "an ephemeral container the reflector added beside the operator's", namespace: "apps", pod: "web", container: "debugger",
			host: []client.Object{hostPod(func(p *corev1.Pod) {
				p.ManagedFields = append(p.ManagedFields, ephemeralAddedBy("kubectl-debug", "operator"))
			})}, wantPod: translate.HostName("web", "apps", "tenant-a")},
		{name: "a virtual pod whose podbridge annotations name another pod", namespace: "apps", pod: "web", container: "app",
			virtual: func(p *corev1.Pod) {
				p.Annotations[translate.AnnotationSyncID] = "sync-db"
				p.Annotations[translate.AnnotationName], p.Annotations[translate.AnnotationNamespace] = "db", "data"
			},
			host: []client.Object{hostPod(nil), hostPod(func(p *corev1.Pod) {
				p.Name = translate.HostName("db", "data", "tenant-a")
				p.Annotations[translate.AnnotationSyncID], p.Annotations[translate.AnnotationName], p.Annotations[translate.AnnotationNamespace] = "sync-db", "db", "data"
			})}, wantCode: http.StatusNotFound},
		{name: "the host pod in another namespace", namespace: "apps", pod: "web", container: "app",
			host: []client.Object{hostPod(func(p *corev1.Pod) { p.Namespace = "elsewhere" })}, wantCode: http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == nil {
				host = []client.Object{hostPod(nil)}
			}
			virtual := virtualPod()
			if tc.virtual != nil {
				tc.virtual(virtual)
			}
			h := &Handler{
				Virtual: fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(virtual).Build(),
				Host:    hostPods(host),
				Config:  testConfig,
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.SetPathValue("namespace", tc.namespace)
			r.SetPathValue("pod", tc.pod)
			r.SetPathValue("uid", tc.uid)
			r.SetPathValue("container", tc.container)
			got, status := h.resolve(context.Background(), r, true)
			switch {
			case tc.wantCode != 0 && status == nil:
				t.Fatalf("reached host pod %s, want refusal %d", got.pod, tc.wantCode)
			case tc.wantCode != 0 && status.ErrStatus.Code != tc.wantCode:
				t.Fatalf("refused %d (%s), want %d", status.ErrStatus.Code, status.ErrStatus.Message, tc.wantCode)
			case tc.wantCode == 0 && status != nil:
				t.Fatalf("refused: %s", status.ErrStatus.Message)
			case tc.wantCode == 0 && (got.pod != tc.wantPod || got.container != tc.container):
				t.Fatalf("target %+v, want pod %s container %s", got, tc.wantPod, tc.container)
			}
		})
	}
}

// hostPods reads the given host pods as stored, managed fields included
// (the fake client drops those it is given).
type hostPods []client.Object

func (h hostPods) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	for _, o := range h {
		if client.ObjectKeyFromObject(o) == key {
			o.(*corev1.Pod).DeepCopyInto(obj.(*corev1.Pod))
			return nil
		}
	}
	return apierrors.NewNotFound(corev1.Resource("pods"), key.Name)
}

func (h hostPods) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("not listed")
}

func TestHostQuery(t *testing.T) {
	cases := []struct {
		name, subresource string
		in                url.Values
		want              url.Values
		wantErrs          int
	}{
		{"exec", "exec", url.Values{"input": {"1"}, "output": {"1"}, "error": {"1"}, "tty": {"1"}, "command": {"sh", "-c", "ls"}},
			url.Values{"stdin": {"true"}, "stdout": {"true"}, "stderr": {"true"}, "tty": {"true"}, "command": {"sh", "-c", "ls"}}, 0},
		{"exec without a command", "exec", url.Values{"output": {"1"}}, url.Values{"stdout": {"true"}}, 1},
		{"attach ignores a command", "attach", url.Values{"output": {"1"}, "command": {"rm"}}, url.Values{"stdout": {"true"}}, 0},
		{"a caller's container is not carried", "exec", url.Values{"command": {"ls"}, "container": {"host-only"}}, url.Values{"command": {"ls"}}, 0},
		{"port-forward", "portforward", url.Values{"port": {"80,8080"}}, url.Values{"ports": {"80", "8080"}}, 0},
		{"a port out of range", "portforward", url.Values{"port": {"70000"}}, url.Values{}, 1},
		{"a flag that is no boolean", "exec", url.Values{"command": {"ls"}, "tty": {"yes please"}}, url.Values{"command": {"ls"}}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := hostQuery(tc.subresource, tc.in)
			if len(errs) != tc.wantErrs {
				t.Errorf("errors %v, want %d", errs, tc.wantErrs)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("query %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLogOptions(t *testing.T) {
	opts, errs := logOptions(url.Values{"follow": {"true"}, "previous": {"true"}, "timestamps": {"true"}, "tailLines": {"10"}, "limitBytes": {"100"}, "sinceSeconds": {"5"}, "stream": {"Stderr"}})
	if len(errs) > 0 || !opts.Follow || !opts.Previous || !opts.Timestamps || *opts.TailLines != 10 || *opts.LimitBytes != 100 || *opts.SinceSeconds != 5 || *opts.Stream != "Stderr" {
		t.Errorf("got %+v, %v", opts, errs)
	}
	if _, errs := logOptions(url.Values{"tailLines": {"-1"}, "limitBytes": {"0"}, "sinceTime": {"yesterday"}, "stream": {"both"}}); len(errs) != 4 {
		t.Errorf("errors %v, want 4", errs)
	}
}
