package translate

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

var hostsConfig = Config{
	VCluster: "vc1", HostNamespace: "host-ns", HostServiceAccount: "workload",
	APIServerHost: "10.96.0.10", APIServerPort: 6443, ClusterDomain: "example.internal",
	HostsImage: "registry.example/podbridge-hosts:1",
}

func subdomainPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"},
		Spec: corev1.PodSpec{
			Hostname: "web-0", Subdomain: "db",
			InitContainers: []corev1.Container{{Name: "setup", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "app", Image: "nginx"}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// The injection: where it goes, what it names, and where it does not.
func TestHostsFileInjection(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		cfg  Config
		// mounted lists the host containers (init containers first) that
		// mount the file; nil: no injection at all.
		mounted []string
		fqdn    string
	}{
		{name: "subdomain", pod: subdomainPod(), cfg: hostsConfig, mounted: []string{"setup", "app"}, fqdn: "web-0.db.shop.svc.example.internal"},
		{name: "hostname from the pod's name", pod: subdomainPod(func(p *corev1.Pod) { p.Spec.Hostname = "" }), cfg: hostsConfig, mounted: []string{"setup", "app"}, fqdn: "web-0.db.shop.svc.example.internal"},
		{name: "no subdomain: the kubelet's file is a real cluster's", pod: subdomainPod(func(p *corev1.Pod) { p.Spec.Subdomain = "" }), cfg: hostsConfig},
		{name: "no image configured", pod: subdomainPod(), cfg: func() Config { c := hostsConfig; c.HostsImage = ""; return c }()},
		{name: "windows pod", pod: subdomainPod(func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }), cfg: hostsConfig},
		{
			name: "a container mounting its own /etc/hosts keeps it",
			pod: subdomainPod(func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "own", Image: "x", VolumeMounts: []corev1.VolumeMount{{Name: "mine", MountPath: "/etc//hosts/"}}})
			}),
			cfg: hostsConfig, mounted: []string{"setup", "app"}, fqdn: "web-0.db.shop.svc.example.internal",
		},
		{
			name: "every container mounts its own: nothing injected",
			pod: subdomainPod(func(p *corev1.Pod) {
				p.Spec.InitContainers = nil
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mine", MountPath: "/etc/hosts", SubPath: "h"}}
			}),
			cfg: hostsConfig,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, _, errs := HostPod(tc.pod, tc.cfg, "id")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			s := &host.Spec
			var mounted []string
			for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
				for _, c := range cs {
					for _, m := range c.VolumeMounts {
						if m.MountPath == "/etc/hosts" && m.Name == HostsVolumeName {
							mounted = append(mounted, c.Name)
						}
					}
				}
			}
			if !slices.Equal(mounted, tc.mounted) {
				t.Errorf("containers mounting the file: %v, want %v", mounted, tc.mounted)
			}
			inject := HostsFile(tc.pod, tc.cfg)
			hasInit := slices.ContainsFunc(s.InitContainers, func(c corev1.Container) bool { return c.Name == HostsContainerName })
			hasVolume := slices.ContainsFunc(s.Volumes, func(v corev1.Volume) bool { return v.Name == HostsVolumeName })
			if tc.mounted == nil {
				if inject != nil || hasInit || hasVolume {
					t.Fatalf("injected: %v, init container %v, volume %v", inject != nil, hasInit, hasVolume)
				}
				return
			}
			if inject == nil || s.InitContainers[0].Name != HostsContainerName || s.Volumes[len(s.Volumes)-1].Name != HostsVolumeName {
				t.Fatalf("want the init container first and the volume last: %+v %+v", s.InitContainers, s.Volumes)
			}
			c := s.InitContainers[0]
			if c.Image != tc.cfg.HostsImage || !slices.Contains(c.Args, "--fqdn="+tc.fqdn) || !slices.Contains(c.Args, "--hostname=web-0") {
				t.Errorf("init container %s %v, want image %s and fqdn %s", c.Image, c.Args, tc.cfg.HostsImage, tc.fqdn)
			}
		})
	}
}

// The injected container is hardened whatever the tenant's pod says: the
// pod's own security context, the platform's apiserver variables and
// envFrom of the tenant's containers never reach it.
func TestHostsFileContainerIsHardened(t *testing.T) {
	pod := subdomainPod(func(p *corev1.Pod) {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(false), RunAsGroup: ptr.To[int64](0)}
		p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}}
	})
	host, _, errs := HostPod(pod, hostsConfig, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c := host.Spec.InitContainers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no security context")
	case sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsGroup == nil || *sc.RunAsGroup == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("runs as root or may: %+v", sc)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation, sc.Privileged == nil || *sc.Privileged:
		t.Errorf("privilege: %+v", sc)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("writable root: %+v", sc)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities: %+v", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp: %+v", sc.SeccompProfile)
	}
	if len(c.Env) != 1 || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "status.podIPs" || len(c.EnvFrom) > 0 {
		t.Errorf("env: %+v %+v, want only the pod IPs", c.Env, c.EnvFrom)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != HostsVolumeName || c.VolumeMounts[0].MountPath == "/etc/hosts" {
		t.Errorf("mounts: %+v", c.VolumeMounts)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 || lim.Cmp(resource.MustParse("100Mi")) > 0 && r == corev1.ResourceMemory {
			t.Errorf("%s: request %s, limit %s", r, req.String(), lim.String())
		}
	}
	v := host.Spec.Volumes[len(host.Spec.Volumes)-1]
	if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.Medium != "" {
		t.Errorf("volume: %+v", v)
	}
}

