package translate

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/utils/ptr"
)

const (
	webhookManager   = FieldManagerWebhook
	reflectorManager = FieldManagerReflector
)

var updateManagers = []string{webhookManager, reflectorManager}

// updateConfig allows the tenant annotations "note" and "fresh" on the host.
var updateConfig = Config{VCluster: "vc", HostNamespace: "host-ns", HostServiceAccount: "workload", HostAnnotations: []string{"note", "fresh"}}

// tk is TenantKey, short for the tables.
var tk = TenantKey

// updateFixture is a virtual pod and the host pod the webhook created for
// it, with the managedFields the host apiserver recorded: the webhook owns
// every label, annotation and gate it set, "calico" an annotation of its own.
// The tenant's labels are under their host keys; of its annotations, only
// the allow-listed "note" is on the host.
func updateFixture() (virtual, host *corev1.Pod) {
	virtual = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "team",
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"note": "one", AnnotationSyncID: "id-1", AnnotationHostName: "web-x-team-x-vc"},
		},
		Spec: corev1.PodSpec{
			InitContainers:  []corev1.Container{{Name: "init", Image: "busybox:1"}},
			Containers:      []corev1.Container{{Name: "app", Image: "nginx:1"}, {Name: "side", Image: "envoy:1"}},
			Tolerations:     []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}},
			SchedulingGates: []corev1.PodSchedulingGate{{Name: "example.com/quota"}},
		},
	}
	host = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-x-team-x-vc", Namespace: "host-ns",
			Labels: map[string]string{
				tk("app"): "web", tk("tier"): "front",
				LabelManagedBy: ManagedByValue, LabelVCluster: "vc", LabelNamespace: "team",
			},
			Annotations: map[string]string{
				"note":             "one",
				AnnotationSyncID:   "id-1",
				AnnotationName:     "web",
				AnnotationVCluster: "vc",
				"cni.example/ip":   "10.0.0.1",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{
				managed(webhookManager, `{"f:metadata":{"f:labels":{".":{},"f:tenant.podbridge.io/app":{},"f:tenant.podbridge.io/tier":{},"f:app.kubernetes.io/managed-by":{},"f:podbridge.io/vcluster":{},"f:podbridge.io/namespace":{}},`+
					`"f:annotations":{".":{},"f:note":{},"f:podbridge.io/sync-id":{},"f:podbridge.io/name":{},"f:podbridge.io/vcluster":{}}},`+
					`"f:spec":{"f:schedulingGates":{".":{},"k:{\"name\":\"example.com/quota\"}":{".":{},"f:name":{}}}}}`),
				managed("calico", `{"f:metadata":{"f:annotations":{"f:cni.example/ip":{}}}}`),
			},
		},
		Spec: corev1.PodSpec{
			InitContainers:  []corev1.Container{{Name: "init", Image: "busybox:1"}},
			Containers:      []corev1.Container{{Name: "app", Image: "nginx:1"}, {Name: "side", Image: "envoy:1"}},
			Tolerations:     []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}},
			SchedulingGates: []corev1.PodSchedulingGate{{Name: "example.com/quota"}},
		},
	}
	return virtual, host
}

func managed(manager, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(fields)}
}

