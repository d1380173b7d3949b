package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/testwait"
	"github.com/podbridge/podbridge/translate"
)

// hostsImage is the integration environment's --hosts-image.
const hostsImage = "registry.example/podbridge-hosts:1"

// Through the real virtual apiserver and podbridge's webhook: a pod with a
// subdomain gets podbridge's hosts-file init container first on the host,
// the emptyDir and the mount; a pod without one gets nothing; the virtual
// pod stays as the tenant wrote it.
func TestHostsFileInjected(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	pod := simplePod(ns, "web-0")
	pod.Spec.Hostname, pod.Spec.Subdomain = "web-0", "db"
	pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox"}}
	host := createContained(t, pod)
	s := &host.Spec
	if len(s.InitContainers) != 2 || s.InitContainers[0].Name != translate.HostsContainerName || s.InitContainers[0].Image != hostsImage {
		t.Fatalf("host init containers: %+v", s.InitContainers)
	}
	want := "--fqdn=web-0.db." + ns + ".svc.cluster.local"
	if !strings.Contains(strings.Join(s.InitContainers[0].Args, " "), want) {
		t.Errorf("args %v, want %s", s.InitContainers[0].Args, want)
	}
	for _, c := range []corev1.Container{s.InitContainers[1], s.Containers[0]} {
		if n := len(c.VolumeMounts); n == 0 || c.VolumeMounts[n-1].MountPath != "/etc/hosts" || c.VolumeMounts[n-1].Name != translate.HostsVolumeName {
			t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
		}
	}
	stored := &corev1.Pod{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Spec.InitContainers) != 1 || len(stored.Spec.Volumes) != len(pod.Spec.Volumes) {
		t.Errorf("the virtual pod shows podbridge's additions: %+v %+v", stored.Spec.InitContainers, stored.Spec.Volumes)
	}
	// The reflector releases it: its write of the host pod as the host
	// stored it (defaults set) passes the gate.
	testwait.Until(t, 30*time.Second, "host pod released", func(ctx context.Context) (bool, string) {
		h, err := getHostPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		return !translate.HeldForVirtualPod(h), fmt.Sprint(h.Spec.SchedulingGates)
	})

	plain := createContained(t, simplePod(ns, "plain"))
	if len(plain.Spec.InitContainers) != 0 || slices.ContainsFunc(plain.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == translate.HostsVolumeName }) {
		t.Errorf("a pod without a subdomain got %+v %+v", plain.Spec.InitContainers, plain.Spec.Volumes)
	}
}

// A hostile tenant's ways at the injected container and volume, through
// the real virtual apiserver: each refused naming the field, nothing on
// the host. An ephemeral container of the reserved name, added later
// through pods/ephemeralcontainers, is refused too.
func TestHostsFileAttacks(t *testing.T) {
	ns := namespace(t)
	sub := func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "h", "db" }
	for i, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		field  string
	}{
		{"a container of the reserved name", func(p *corev1.Pod) { p.Spec.Containers[0].Name = translate.HostsContainerName }, "spec.containers[0].name"},
		{"an init container of the reserved name, first", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: translate.HostsContainerName, Image: "evil"}}
		}, "spec.initContainers[0].name"},
		{"a volume of the reserved name", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: translate.HostsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}, "spec.volumes[0].name"},
		{"a mount of podbridge's volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: translate.HostsVolumeName, MountPath: "/x"}}
		}, "spec.containers[0].volumeMounts[0].name"},
		{"a subdomain that writes lines", func(p *corev1.Pod) { p.Spec.Subdomain = "db\n10.0.0.1 kubernetes.default.svc" }, "spec.subdomain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(ns, fmt.Sprintf("attack-%d", i))
			sub(pod)
			tc.mutate(pod)
			createRefused(t, pod, tc.field)
		})
	}
	pod := simplePod(ns, "debugged")
	sub(pod)
	createContained(t, pod)
	err := updateVirtualPod(context.Background(), pod, "ephemeralcontainers", func(p *corev1.Pod) {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: translate.HostsContainerName, Image: "evil"},
		})
	})
	if err == nil || !strings.Contains(err.Error(), "spec.ephemeralContainers[0].name") {
		t.Errorf("ephemeral container of the reserved name: %v", err)
	}
}