// A hostile tenant's names: each refused naming its field.
func TestHostsFileReservedNamesRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		field  string
	}{
		{"init container named like podbridge's", func(p *corev1.Pod) { p.Spec.InitContainers[0].Name = HostsContainerName }, "spec.initContainers[0].name"},
		{"container named like podbridge's", func(p *corev1.Pod) { p.Spec.Containers[0].Name = HostsContainerName }, "spec.containers[0].name"},
		{"volume named like podbridge's", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: HostsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}, "spec.volumes[0].name"},
		{"a mount of podbridge's volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: HostsVolumeName, MountPath: "/steal"}}
		}, "spec.containers[0].volumeMounts[0].name"},
		{"an ephemeral container named like podbridge's", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: HostsContainerName, Image: "x"}}}
		}, "spec.ephemeralContainers[0].name"},
		{"an ephemeral container targeting podbridge's", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "x"}, TargetContainerName: HostsContainerName}}
		}, "spec.ephemeralContainers[0].targetContainerName"},
		{"an ephemeral container mounting podbridge's volume", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "x", VolumeMounts: []corev1.VolumeMount{{Name: HostsVolumeName, MountPath: "/x"}}}}}
		}, "spec.ephemeralContainers[0].volumeMounts[0].name"},
		{"a subdomain that adds lines to the file", func(p *corev1.Pod) { p.Spec.Subdomain = "db\n6.6.6.6 evil" }, "spec.subdomain"},
		{"a hostname that is not a label", func(p *corev1.Pod) { p.Spec.Hostname = "a.b" }, "spec.hostname"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cfg := range []Config{hostsConfig, func() Config { c := hostsConfig; c.HostsImage = ""; return c }()} {
				pod := subdomainPod(tc.mutate)
				_, _, errs := HostPod(pod, cfg, "id")
				if !slices.ContainsFunc(errs, func(e *field.Error) bool { return strings.HasPrefix(e.Error(), tc.field+":") }) {
					t.Errorf("image %q: errors %v, want one at %s", cfg.HostsImage, errs, tc.field)
				}
			}
		})
	}
	// The ephemeral containers' own path (pods/ephemeralcontainers) too.
	pod := subdomainPod(func(p *corev1.Pod) {
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: HostsContainerName, Image: "x"}}}
	})
	if _, errs := HostEphemeralContainers(pod, hostsConfig); len(errs) == 0 || errs[0].Field != "spec.ephemeralContainers[0].name" {
		t.Errorf("HostEphemeralContainers: %v", errs)
	}
}

// Updates and resizes find containers by name: a tenant's change of its
// first init container never reaches podbridge's, which is first on the
// host.
func TestHostsFileContainerUntouchedByUpdates(t *testing.T) {
	pod := subdomainPod(func(p *corev1.Pod) {
		p.Spec.InitContainers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	})
	host, _, errs := HostPod(pod, hostsConfig, "id")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	changed := pod.DeepCopy()
	changed.Spec.InitContainers[0].Image = "evil"
	changed.Spec.InitContainers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}
	updated, ok := HostPodUpdate(changed, host, hostsConfig, nil)
	if !ok || updated.Spec.InitContainers[0].Image != hostsConfig.HostsImage || updated.Spec.InitContainers[1].Image != "evil" {
		t.Errorf("update: %v %s %s", ok, updated.Spec.InitContainers[0].Image, updated.Spec.InitContainers[1].Image)
	}
	resized, ok := HostPodResize(changed, host)
	if !ok || !apiEqual(resized.Spec.InitContainers[0].Resources, host.Spec.InitContainers[0].Resources) {
		t.Errorf("resize reached podbridge's container: %v %+v", ok, resized.Spec.InitContainers[0].Resources)
	}
}

func apiEqual(a, b corev1.ResourceRequirements) bool {
	return a.Requests.Cpu().Cmp(*b.Requests.Cpu()) == 0 && a.Limits.Cpu().Cmp(*b.Limits.Cpu()) == 0 &&
		a.Requests.Memory().Cmp(*b.Requests.Memory()) == 0 && a.Limits.Memory().Cmp(*b.Limits.Memory()) == 0
}

// A tenant's pod-level resources bound the injected container's, which
// the host would refuse above them.
func TestHostsFileResourcesWithinPodLevel(t *testing.T) {
	pod := subdomainPod(func(p *corev1.Pod) {
		p.Spec.Resources = &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Mi")},
		}
	})
	c := HostsFile(pod, hostsConfig).Container
	for _, tc := range []struct {
		got  resource.Quantity
		want string
	}{
		{c.Resources.Requests[corev1.ResourceCPU], "5m"},
		{c.Resources.Limits[corev1.ResourceCPU], "100m"},
		{c.Resources.Requests[corev1.ResourceMemory], "8Mi"},
		{c.Resources.Limits[corev1.ResourceMemory], "8Mi"},
	} {
		if tc.got.Cmp(resource.MustParse(tc.want)) != 0 {
			t.Errorf("resources %+v, want %s where %s is", c.Resources, tc.want, tc.got.String())
		}
	}
	if plain := HostsFile(subdomainPod(), hostsConfig).Container.Resources; plain.Requests.Memory().Cmp(resource.MustParse("16Mi")) != 0 {
		t.Errorf("without pod-level resources: %+v", plain)
	}
}