func TestHostPodUpdate(t *testing.T) {
	cases := []struct {
		name string
		// change turns the fixture into the case's input.
		change func(virtual, host *corev1.Pod)
		// want turns the fixture's host pod into the expected result; nil
		// means no change is reported.
		want func(host *corev1.Pod)
	}{
		{
			name:   "nothing changed",
			change: func(_, _ *corev1.Pod) {},
		},
		{
			name: "images of containers and init containers",
			change: func(v, _ *corev1.Pod) {
				v.Spec.Containers[1].Image = "envoy:2"
				v.Spec.InitContainers[0].Image = "busybox:2"
			},
			want: func(h *corev1.Pod) {
				h.Spec.Containers[1].Image = "envoy:2"
				h.Spec.InitContainers[0].Image = "busybox:2"
			},
		},
		{
			name:   "activeDeadlineSeconds set",
			change: func(v, _ *corev1.Pod) { v.Spec.ActiveDeadlineSeconds = ptr.To[int64](600) },
			want:   func(h *corev1.Pod) { h.Spec.ActiveDeadlineSeconds = ptr.To[int64](600) },
		},
		{
			name: "activeDeadlineSeconds lowered",
			change: func(v, h *corev1.Pod) {
				h.Spec.ActiveDeadlineSeconds = ptr.To[int64](600)
				v.Spec.ActiveDeadlineSeconds = ptr.To[int64](60)
			},
			want: func(h *corev1.Pod) { h.Spec.ActiveDeadlineSeconds = ptr.To[int64](60) },
		},
		{
			name: "toleration added and tolerationSeconds changed",
			change: func(v, _ *corev1.Pod) {
				v.Spec.Tolerations[0].TolerationSeconds = ptr.To[int64](30)
				v.Spec.Tolerations = append(v.Spec.Tolerations, corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule})
			},
			want: func(h *corev1.Pod) {
				h.Spec.Tolerations[0].TolerationSeconds = ptr.To[int64](30)
				h.Spec.Tolerations = append(h.Spec.Tolerations, corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule})
			},
		},
		{
			name:   "scheduling gate removed",
			change: func(v, _ *corev1.Pod) { v.Spec.SchedulingGates = nil },
			want:   func(h *corev1.Pod) { h.Spec.SchedulingGates = nil },
		},
		{
			name: "podbridge's gate stays when the tenant's goes",
			change: func(v, h *corev1.Pod) {
				v.UID = "0b7e-virtual"
				v.Spec.SchedulingGates = nil
				h.Spec.SchedulingGates = append(h.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: GateVirtualPod})
				h.ManagedFields[0] = managed(webhookManager, `{"f:spec":{"f:schedulingGates":{".":{},"k:{\"name\":\"example.com/quota\"}":{".":{},"f:name":{}},"k:{\"name\":\"podbridge.io/virtual-pod\"}":{".":{},"f:name":{}}}}}`)
			},
			want: func(h *corev1.Pod) {
				h.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: GateVirtualPod}}
			},
		},
		{
			name: "gate the host added stays when the tenant's goes",
			change: func(v, h *corev1.Pod) {
				v.Spec.SchedulingGates = nil
				h.Spec.SchedulingGates = append(h.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: "host.example/admission"})
			},
			want: func(h *corev1.Pod) {
				h.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "host.example/admission"}}
			},
		},
		{
			name: "gated pod: node selector added and node affinity set with the gate's removal",
			change: func(v, _ *corev1.Pod) {
				v.Spec.SchedulingGates = nil
				v.Spec.NodeSelector = map[string]string{"zone": "a"}
				v.Spec.Affinity = &corev1.Affinity{NodeAffinity: zoneAffinity()}
			},
			want: func(h *corev1.Pod) {
				h.Spec.SchedulingGates = nil
				h.Spec.NodeSelector = map[string]string{"zone": "a"}
				h.Spec.Affinity = &corev1.Affinity{NodeAffinity: zoneAffinity()}
			},
		},
		{
			name: "ungated pod: node selection is immutable",
			change: func(v, h *corev1.Pod) {
				v.Spec.SchedulingGates, h.Spec.SchedulingGates = nil, nil
				v.Spec.NodeSelector = map[string]string{"zone": "a"}
			},
		},
		{
			name: "tenant labels added, changed and removed",
			change: func(v, _ *corev1.Pod) {
				v.Labels = map[string]string{"app": "web2", "track": "canary"}
			},
			want: func(h *corev1.Pod) {
				h.Labels[tk("app")] = "web2"
				h.Labels[tk("track")] = "canary"
				delete(h.Labels, tk("tier"))
			},
		},
		{
			name: "label the host added stays",
			change: func(v, h *corev1.Pod) {
				h.Labels["host.example/team"] = "infra"
				v.Labels = map[string]string{"app": "web"}
			},
			want: func(h *corev1.Pod) {
				h.Labels["host.example/team"] = "infra"
				delete(h.Labels, tk("tier"))
			},
		},
		{
			name: "tenant cannot forge or drop podbridge's labels",
			change: func(v, _ *corev1.Pod) {
				v.Labels = map[string]string{"app": "web", "tier": "front", LabelVCluster: "other", LabelManagedBy: "Helm"}
			},
			want: func(h *corev1.Pod) {
				h.Labels[tk(LabelVCluster)] = "other"
				h.Labels[tk(LabelManagedBy)] = "Helm"
			},
		},
		{
			name: "labels podbridge copied verbatim before are replaced by their host keys",
			change: func(_, h *corev1.Pod) {
				h.Labels["app"] = "web"
				h.ManagedFields = append(h.ManagedFields, managed(webhookManager, `{"f:metadata":{"f:labels":{"f:app":{}}}}`))
			},
			want: func(h *corev1.Pod) { delete(h.Labels, "app") },
		},
		{
			name: "annotations outside the allow-list stay off the host; podbridge's verbatim copies go",
			change: func(v, h *corev1.Pod) {
				v.Annotations["k8s.v1.cni.cncf.io/networks"] = "host-net"
				v.Annotations["sidecar.istio.io/inject"] = "false"
				h.Annotations["cni.projectcalico.org/ipAddrs"] = `["10.0.0.9"]`
				h.ManagedFields = append(h.ManagedFields, managed(webhookManager, `{"f:metadata":{"f:annotations":{"f:cni.projectcalico.org/ipAddrs":{}}}}`))
			},
			want: func(h *corev1.Pod) { delete(h.Annotations, "cni.projectcalico.org/ipAddrs") },
		},
		{
			name: "annotations the downward API reads are carried under their host keys and follow",
			change: func(v, h *corev1.Pod) {
				v.Annotations["team"] = "b"
				v.Annotations["k8s.v1.cni.cncf.io/networks"] = "host-net"
				v.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Env: []corev1.EnvVar{
					{Name: "TEAM", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['team']"}}},
					{Name: "NET", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['k8s.v1.cni.cncf.io/networks']"}}},
				}}}}
				v.UID = "0b7e-virtual"
				h.Annotations[AnnotationUID] = "0b7e-virtual"
				h.Annotations[tk("team")] = "a"
				h.Annotations[tk("gone")] = "x"
				h.ManagedFields = append(h.ManagedFields, managed(reflectorManager, `{"f:metadata":{"f:annotations":{"f:tenant.podbridge.io/team":{},"f:tenant.podbridge.io/gone":{}}}}`))
			},
			want: func(h *corev1.Pod) {
				h.Annotations[tk("team")] = "b"
				h.Annotations[tk("k8s.v1.cni.cncf.io/networks")] = "host-net"
				delete(h.Annotations, tk("gone"))
			},
		},
		{
			name:   "tenant removing every label keeps podbridge's",
			change: func(v, _ *corev1.Pod) { v.Labels = nil },
			want: func(h *corev1.Pod) {
				delete(h.Labels, tk("app"))
				delete(h.Labels, tk("tier"))
			},
		},
		{
			name: "annotations: tenant's follow, reserved and the host's own stay",
			change: func(v, _ *corev1.Pod) {
				v.Annotations = map[string]string{"fresh": "yes", AnnotationSyncID: "id-1", AnnotationHostName: "web-x-team-x-vc"}
			},
			want: func(h *corev1.Pod) {
				delete(h.Annotations, "note")
				h.Annotations["fresh"] = "yes"
			},
		},
		{
			name: "key the reflector set earlier is removed too",
			change: func(_, h *corev1.Pod) {
				h.Labels[tk("track")] = "canary"
				h.ManagedFields = append(h.ManagedFields, managed(reflectorManager, `{"f:metadata":{"f:labels":{"f:tenant.podbridge.io/track":{}}}}`))
			},
			want: func(h *corev1.Pod) { delete(h.Labels, tk("track")) },
		},
		{
			name: "without podbridge's managedFields nothing is removed",
			change: func(v, h *corev1.Pod) {
				h.ManagedFields = nil
				v.Labels = map[string]string{"app": "web"}
				v.Spec.SchedulingGates = nil
			},
		},
		{
			name: "a file of the whole label map follows the labels",
			change: func(v, h *corev1.Pod) {
				v.Spec.Volumes = []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
					Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
				}}}}
				h.Annotations[AnnotationDownwardLabels] = "app=\"web\"\ntier=\"front\""
				v.Labels["tier"] = "back"
			},
			want: func(h *corev1.Pod) {
				h.Labels[tk("tier")] = "back"
				h.Annotations[AnnotationDownwardLabels] = "app=\"web\"\ntier=\"back\""
			},
		},
		{
			name: "status-subresource entries own no labels",
			change: func(v, h *corev1.Pod) {
				h.ManagedFields = []metav1.ManagedFieldsEntry{managed(webhookManager, `{"f:metadata":{"f:labels":{"f:tenant.podbridge.io/tier":{}}}}`)}
				h.ManagedFields[0].Subresource = "status"
				delete(v.Labels, "tier")
			},
		},
		{
			name: "unparsable managedFields own nothing",
			change: func(v, h *corev1.Pod) {
				h.ManagedFields = []metav1.ManagedFieldsEntry{managed(webhookManager, `{not json`)}
				delete(v.Labels, "tier")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			virtual, host := updateFixture()
			tc.change(virtual, host)
			input := host.DeepCopy()
			got, changed := HostPodUpdate(virtual, host, updateConfig, updateManagers)
			if !apiequality.Semantic.DeepEqual(host, input) {
				t.Fatalf("HostPodUpdate modified its input:\n%s", diff.Diff(input, host))
			}
			if tc.want == nil {
				if changed || got != host {
					t.Fatalf("HostPodUpdate reported a change:\n%s", diff.Diff(host, got))
				}
				return
			}
			want := host.DeepCopy()
			tc.want(want)
			if !changed {
				t.Fatalf("HostPodUpdate reported no change, want:\n%s", diff.Diff(host, want))
			}
			if !apiequality.Semantic.DeepEqual(got, want) {
				t.Errorf("HostPodUpdate mismatch (-want +got):\n%s", diff.Diff(want, got))
			}
			// Applying the result again is a no-op: the reflector converges.
			if _, again := HostPodUpdate(virtual, got, updateConfig, updateManagers); again {
				t.Errorf("HostPodUpdate is not idempotent")
			}
		})
	}
}

