package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// generatedPods is how many random pods TestTranslatedPodsPassHostValidation
// tries: enough to cover every choice of the generator many times over, in
// a few seconds of dry-run requests.
const generatedPods = 400

// Every pod the virtual apiserver accepts, podbridge either refuses
// (naming the field) or translates into a host pod the host apiserver
// accepts too: the webhook creates host pods before the virtual apiserver
// validates, so a translation the host refuses would show the tenant a
// host error for a valid pod. Random pods, seeded, are validated by a
// virtual apiserver without podbridge (dry run), translated with every
// translation option on, and created on the host (dry run).
func TestTranslatedPodsPassHostValidation(t *testing.T) {
	ctx := context.Background()
	virtual := secondVirtual(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}
	if err := virtual.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// ServiceAccount admission needs it; the controller manager would make
	// it too, in its own time.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
	if err := virtual.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cfg := env.Options.Translate
	cfg.APIServerHost, cfg.APIServerPort, cfg.KubernetesServiceIP = "10.96.0.1", 443, "10.96.0.1"
	cfg.DNSNameserver = "10.96.0.10"
	cfg.NodeSelector = map[string]string{"type": "kwok"}
	cfg.Tolerations = []corev1.Toleration{{Key: "tenants", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	cfg.PriorityClasses = []string{"generated-high"}
	for _, c := range []client.Client{virtual, hostClient} {
		class := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "generated-high"}, Value: 1000}
		if err := c.Create(ctx, class); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), class) })
	}

	rng := rand.New(rand.NewPCG(7, 11))
	var accepted, refused, hostOK int
	for i := range generatedPods {
		pod := randomPod(rng, ns.Name, i)
		if err := virtual.Create(ctx, pod, client.DryRunAll); err != nil {
			continue // the virtual apiserver refuses it: no host pod is at stake.
		}
		accepted++
		// Translated as the webhook sees it: defaulted, with the
		// ServiceAccount admission's token volume.
		host, _, errs := translate.HostPod(pod, cfg, "sync-id")
		if len(errs) > 0 {
			refused++
			continue
		}
		if err := hostClient.Create(ctx, host, client.DryRunAll); err != nil {
			raw, _ := json.Marshal(pod)
			t.Errorf("pod %d: the host refuses the translation of a valid pod: %v\nvirtual pod: %s", i, err, raw)
			continue
		}
		hostOK++
	}
	t.Logf("%d random pods: %d valid in the virtual cluster, %d refused by podbridge, %d accepted by the host", generatedPods, accepted, refused, hostOK)
	// The generator aims at valid pods: a run where few are valid tests little.
	if accepted < generatedPods/2 || hostOK < generatedPods/3 {
		t.Errorf("only %d of %d generated pods were valid and %d translated: the generator no longer covers the translation", accepted, generatedPods, hostOK)
	}
}

// randomPod draws a pod from the fields translation handles: names up to
// their length limits, labels and annotations, containers with every kind
// of env source and downward reference, volumes of every supported kind,
// probes, resources, placement, DNS and security settings. Most draws are
// valid; some break a rule on purpose.
func randomPod(rng *rand.Rand, namespace string, i int) *corev1.Pod {
	one := func(n int) bool { return rng.IntN(n) == 0 }
	name := dnsLabel(rng, 1+rng.IntN(63))
	if one(4) {
		name = fmt.Sprintf("p%d-%s", i, dnsLabel(rng, 8))
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{}, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 []corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}[rng.IntN(3)],
			TerminationGracePeriodSeconds: ptr.To(int64(rng.IntN(120))),
		},
	}
	for range rng.IntN(4) {
		pod.Labels[qualifiedKey(rng)] = dnsLabel(rng, 1+rng.IntN(20))
	}
	for range rng.IntN(4) {
		pod.Annotations[qualifiedKey(rng)] = strings.Repeat("ä", rng.IntN(40))
	}
	volumes := randomVolumes(rng)
	pod.Spec.Volumes = volumes
	for c := range 1 + rng.IntN(3) {
		pod.Spec.Containers = append(pod.Spec.Containers, randomContainer(rng, fmt.Sprintf("c%d", c), volumes))
	}
	if one(3) {
		pod.Spec.InitContainers = []corev1.Container{randomContainer(rng, "init", volumes)}
	}
	if one(2) {
		pod.Spec.Tolerations = []corev1.Toleration{{Key: "example.com/" + dnsLabel(rng, 5), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(int64(rng.IntN(600)))}}
	}
	if one(2) {
		pod.Spec.NodeSelector = map[string]string{"zone": dnsLabel(rng, 3)}
	}
	if one(2) {
		selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": dnsLabel(rng, 4)}}
		term := corev1.PodAffinityTerm{LabelSelector: selector, TopologyKey: "kubernetes.io/hostname"}
		pod.Spec.Affinity = &corev1.Affinity{
			NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}}},
			}}}},
			PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: int32(1 + rng.IntN(100)), PodAffinityTerm: term}}},
		}
		if one(2) {
			pod.Spec.Affinity.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}}
		}
		pod.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: selector}}
	}
	switch rng.IntN(4) {
	case 0:
		pod.Spec.DNSPolicy = corev1.DNSDefault
	case 1:
		pod.Spec.DNSPolicy = corev1.DNSNone
		pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"example.com"}}
	case 2:
		pod.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}}}
	}
	if one(3) {
		pod.Spec.Hostname, pod.Spec.Subdomain = dnsLabel(rng, 1+rng.IntN(63)), dnsLabel(rng, 10)
	}
	if one(4) {
		pod.Spec.PriorityClassName = []string{"generated-high", "system-node-critical"}[rng.IntN(2)]
	}
	if one(4) {
		pod.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/" + dnsLabel(rng, 6)}}
	}
	if one(4) {
		pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
	}
	if one(3) {
		pod.Spec.ActiveDeadlineSeconds = ptr.To(int64(1 + rng.IntN(3600)))
	}
	if one(2) {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(1000 + rng.IntN(1000))), FSGroup: ptr.To(int64(2000))}
	}
	if one(5) {
		pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	}
	return pod
}

