package policy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

// The gate accepts exactly the hosts-file injection translation makes, and
// refuses each way a write could carry more: what a hostile tenant would
// want the injected container to do, or the tenant's own containers to
// reach.
func TestGateHostsFile(t *testing.T) {
	sec, err := NewSecurityPolicy("restricted")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig
	cfg.HostsImage = "registry.example/podbridge-hosts:1"
	gate := Gate{Security: sec, Config: cfg}
	restricted := &corev1.SecurityContext{
		RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	virtual := virtualPod()
	virtual.Spec.Subdomain = "db"
	virtual.Spec.Containers[0].SecurityContext = restricted
	host, _, errs := translate.HostPod(virtual, cfg, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// The restricted level too: the injected container meets it.
	if errs := gate.Check(virtual, host); len(errs) > 0 {
		t.Fatalf("the gate refused translation's own pod: %v", errs)
	}
	// What the host's admission adds to the stored pod, which the
	// reflector's writes carry: a LimitRange's default for a resource the
	// container does not set.
	stored := host.DeepCopy()
	stored.Spec.InitContainers[0].Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
	if errs := gate.Check(virtual, stored); len(errs) > 0 {
		t.Errorf("the gate refused the stored pod with a LimitRange's default: %v", errs)
	}
	// A pod-level resize after creation: the stored container keeps what
	// translation gave it then.
	resized := virtual.DeepCopy()
	resized.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Mi")}}
	if errs := gate.Check(resized, host); len(errs) > 0 {
		t.Errorf("the gate refused the pod after a pod-level resize: %v", errs)
	}
	for _, tc := range []struct {
		name  string
		edit  func(v, h *corev1.Pod)
		field string
	}{
		{"another image", func(_, h *corev1.Pod) { h.Spec.InitContainers[0].Image = "evil:1" }, "spec.initContainers[0]"},
		{"an added variable", func(_, h *corev1.Pod) {
			h.Spec.InitContainers[0].Env = append(h.Spec.InitContainers[0].Env, corev1.EnvVar{Name: "LD_PRELOAD", Value: "/x"})
		}, "spec.initContainers[0]"},
		{"envFrom a Secret", func(_, h *corev1.Pod) {
			h.Spec.InitContainers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}}
		}, "spec.initContainers[0]"},
		{"other args", func(_, h *corev1.Pod) { h.Spec.InitContainers[0].Args = []string{"--fqdn=evil"} }, "spec.initContainers[0]"},
		{"root", func(_, h *corev1.Pod) { h.Spec.InitContainers[0].SecurityContext.RunAsUser = ptr.To[int64](0) }, "spec.initContainers[0]"},
		{"not first", func(_, h *corev1.Pod) {
			c := corev1.Container{Name: "x", Image: "x", SecurityContext: restricted}
			h.Spec.InitContainers = append([]corev1.Container{c}, h.Spec.InitContainers...)
		}, "spec.initContainers[1]"},
		{"twice", func(_, h *corev1.Pod) {
			h.Spec.InitContainers = append(h.Spec.InitContainers, h.Spec.InitContainers[0])
		}, "spec.initContainers[1]"},
		{"missing", func(_, h *corev1.Pod) { h.Spec.InitContainers = h.Spec.InitContainers[1:] }, "spec.initContainers[0]"},
		{"a memory-backed volume", func(_, h *corev1.Pod) {
			h.Spec.Volumes[len(h.Spec.Volumes)-1].EmptyDir.Medium = corev1.StorageMediumMemory
		}, "spec.volumes[0]"},
		{"the volume mounted elsewhere", func(_, h *corev1.Pod) {
			h.Spec.Containers[0].VolumeMounts = append(h.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: translate.HostsVolumeName, MountPath: "/x"})
		}, "spec.containers[0].volumeMounts[1]"},
		{"the volume in an ephemeral container", func(_, h *corev1.Pod) {
			h.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "x", VolumeMounts: []corev1.VolumeMount{{Name: translate.HostsVolumeName, MountPath: "/x"}}}}}
		}, "spec.ephemeralContainers[0]"},
		{"injected where no subdomain asks for it", func(v, _ *corev1.Pod) { v.Spec.Subdomain = "" }, "spec.initContainers[0]"},
		{"a tenant container of the reserved name", func(v, _ *corev1.Pod) {
			v.Spec.Containers = append(v.Spec.Containers, corev1.Container{Name: translate.HostsContainerName, Image: "x"})
		}, "spec.containers[1].name"},
		{"a raised limit", func(_, h *corev1.Pod) {
			h.Spec.InitContainers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("4Gi")
		}, "spec.initContainers[0]"},
		{"a dropped limit", func(_, h *corev1.Pod) {
			delete(h.Spec.InitContainers[0].Resources.Limits, corev1.ResourceCPU)
		}, "spec.initContainers[0]"},
		{"a tenant volume of the reserved name", func(v, _ *corev1.Pod) {
			v.Spec.Volumes = []corev1.Volume{{Name: translate.HostsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}, "spec.volumes[0].name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, h := virtual.DeepCopy(), host.DeepCopy()
			tc.edit(v, h)
			errs := gate.Check(v, h)
			if !hasField(errs, tc.field) {
				t.Errorf("errors %v, want one at %s", errs, tc.field)
			}
		})
	}
}

func hasField(errs field.ErrorList, path string) bool {
	for _, e := range errs {
		if e.Field == path || strings.HasPrefix(e.Field, path+".") {
			return true
		}
	}
	return false
}