func zoneAffinity() *corev1.NodeAffinity {
	return &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
	}}
}

func TestReleaseHostPod(t *testing.T) {
	virtual, host := updateFixture()
	virtual.UID = "0b7e-virtual"
	if _, changed := ReleaseHostPod(virtual, host); changed {
		t.Error("a host pod without podbridge's gate was changed")
	}
	host.Spec.SchedulingGates = append(host.Spec.SchedulingGates, corev1.PodSchedulingGate{Name: GateVirtualPod})
	released, changed := ReleaseHostPod(virtual, host)
	if !changed || released.Annotations[AnnotationUID] != "0b7e-virtual" {
		t.Fatalf("released = %v, uid annotation %q", changed, released.Annotations[AnnotationUID])
	}
	if want := []corev1.PodSchedulingGate{{Name: "example.com/quota"}}; !apiequality.Semantic.DeepEqual(released.Spec.SchedulingGates, want) {
		t.Errorf("gates %v, want the tenant's only %v", released.Spec.SchedulingGates, want)
	}
	if len(host.Spec.SchedulingGates) != 2 {
		t.Error("ReleaseHostPod changed its input")
	}
	virtual.UID = ""
	if _, changed := ReleaseHostPod(virtual, host); changed {
		t.Error("released before the virtual pod has a UID")
	}
}

