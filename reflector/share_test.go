package reflector

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/internal/kube"
)

// decodedPods decodes the variants distinctPods makes of file.
func decodedPods(t testing.TB, file string, n int) []*corev1.Pod {
	t.Helper()
	decoder := serializer.NewCodecFactory(kube.Scheme).UniversalDeserializer()
	var pods []*corev1.Pod
	for _, raw := range distinctPods(t, file, n) {
		obj, _, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, obj.(*corev1.Pod))
	}
	return pods
}

// Pods of one template point at one copy of the parts they repeat, and
// each still reads exactly what it was decoded with.
func TestSharedPartsAreOneCopyAndChangeNothing(t *testing.T) {
	for _, file := range []string{"testdata/cached-host-pod.yaml", "testdata/cached-virtual-pod.yaml"} {
		t.Run(file, func(t *testing.T) {
			m := newPartMemory(maxSharedParts)
			pods := decodedPods(t, file, 3)
			for _, p := range pods {
				// As a ReplicaSet's pods name it, each pod its own copy.
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", UID: "6b1e", Controller: ptr.To(true)}}
				want := p.DeepCopy()
				m.sharePod(p)
				if !apiequality.Semantic.DeepEqual(p, want) {
					t.Fatalf("sharing changed pod %s", p.Name)
				}
			}
			a, b := pods[1], pods[2]
			same := func(what string, x, y any) {
				t.Helper()
				if fmt.Sprintf("%p", x) != fmt.Sprintf("%p", y) {
					t.Errorf("%s: two copies", what)
				}
			}
			same("labels", a.Labels, b.Labels)
			same("ownerReferences", a.OwnerReferences, b.OwnerReferences)
			same("tolerations", a.Spec.Tolerations, b.Spec.Tolerations)
			for i := range a.Spec.Containers {
				if len(a.Spec.Containers[i].Env) > 0 {
					same("env", a.Spec.Containers[i].Env, b.Spec.Containers[i].Env)
				}
			}
			if a.Spec.DNSConfig != nil {
				same("dnsConfig", a.Spec.DNSConfig, b.Spec.DNSConfig)
			}
			projections := 0
			for i, v := range a.Spec.Volumes {
				if v.Projected == nil {
					continue
				}
				for j, s := range v.Projected.Sources {
					other := b.Spec.Volumes[i].Projected.Sources[j]
					switch {
					case s.ConfigMap != nil:
						same("configMap projection", s.ConfigMap, other.ConfigMap)
						projections++
					case s.DownwardAPI != nil:
						same("downwardAPI projection", s.DownwardAPI, other.DownwardAPI)
						projections++
					case s.Secret != nil && s.Secret == other.Secret:
						t.Error("each pod's token Secret projection is shared")
					}
				}
			}
			if projections == 0 {
				t.Fatal("the pod in testdata has no projected ConfigMap or downward API: the test checks nothing there")
			}
		})
	}
}

// Only equal parts are shared: a pod whose labels, environment or
// tolerations differ in one value keeps its own.
func TestSharedPartsOnlyWhenEqual(t *testing.T) {
	m := newPartMemory(maxSharedParts)
	pods := decodedPods(t, "testdata/cached-host-pod.yaml", 2)
	a, b := pods[0], pods[1]
	b.Labels["tenant.podbridge.io/app"] = "other"
	b.Spec.Containers[0].Env[0].Value = "10.0.0.3"
	b.Spec.Tolerations[0].TolerationSeconds = nil
	want := b.DeepCopy()
	m.sharePod(a)
	m.sharePod(b)
	if a.Labels["tenant.podbridge.io/app"] == "other" || a.Spec.Containers[0].Env[0].Value == "10.0.0.3" || a.Spec.Tolerations[0].TolerationSeconds == nil {
		t.Error("a pod reads another pod's different part")
	}
	if !apiequality.Semantic.DeepEqual(b, want) {
		t.Error("a pod with parts of its own reads another pod's")
	}
	// Two kinds with the same encoding are two parts: node selector and
	// labels, both {app: web}.
	e := &partEncoder{m: m}
	labels := shareMap(e, "labels", map[string]string{"app": "web"})
	selector := shareMap(e, "nodeSelector", map[string]string{"app": "web"})
	if fmt.Sprintf("%p", labels) == fmt.Sprintf("%p", selector) {
		t.Error("labels and a node selector share one map")
	}
}

// The memory stays bounded whatever the pods hold, and a part too large to
// be worth remembering is not held beyond its pod.
func TestSharedPartsStayBounded(t *testing.T) {
	const limit = 16
	m := newPartMemory(limit)
	e := &partEncoder{m: m}
	for i := range 10 * limit {
		shareMap(e, "labels", map[string]string{"statefulset.kubernetes.io/pod-name": fmt.Sprintf("web-%d", i)})
	}
	if n := m.parts.len(); n > 2*limit {
		t.Errorf("%d parts remembered, bound is %d", n, 2*limit)
	}
	huge := []corev1.EnvVar{{Name: "BIG", Value: strings.Repeat("x", maxSharedPartBytes)}}
	before := m.parts.len()
	if got := shareSlice(e, "env", huge); &got[0] != &huge[0] {
		t.Error("a huge environment was replaced")
	}
	if m.parts.len() != before {
		t.Error("a huge environment was remembered")
	}
}
