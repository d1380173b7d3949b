package translate

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Annotations on host pods beyond the pair's identity (see keys.go).
const (
	// AnnotationOwnerReferences keeps the virtual pod's owner references as
	// JSON: host objects must not point at virtual owners, but operators
	// can still see them.
	AnnotationOwnerReferences = Prefix + "owner-references"
	// AnnotationServiceAccount holds the virtual service account name, for
	// downward-API references to spec.serviceAccountName.
	AnnotationServiceAccount = Prefix + "service-account"
	// AnnotationUID holds the virtual pod's UID, for downward-API
	// references to metadata.uid. The apiserver assigns the UID after
	// admission, so the reflector sets it once the virtual pod exists.
	AnnotationUID = Prefix + "uid"
)

// GateVirtualPod holds every host pod until its virtual pod is stored:
// webhooks that run after podbridge's may still change the pod (a sidecar
// injector), and the pod may need what only exists then: its UID (for
// metadata.uid references, in AnnotationUID) and service-account tokens
// bound to it. The reflector compares the stored spec with the admitted
// one (AnnotationAdmittedSpec), re-creates the host pod if they differ,
// provides the UID and tokens and removes the gate (ReleaseHostPod); no
// container starts before, and the webhook's path keeps one host write.
const GateVirtualPod = Prefix + "virtual-pod"

// HostPod translates a named virtual pod into the host pod that runs it and
// the objects that must exist on the host first. syncID identifies the pair
// (see AnnotationSyncID). Input the host cannot run safely, or that
// podbridge cannot carry, is refused with errors naming the virtual field.
func HostPod(virtual *corev1.Pod, cfg Config, syncID string) (*corev1.Pod, *Dependencies, field.ErrorList) {
	t := &podTranslator{cfg: cfg, pod: virtual, deps: &Dependencies{}}
	t.errs = append(validateMetadata(virtual), validateSysctls(virtual)...)
	spec := t.spec(field.NewPath("spec"))
	if len(t.errs) > 0 {
		return nil, nil, t.errs
	}
	host := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        HostName(virtual.Name, virtual.Namespace, cfg.VCluster),
			Namespace:   cfg.HostNamespace,
			Labels:      hostLabels(virtual.Labels, virtual.Namespace, cfg),
			Annotations: hostAnnotations(virtual, cfg, syncID),
		},
		Spec: spec,
	}
	return host, t.deps, nil
}

// podTranslator carries one translation's state: the errors found and the
// host objects the pod depends on.
type podTranslator struct {
	cfg  Config
	pod  *corev1.Pod
	deps *Dependencies
	errs field.ErrorList
}