func TestHostPodResize(t *testing.T) {
	res := func(req, lim string) corev1.ResourceRequirements {
		r := corev1.ResourceRequirements{}
		if req != "" {
			r.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req)}
		}
		if lim != "" {
			r.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lim)}
		}
		return r
	}
	cases := []struct {
		name          string
		virtual, host corev1.ResourceRequirements
		// want is the host container's resources after the resize; nil
		// means no change is reported.
		want *corev1.ResourceRequirements
	}{
		{name: "unchanged", virtual: res("100m", "200m"), host: res("100m", "200m")},
		{name: "same quantity spelled differently", virtual: res("0.1", ""), host: res("100m", "")},
		{name: "request raised", virtual: res("150m", "200m"), host: res("100m", "200m"), want: ptr.To(res("150m", "200m"))},
		{name: "limit the host defaulted stays", virtual: res("150m", ""), host: res("100m", "1"), want: ptr.To(res("150m", "1"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			virtual, host := updateFixture()
			virtual.Spec.Containers[0].Resources = tc.virtual
			host.Spec.Containers[0].Resources = tc.host
			input := host.DeepCopy()
			got, changed := HostPodResize(virtual, host)
			if !apiequality.Semantic.DeepEqual(host, input) {
				t.Fatalf("HostPodResize modified its input")
			}
			if tc.want == nil {
				if changed {
					t.Fatalf("HostPodResize reported a change:\n%s", diff.Diff(host, got))
				}
				return
			}
			if !changed {
				t.Fatalf("HostPodResize reported no change")
			}
			want := host.DeepCopy()
			want.Spec.Containers[0].Resources = *tc.want
			if !apiequality.Semantic.DeepEqual(got, want) {
				t.Errorf("HostPodResize mismatch (-want +got):\n%s", diff.Diff(want, got))
			}
		})
	}

	t.Run("resize policy and pod-level resources", func(t *testing.T) {
		virtual, host := updateFixture()
		policy := []corev1.ContainerResizePolicy{{ResourceName: corev1.ResourceMemory, RestartPolicy: corev1.RestartContainer}}
		virtual.Spec.Containers[0].ResizePolicy = policy
		virtual.Spec.Resources = ptr.To(res("2", ""))
		got, changed := HostPodResize(virtual, host)
		if !changed {
			t.Fatal("HostPodResize reported no change")
		}
		if !apiequality.Semantic.DeepEqual(got.Spec.Containers[0].ResizePolicy, policy) {
			t.Errorf("resize policy %v, want %v", got.Spec.Containers[0].ResizePolicy, policy)
		}
		if got.Spec.Resources == nil || !apiequality.Semantic.DeepEqual(*got.Spec.Resources, res("2", "")) {
			t.Errorf("pod-level resources %v, want cpu request 2", got.Spec.Resources)
		}
	})
}

