package policy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

var testConfig = translate.Config{
	VCluster: "vc", HostNamespace: "host", HostServiceAccount: "workload",
	PriorityClasses: []string{"tenant-high"},
	RuntimeClasses:  []string{"gvisor"},
	CSIDrivers:      []string{"secrets-store.csi.k8s.io"},
	StorageClasses:  []string{"fast"},
}

func testGate(t testing.TB) Gate {
	t.Helper()
	sec, err := NewSecurityPolicy("baseline")
	if err != nil {
		t.Fatal(err)
	}
	return Gate{Security: sec, Config: testConfig}
}

func virtualPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}
}

func claim(mutate func(*corev1.PersistentVolumeClaimTemplate)) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		t := &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("fast")}}
		mutate(t)
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: t}}})
	}
}

// Each case is a virtual pod translated as the webhook does; the gate
// refuses it naming the virtual field (and the allowed values), or admits it.
func TestGate(t *testing.T) {
	gate := testGate(t)
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string // substrings of the errors; none: admitted
	}{
		{"plain", func(*corev1.Pod) {}, nil},
		{"privileged", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}, []string{"privileged", "PodSecurity"}},
		{"host PID", func(p *corev1.Pod) { p.Spec.HostPID = true }, []string{"spec.hostPID"}},
		{"allowed runtime class", func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("gvisor") }, nil},
		{"runtime class", func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("runc-privileged") }, []string{"spec.runtimeClassName", "runc-privileged", "allowed: gvisor"}},
		{"allowed CSI driver", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io"}}}}
		}, nil},
		{"CSI driver", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "hostpath.csi.k8s.io"}}}}
		}, []string{"spec.volumes[0].csi.driver", "hostpath.csi.k8s.io", "allowed: secrets-store.csi.k8s.io"}},
		{"allowed storage class", claim(func(*corev1.PersistentVolumeClaimTemplate) {}), nil},
		{"storage class", claim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.StorageClassName = ptr.To("slow") }),
			[]string{"spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName", "allowed: fast"}},
		{"default storage class", claim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.StorageClassName = nil }),
			[]string{"storageClassName", "--allow-default-storage-class"}},
		{"empty storage class", claim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.StorageClassName = ptr.To("") }), []string{"storageClassName"}},
		{"volume name", claim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.VolumeName = "pv-of-another" }), []string{"volumeClaimTemplate.spec.volumeName"}},
		{"selector", claim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.Selector = &metav1.LabelSelector{} }), []string{"volumeClaimTemplate.spec.selector"}},
		{"data source", claim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "db"}
		}), []string{"volumeClaimTemplate.spec.dataSource"}},
		{"data source ref to another namespace", claim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "db", Namespace: ptr.To("victim")}
		}), []string{"volumeClaimTemplate.spec.dataSourceRef"}},
		{"reserved claim label", claim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Labels = map[string]string{translate.LabelVCluster: "other"}
		}),
			[]string{"volumeClaimTemplate.metadata.labels[podbridge.io/vcluster]"}},
		{"beta storage class annotation", claim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Annotations = map[string]string{"volume.beta.kubernetes.io/storage-class": "slow"}
		}), []string{"volume.beta.kubernetes.io/storage-class"}},
		{"claim", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		}, []string{"spec.volumes[0].persistentVolumeClaim.claimName", `"data"`}},
		{"scheduler", func(p *corev1.Pod) { p.Spec.SchedulerName = "mine" }, []string{"spec.schedulerName"}},
		{"hostname override", func(p *corev1.Pod) { p.Spec.HostnameOverride = ptr.To("h") }, []string{"spec.hostnameOverride"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := virtualPod()
			tt.mutate(v)
			host, _, errs := translate.HostPod(v, testConfig, "sync")
			if len(errs) > 0 {
				t.Fatalf("translation refused: %v", errs)
			}
			got := gate.Check(v, host)
			if len(tt.want) == 0 {
				if len(got) > 0 {
					t.Fatalf("refused: %v", got.ToAggregate())
				}
				return
			}
			msg := got.ToAggregate().Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors do not name %q: %s", w, msg)
				}
			}
		})
	}
}

// A privileged ephemeral container, as kubectl debug --profile=sysadmin
// adds one, is refused on the way to the host pod, whatever admitted it
// in the virtual cluster.
func TestGateRefusesPrivilegedEphemeralContainer(t *testing.T) {
	gate := testGate(t)
	v := virtualPod()
	host, _, errs := translate.HostPod(v, testConfig, "sync")
	if len(errs) > 0 || len(gate.Check(v, host)) > 0 {
		t.Fatalf("plain pod refused: %v %v", errs, gate.Check(v, host))
	}
	v.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
	}}}
	ephemeral, errs := translate.HostEphemeralContainers(v, testConfig)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	updated := host.DeepCopy()
	updated.Spec.EphemeralContainers = ephemeral
	got := gate.Check(v, updated)
	if len(got) == 0 || got[0].Origin != OriginPodSecurity || !strings.Contains(got[0].Detail, "debugger") {
		t.Fatalf("privileged ephemeral container: %v", got)
	}
}

// Without a Pod Security level the gate lets nothing through.
func TestGateWithoutLevelRefuses(t *testing.T) {
	v := virtualPod()
	host, _, _ := translate.HostPod(v, testConfig, "sync")
	if errs := (Gate{Config: testConfig}).Check(v, host); len(errs) == 0 {
		t.Fatal("a gate without a level admitted a pod")
	}
}

// podbridge's own rules hold for a host pod changed behind its back.
func TestGateHostRules(t *testing.T) {
	gate := testGate(t)
	v := virtualPod()
	host, _, _ := translate.HostPod(v, testConfig, "sync")
	host.Spec.ServiceAccountName = "admin"
	host.Spec.AutomountServiceAccountToken = nil
	msg := gate.Check(v, host).ToAggregate().Error()
	for _, w := range []string{"spec.serviceAccountName", "spec.automountServiceAccountToken"} {
		if !strings.Contains(msg, w) {
			t.Errorf("errors do not name %s: %s", w, msg)
		}
	}
}
