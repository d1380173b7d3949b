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
	PriorityClasses:     []string{"tenant-high"},
	RuntimeClasses:      []string{"gvisor"},
	CSIDrivers:          []string{"secrets-store.csi.k8s.io"},
	StorageClasses:      []string{"fast"},
	CSIVolumeAttributes: map[string][]string{"secrets-store.csi.k8s.io": {"usePodIdentity"}},
	TolerationKeys:      []string{"example.com/gpu"},
	Tolerations:         []corev1.Toleration{{Key: "platform.example/tenants", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
}

func testGate(t testing.TB) Gate {
	t.Helper()
	sec, err := NewSecurityPolicy("baseline")
	if err != nil {
		t.Fatal(err)
	}
	return Gate{Security: sec, Config: testConfig, MaxTokensPerPod: 2}
}

func tolerate(tolerations ...corev1.Toleration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, tolerations...) }
}

func nodeAffinity(a *corev1.NodeAffinity) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Affinity = &corev1.Affinity{NodeAffinity: a} }
}

var nodeNamed = []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"control-plane-1"}}}

func tokens(audiences ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		src := &corev1.ProjectedVolumeSource{}
		for _, a := range audiences {
			src.Sources = append(src.Sources, corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t-" + a, Audience: a}})
		}
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "tokens", VolumeSource: corev1.VolumeSource{Projected: src}})
	}
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
		}, nil},
		{"scheduler", func(p *corev1.Pod) { p.Spec.SchedulerName = "mine" }, []string{"spec.schedulerName"}},
		{"CSI attribute allowed for the driver", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
				Driver: "secrets-store.csi.k8s.io", VolumeAttributes: map[string]string{"usePodIdentity": "false"}}}}}
		}, nil},
		{"CSI attribute naming another tenant's object", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
				Driver: "secrets-store.csi.k8s.io", VolumeAttributes: map[string]string{"secretProviderClass": "other-tenant-db"}}}}}
		}, []string{"spec.volumes[0].csi.volumeAttributes[secretProviderClass]", "--allowed-csi-volume-attributes", "allowed: usePodIdentity"}},
		{"the tolerations every pod gets", tolerate(
			corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		), nil},
		{"an allowed taint key", tolerate(corev1.Toleration{Key: "example.com/gpu", Operator: corev1.TolerationOpEqual, Value: "a100"}), nil},
		{"the platform's own toleration, written by the tenant too", tolerate(testConfig.Tolerations...), nil},
		{"every taint", tolerate(corev1.Toleration{Operator: corev1.TolerationOpExists}),
			[]string{"spec.tolerations[0].key", "every taint", "--allowed-toleration-keys"}},
		{"every NoExecute taint", tolerate(corev1.Toleration{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}),
			[]string{"spec.tolerations[0].key"}},
		{"the control plane's taint", tolerate(corev1.Toleration{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists}),
			[]string{"spec.tolerations[0].key", "node-role.kubernetes.io/control-plane", "allowed: node.kubernetes.io/not-ready, node.kubernetes.io/unreachable, example.com/gpu"}},
		{"a drained node", tolerate(corev1.Toleration{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists}),
			[]string{"spec.tolerations[0].key", corev1.TaintNodeUnschedulable}},
		{"another value of the platform's taint than the platform tolerates", tolerate(corev1.Toleration{Key: "platform.example/tenants", Operator: corev1.TolerationOpExists}),
			[]string{"spec.tolerations[0].key", "platform.example/tenants"}},
		{"a node by label", nodeAffinity(&corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "topology.kubernetes.io/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}), nil},
		{"a node by name, required", nodeAffinity(&corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{}, {MatchFields: nodeNamed}}}}),
			[]string{"spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[1].matchFields", "--allow-node-pinning"}},
		{"a node by name, preferred", nodeAffinity(&corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
			{Weight: 1, Preference: corev1.NodeSelectorTerm{MatchFields: nodeNamed}}}}),
			[]string{"spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchFields"}},
		{"tokens up to the cap", tokens("a", "b"), nil},
		{"tokens over the cap", tokens("a", "b", "c"), []string{"spec.volumes", "tokens: 3", "limit of 2", "--max-tokens-per-pod"}},
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

// A platform that allows pinning lets matchFields through; the token cap's
// refusal is marked so the webhook can count it against its flag.
func TestGatePinningAllowedAndTokenCapOrigin(t *testing.T) {
	gate := testGate(t)
	v := virtualPod()
	nodeAffinity(&corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: nodeNamed}}}})(v)
	tokens("a", "b", "c")(v)
	host, _, errs := translate.HostPod(v, testConfig, "sync")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := gate.Check(v, host)
	if len(got) != 2 {
		t.Fatalf("want the pinning and the token cap refused, got %v", got)
	}
	gate.Config.AllowNodePinning = true
	got = gate.Check(v, host)
	if len(got) != 1 || got[0].Origin != OriginTokenCap {
		t.Fatalf("with pinning allowed, want only the token cap (origin %q), got %v", OriginTokenCap, got)
	}
	gate.MaxTokensPerPod = 0
	if got := gate.Check(v, host); len(got) != 0 {
		t.Fatalf("with no cap and pinning allowed: %v", got)
	}
}