// The cut-down fieldsV1 tree still owns the same label, annotation and
// scheduling-gate keys, and nothing else is kept.
func TestOwnedKeysFields(t *testing.T) {
	full := `{"f:metadata":{"f:labels":{".":{},"f:app":{}},"f:annotations":{"f:note":{}},"f:generateName":{}},` +
		`"f:spec":{"f:schedulingGates":{"k:{\"name\":\"example.com/quota\"}":{".":{},"f:name":{}}},"f:containers":{"k:{\"name\":\"c\"}":{"f:image":{}}}}}`
	entry := func(raw string) []metav1.ManagedFieldsEntry {
		return []metav1.ManagedFieldsEntry{managed(webhookManager, raw)}
	}
	want := ownedByManagers(entry(full), updateManagers)
	cut := string(OwnedKeysFields([]byte(full)))
	if got := ownedByManagers(entry(cut), updateManagers); !reflect.DeepEqual(got, want) {
		t.Errorf("owned keys after the cut %+v, want %+v", got, want)
	}
	if !want.labels["app"] || !want.annotations["note"] || !want.gates["example.com/quota"] {
		t.Fatalf("fixture owns %+v", want)
	}
	for _, gone := range []string{"f:generateName", "f:containers"} {
		if strings.Contains(cut, gone) {
			t.Errorf("cut tree keeps %s: %s", gone, cut)
		}
	}
	for tree, want := range map[string]string{
		"{not json":                              "{not json",
		`{"f:spec":{"f:containers":{}}}`:         "{}",
		`{"f:metadata":"not a set"}`:             `{"f:metadata":"not a set"}`,
		`{"f:metadata":{"f:labels":{"f:a":{}}}}`: `{"f:metadata":{"f:labels":{"f:a":{}}}}`,
	} {
		if got := string(OwnedKeysFields([]byte(tree))); got != want {
			t.Errorf("tree %s cut to %s, want %s", tree, got, want)
		}
	}
}

// BenchmarkOwnedKeysFields cuts a host pod's create entry as the webhook
// writes it for the bench's pod: the reflector's cache does it once per
// host pod (and for every pod at its start).
func BenchmarkOwnedKeysFields(b *testing.B) {
	tree := []byte(`{"f:metadata":{"f:annotations":{".":{},"f:podbridge.io/admission-uid":{},"f:podbridge.io/admitted-spec":{},"f:podbridge.io/name":{},"f:podbridge.io/namespace":{},"f:podbridge.io/service-account":{},"f:podbridge.io/sync-id":{},"f:podbridge.io/vcluster":{}},"f:labels":{".":{},"f:app.kubernetes.io/managed-by":{},"f:bench.podbridge.io.tenant.podbridge.io/series":{},"f:podbridge.io/namespace":{},"f:podbridge.io/vcluster":{},"f:tenant.podbridge.io/app":{}}},"f:spec":{"f:automountServiceAccountToken":{},"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{".":{},"k:{\"name\":\"KUBERNETES_PORT\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"KUBERNETES_PORT_443_TCP\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"KUBERNETES_PORT_443_TCP_ADDR\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"KUBERNETES_PORT_443_TCP_PORT\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"KUBERNETES_PORT_443_TCP_PROTO\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"KUBERNETES_SERVICE_HOST\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"KUBERNETES_SERVICE_PORT\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"KUBERNETES_SERVICE_PORT_HTTPS\"}":{".":{},"f:name":{},"f:value":{}}},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},"f:volumeMounts":{".":{},"k:{\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"}":{".":{},"f:mountPath":{},"f:name":{},"f:readOnly":{}}}}},"f:dnsConfig":{".":{},"f:nameservers":{},"f:options":{},"f:searches":{}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:hostname":{},"f:restartPolicy":{},"f:schedulerName":{},"f:schedulingGates":{".":{},"k:{\"name\":\"podbridge.io/virtual-pod\"}":{".":{},"f:name":{}}},"f:securityContext":{},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{},"f:volumes":{".":{},"k:{\"name\":\"kube-api-access-vlb79\"}":{".":{},"f:name":{},"f:projected":{".":{},"f:defaultMode":{},"f:sources":{}}}}}}`)
	if !json.Valid(tree) {
		b.Fatal("the tree is not JSON")
	}
	for b.Loop() {
		OwnedKeysFields(tree)
	}
}
