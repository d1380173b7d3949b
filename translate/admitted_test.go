package translate

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

func admittedPod() *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
		Containers: []corev1.Container{{
			Name: "app", Image: "nginx:1", Command: []string{"nginx"},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		}},
		Volumes:         []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		SchedulingGates: []corev1.PodSchedulingGate{{Name: "example.com/quota"}},
		NodeSelector:    map[string]string{"zone": "a"},
	}}
}

// Changes Kubernetes allows after creation are carried as updates and must
// not count; anything fixed at creation must.
func TestAdmittedSpecOf(t *testing.T) {
	base := AdmittedSpecOf(admittedPod())
	tests := []struct {
		name   string
		change func(*corev1.Pod)
		same   bool
		diff   string
	}{
		{name: "image", change: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:2"; p.Spec.InitContainers[0].Image = "alpine" }, same: true},
		{name: "resize", change: func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("1")
			p.Spec.Containers[0].ResizePolicy = []corev1.ContainerResizePolicy{{ResourceName: corev1.ResourceCPU, RestartPolicy: corev1.NotRequired}}
			p.Spec.Resources = &corev1.ResourceRequirements{}
		}, same: true},
		{name: "deadline, tolerations, gates removed", change: func(p *corev1.Pod) {
			p.Spec.ActiveDeadlineSeconds = ptr.To[int64](30)
			p.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
			p.Spec.SchedulingGates = nil
		}, same: true},
		{name: "node selection narrowed while gated", change: func(p *corev1.Pod) {
			p.Spec.NodeSelector["rack"] = "1"
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
		}, same: true},
		{name: "bound, ephemeral container added", change: func(p *corev1.Pod) {
			p.Spec.NodeName = "node-1"
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug"}}}
		}, same: true},
		{name: "sidecar added", change: func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "envoy"})
		}, diff: "containers added: sidecar"},
		{name: "init container and volume added", change: func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "mesh-init"})
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "certs"})
		}, diff: "init containers added: mesh-init; volumes added: certs"},
		{name: "container removed", change: func(p *corev1.Pod) { p.Spec.InitContainers = nil }, diff: "init containers removed: init"},
		{name: "command changed", change: func(p *corev1.Pod) { p.Spec.Containers[0].Command = []string{"sh"} }, diff: "spec fields fixed at creation changed"},
		{name: "host network", change: func(p *corev1.Pod) { p.Spec.HostNetwork = true }, diff: "spec fields fixed at creation changed"},
		{name: "pod affinity", change: func(p *corev1.Pod) { p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{}} }, diff: "spec fields fixed at creation changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := admittedPod()
			tt.change(pod)
			got := AdmittedSpecOf(pod)
			if same := got.Hash == base.Hash; same != tt.same {
				t.Errorf("same fingerprint = %v, want %v", same, tt.same)
			}
			if d := SpecDifference(base, got); d != tt.diff {
				t.Errorf("difference %q, want %q", d, tt.diff)
			}
		})
	}
	if pod := admittedPod(); AdmittedSpecOf(pod).Hash != base.Hash || !reflect.DeepEqual(pod, admittedPod()) {
		t.Error("fingerprint not stable, or it changed its input")
	}
}

func TestAdmittedSpecAnnotation(t *testing.T) {
	a := AdmittedSpecOf(admittedPod())
	got, ok := ParseAdmittedSpec(a.String())
	if !ok || !reflect.DeepEqual(got, a) {
		t.Errorf("round trip of %q = %+v, %v; want %+v", a.String(), got, ok, a)
	}
	empty := AdmittedSpecOf(&corev1.Pod{})
	if got, ok := ParseAdmittedSpec(empty.String()); !ok || !reflect.DeepEqual(got, empty) {
		t.Errorf("round trip of %q = %+v, %v; want %+v", empty.String(), got, ok, empty)
	}
	// Absent, another version's or unreadable: not compared.
	for _, v := range []string{"", "v2:abc;c=;i=;v=", "v1:", "v1:abc", "v1:abc;c=a;i=;x=", "v1:abc;c=a;i=;v=;extra"} {
		if _, ok := ParseAdmittedSpec(v); ok {
			t.Errorf("ParseAdmittedSpec(%q) accepted", v)
		}
	}
}

// The translation carries the fingerprint of the pod it translated,
// whatever annotation the tenant sent, and gates every host pod.
func TestHostPodAdmittedSpec(t *testing.T) {
	pod := admittedPod()
	pod.Name, pod.Namespace = "web", "default"
	host, _, errs := HostPod(pod, Config{VCluster: "vc", HostNamespace: "host"}, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got, want := host.Annotations[AnnotationAdmittedSpec], AdmittedSpecOf(pod).String(); got != want {
		t.Errorf("annotation %q, want %q", got, want)
	}
	if !HeldForVirtualPod(host) {
		t.Errorf("host pod not held by %s: %v", GateVirtualPod, host.Spec.SchedulingGates)
	}
	pod.Annotations = map[string]string{AnnotationAdmittedSpec: "v1:forged;c=;i=;v="}
	if _, _, errs := HostPod(pod, Config{VCluster: "vc", HostNamespace: "host"}, "id"); len(errs) == 0 {
		t.Error("a tenant's admitted-spec annotation was accepted")
	}
}