func randomVolumes(rng *rand.Rand) []corev1.Volume {
	sources := []func() corev1.VolumeSource{
		func() corev1.VolumeSource { return corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}} },
		func() corev1.VolumeSource {
			return corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: dnsLabel(rng, 12)}, Optional: ptr.To(rng.IntN(2) == 0)}}
		},
		func() corev1.VolumeSource {
			return corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: dnsLabel(rng, 1+rng.IntN(60)), Items: []corev1.KeyToPath{{Key: "k", Path: "p"}}}}
		},
		func() corev1.VolumeSource {
			return corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "vault", ExpirationSeconds: ptr.To(int64(600 + rng.IntN(7200))), Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: dnsLabel(rng, 8)}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
					// Whole maps are refused (they would show host keys); single keys are read under their host keys.
					{Path: "app", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}},
					{Path: "allowed", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + allowedAnnotation + "']"}},
				}}},
			}}}
		},
		func() corev1.VolumeSource {
			return corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				{Path: "uid", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}},
			}}}
		},
		func() corev1.VolumeSource {
			return corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: dnsLabel(rng, 1+rng.IntN(60))}}
		},
		func() corev1.VolumeSource {
			return corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			}}}}
		},
	}
	var volumes []corev1.Volume
	for i := range rng.IntN(4) {
		volumes = append(volumes, corev1.Volume{Name: fmt.Sprintf("v%d", i), VolumeSource: sources[rng.IntN(len(sources))]()})
	}
	return volumes
}

func randomContainer(rng *rand.Rand, name string, volumes []corev1.Volume) corev1.Container {
	c := corev1.Container{Name: name, Image: "registry.example/" + dnsLabel(rng, 6) + ":1"}
	fieldPaths := []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']", "metadata.annotations['note']", "spec.serviceAccountName", "spec.nodeName", "status.podIP", "status.hostIP"}
	for e := range rng.IntN(5) {
		v := corev1.EnvVar{Name: fmt.Sprintf("E%d", e)}
		switch rng.IntN(4) {
		case 0:
			v.Value = dnsLabel(rng, 5)
		case 1:
			v.ValueFrom = &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: fieldPaths[rng.IntN(len(fieldPaths))]}}
		case 2:
			v.ValueFrom = &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: dnsLabel(rng, 7)}, Key: "k"}}
		case 3:
			v.ValueFrom = &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: dnsLabel(rng, 7)}, Key: "k", Optional: ptr.To(true)}}
		}
		c.Env = append(c.Env, v)
	}
	if rng.IntN(3) == 0 {
		c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: dnsLabel(rng, 9)}}}}
	}
	for i, v := range volumes {
		if rng.IntN(2) == 0 {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: fmt.Sprintf("/mnt/%d", i), ReadOnly: v.EmptyDir == nil})
		}
	}
	if rng.IntN(2) == 0 {
		c.Ports = []corev1.ContainerPort{{ContainerPort: int32(1 + rng.IntN(65535)), Protocol: corev1.ProtocolTCP}}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intOrPort(c.Ports[0].ContainerPort)}}, PeriodSeconds: 5}
	}
	if rng.IntN(2) == 0 {
		c.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(fmt.Sprintf("%dm", 10+rng.IntN(500)))},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(fmt.Sprintf("%dMi", 64+rng.IntN(512)))},
		}
	}
	if rng.IntN(3) == 0 {
		c.SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	}
	return c
}

// dnsLabel is a random valid DNS label of length n (1 to 63).
func dnsLabel(rng *rand.Rand, n int) string {
	const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[rng.IntN(len(alnum))]
		if i > 0 && i < n-1 && rng.IntN(6) == 0 {
			b[i] = '-'
		}
	}
	return string(b)
}

// qualifiedKey is a random label or annotation key, prefixed or not.
func qualifiedKey(rng *rand.Rand) string {
	key := dnsLabel(rng, 1+rng.IntN(30))
	if rng.IntN(2) == 0 {
		key = "example.com/" + key
	}
	return key
}

func intOrPort(port int32) intstr.IntOrString { return intstr.FromInt32(port) }

// A malformed sysctl name gets the apiserver's own answer, 422 naming each
// malformed name and nothing else, as on any cluster, where the pod's
// validation runs before validating admission: not the host-side gate's
// Pod Security 403 naming every sysctl, well-formed or not (the
// conformance spec "Sysctls should reject invalid sysctls").
func TestMalformedSysctlNamesAreInvalidNotForbidden(t *testing.T) {
	pod := simplePod(namespace(t), "sysctls")
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
		{Name: "foo-", Value: "bar"}, {Name: "kernel.shmmax", Value: "100000000"}, {Name: "safe-and-unsafe", Value: "100000000"}, {Name: "bar..", Value: "42"},
	}}
	err := virtualClient.Create(context.Background(), pod)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create: %v, want 422 Invalid", err)
	}
	for _, want := range []string{`Invalid value: "foo-"`, `Invalid value: "bar.."`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %s", err, want)
		}
	}
	for _, wellFormed := range []string{"kernel.shmmax", "safe-and-unsafe"} {
		if strings.Contains(err.Error(), wellFormed) {
			t.Errorf("the refusal %q names the well-formed %s", err, wellFormed)
		}
	}
}