func (t *podTranslator) spec(path *field.Path) corev1.PodSpec {
	v := &t.pod.Spec
	if v.NodeName != "" {
		t.errs = append(t.errs, field.Forbidden(path.Child("nodeName"), "the host scheduler places pods; use nodeSelector or affinity instead"))
	}
	for i := range v.ResourceClaims {
		t.errs = append(t.errs, field.Forbidden(path.Child("resourceClaims").Index(i), "podbridge does not carry dynamic resource claims to the host"))
	}
	hostname := v.Hostname
	if hostname == "" {
		hostname = Hostname(t.pod.Name)
	}
	spec := corev1.PodSpec{
		Hostname:                      hostname,
		Subdomain:                     v.Subdomain,
		SetHostnameAsFQDN:             v.SetHostnameAsFQDN,
		ServiceAccountName:            t.cfg.HostServiceAccount,
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		RestartPolicy:                 v.RestartPolicy,
		TerminationGracePeriodSeconds: v.TerminationGracePeriodSeconds,
		ActiveDeadlineSeconds:         v.ActiveDeadlineSeconds,
		SchedulingGates:               slices.Clone(v.SchedulingGates),
		SecurityContext:               v.SecurityContext.DeepCopy(),
		HostAliases:                   v.HostAliases,
		ShareProcessNamespace:         v.ShareProcessNamespace,
		RuntimeClassName:              v.RuntimeClassName,
		Resources:                     v.Resources.DeepCopy(),
		OS:                            v.OS,
		HostUsers:                     v.HostUsers,
		ImagePullSecrets:              t.imagePullSecrets(path.Child("imagePullSecrets"), v.ImagePullSecrets),
		Volumes:                       t.volumes(path.Child("volumes"), v.Volumes),
		InitContainers:                t.containers(path.Child("initContainers"), v.InitContainers),
		Containers:                    t.containers(path.Child("containers"), v.Containers),
		// Empty at creation (the apiserver allows none); translated here so
		// PodDependencies covers what later ones reference.
		EphemeralContainers: t.ephemeralContainers(path.Child("ephemeralContainers"), v.EphemeralContainers),
	}
	// The host's own Priority admission sets priority from its class;
	// a class outside the allow-list falls back to the host's default.
	if v.PriorityClassName != "" && contains(t.cfg.PriorityClasses, v.PriorityClassName) {
		spec.PriorityClassName = v.PriorityClassName
	}
	for i, g := range v.SchedulingGates {
		if strings.HasPrefix(g.Name, Prefix) {
			t.errs = append(t.errs, field.Forbidden(path.Child("schedulingGates").Index(i).Child("name"), "the "+Prefix+" prefix is reserved for podbridge"))
		}
	}
	spec.SchedulingGates = append(spec.SchedulingGates, corev1.PodSchedulingGate{Name: GateVirtualPod})
	t.scheduling(path, &spec)
	t.dns(&spec)
	t.errs = append(t.errs, ReservedHostsNames(path, v)...)
	t.errs = append(t.errs, validateHostnames(path, v)...)
	t.hostsFile(&spec)
	return spec
}

// hostLabels are the tenant's labels under their host keys (TenantKey)
// and podbridge's own markers.
func hostLabels(virtual map[string]string, namespace string, cfg Config) map[string]string {
	labels := tenantLabels(virtual)
	labels[LabelManagedBy] = ManagedByValue
	labels[LabelVCluster] = cfg.VCluster
	labels[LabelNamespace] = namespace
	return labels
}

// tenantLabels are the virtual pod's labels under their host keys.
func tenantLabels(virtual map[string]string) map[string]string {
	labels := make(map[string]string, len(virtual)+3)
	for k, v := range virtual {
		labels[TenantKey(k)] = v
	}
	return labels
}

func hostAnnotations(virtual *corev1.Pod, cfg Config, syncID string) map[string]string {
	annotations := tenantAnnotations(virtual, cfg)
	annotations[AnnotationSyncID] = syncID
	annotations[AnnotationName] = virtual.Name
	annotations[AnnotationNamespace] = virtual.Namespace
	annotations[AnnotationVCluster] = cfg.VCluster
	annotations[AnnotationServiceAccount] = serviceAccountOf(virtual)
	annotations[AnnotationAdmittedSpec] = AdmittedSpecOf(virtual).String()
	maps.Copy(annotations, downwardMaps(virtual))
	if len(virtual.OwnerReferences) > 0 {
		// Marshalling plain API structs cannot fail.
		owners, _ := json.Marshal(virtual.OwnerReferences)
		annotations[AnnotationOwnerReferences] = string(owners)
	}
	return annotations
}

// tenantAnnotations are the virtual pod's annotations the host pod
// carries: those cfg.HostAnnotations allows, under their own keys, and
// those the pod's downward-API references read, under TenantKey (where
// the translated references read them). None other reaches the host.
func tenantAnnotations(virtual *corev1.Pod, cfg Config) map[string]string {
	annotations := map[string]string{}
	for _, k := range cfg.HostAnnotations {
		if v, ok := virtual.Annotations[k]; ok {
			annotations[k] = v
		}
	}
	for _, k := range annotationRefs(&virtual.Spec) {
		if v, ok := virtual.Annotations[k]; ok && !IsReserved(k) {
			annotations[TenantKey(k)] = v
		}
	}
	return annotations
}

func serviceAccountOf(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

func contains(list []string, s string) bool {
	for _, item := range list {
		if item == s {
			return true
		}
	}
	return false
}
