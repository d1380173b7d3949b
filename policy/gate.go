package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podbridge/podbridge/translate"
)

// Gate is the host-side gate: Pod Security, podbridge's own rules, the
// allow-lists of translate.Config and the cap on a pod's tokens. A zero
// Security refuses everything, so a gate built without a level never lets
// a pod through.
type Gate struct {
	Security *SecurityPolicy
	Config   translate.Config
	// MaxTokensPerPod caps the projected service-account tokens of one pod
	// (0: no cap): each is a host Secret and a token request.
	MaxTokensPerPod int
}

// OriginTokenCap marks the gate's error for a pod over MaxTokensPerPod.
const OriginTokenCap = "maxTokensPerPod"

// Check returns why host, the host pod a write would leave, may not be
// written for virtual, the stored virtual pod it comes from; nil when it
// may. Each error names the virtual pod's field as the tenant wrote it
// (host pods keep the virtual pod's order of containers and volumes) and,
// for allow-lists, the allowed values. Pod Security errors carry
// OriginPodSecurity.
func (g Gate) Check(virtual, host *corev1.Pod) field.ErrorList {
	spec := field.NewPath("spec")
	if g.Security == nil {
		return field.ErrorList{field.InternalError(spec, fmt.Errorf("podbridge has no Pod Security level configured"))}
	}
	// Both pods: the virtual pod's own fields (some translation drops, like
	// hostPID) and what the host would really run.
	errs := g.Security.errors(virtual, host)
	errs = append(errs, refusedFields(spec, &virtual.Spec)...)
	errs = append(errs, g.hostRules(spec, host)...)
	errs = append(errs, g.classes(spec, &host.Spec)...)
	errs = append(errs, g.volumes(spec.Child("volumes"), virtual, host)...)
	errs = append(errs, g.placement(spec, virtual, host)...)
	errs = append(errs, g.hostsFile(spec, virtual, host)...)
	if err := g.tokens(spec, virtual); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// tokens refuses a pod with more projected service-account tokens than
// the cap. The webhook and the reflector (which makes a host pod again from
// the stored pod) both pass here, so a webhook or admission policy of the
// tenant's that adds tokens after podbridge's admission meets the same cap.
func (g Gate) tokens(spec *field.Path, virtual *corev1.Pod) *field.Error {
	n := tokenCount(virtual)
	if TokensAllowed(n, g.MaxTokensPerPod) {
		return nil
	}
	err := field.Forbidden(spec.Child("volumes"), fmt.Sprintf("projected service-account tokens: %d, more than this virtual cluster's limit of %d per pod (platform flag --max-tokens-per-pod)", n, g.MaxTokensPerPod))
	err.Origin = OriginTokenCap
	return err
}

// TokensAllowed reports whether a pod may have n projected tokens under
// the cap max (0: no cap).
func TokensAllowed(n, maxTokens int) bool {
	return maxTokens <= 0 || n <= maxTokens
}

// tokenCount is the number of token Secrets a pod's projected
// serviceAccountToken sources need: one per volume and audience, as
// translate names them.
func tokenCount(pod *corev1.Pod) int {
	type token struct{ volume, audience string }
	var seen []token // a pod has a few: a slice beats a map
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if tok := s.ServiceAccountToken; tok != nil && !slices.Contains(seen, token{v.Name, tok.Audience}) {
				seen = append(seen, token{v.Name, tok.Audience})
			}
		}
	}
	return len(seen)
}

// refusedFields refuses the virtual pod's fields podbridge cannot carry and
// translation does not copy: they are named rather than dropped (see
// podSpecFields).
func refusedFields(path *field.Path, v *corev1.PodSpec) field.ErrorList {
	var errs field.ErrorList
	forbid := func(set bool, name, why string) {
		if set {
			errs = append(errs, field.Forbidden(path.Child(name), why))
		}
	}
	const hostNS = "the host's namespaces are shared by every tenant"
	forbid(v.HostNetwork, "hostNetwork", hostNS)
	forbid(v.HostPID, "hostPID", hostNS)
	forbid(v.HostIPC, "hostIPC", hostNS)
	forbid(v.HostnameOverride != nil, "hostnameOverride", "podbridge sets the host pod's hostname from the virtual pod's name, hostname and subdomain")
	forbid(v.SchedulingGroup != nil, "schedulingGroup", "podbridge does not carry workload scheduling groups to the host")
	forbid(len(v.EvictionResponders) > 0, "evictionResponders", "podbridge does not carry eviction responders to the host")
	if v.SchedulerName != "" && v.SchedulerName != corev1.DefaultSchedulerName {
		errs = append(errs, field.NotSupported(path.Child("schedulerName"), v.SchedulerName, []string{corev1.DefaultSchedulerName}))
	}
	return errs
}

// hostRules are podbridge's own invariants of every host pod: translation
// establishes them, and the gate refuses a write that would break them
// (a bug, or a host pod changed behind podbridge's back).
func (g Gate) hostRules(path *field.Path, host *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	cfg := g.Config
	if host.Namespace != cfg.HostNamespace {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), host.Namespace, "the host pod must be in the host namespace "+cfg.HostNamespace))
	}
	if host.Labels[translate.LabelVCluster] != cfg.VCluster || host.Labels[translate.LabelManagedBy] != translate.ManagedByValue {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "labels"), host.Labels[translate.LabelVCluster], "the host pod must carry podbridge's labels of virtual cluster "+cfg.VCluster))
	}
	s := &host.Spec
	if s.ServiceAccountName != cfg.HostServiceAccount {
		errs = append(errs, field.Invalid(path.Child("serviceAccountName"), s.ServiceAccountName, "the host pod runs as the host service account "+cfg.HostServiceAccount))
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		errs = append(errs, field.Forbidden(path.Child("automountServiceAccountToken"), "the host service account's token is never mounted"))
	}
	return errs
}

// classes checks the classes a host pod names against the allow-lists.
func (g Gate) classes(path *field.Path, s *corev1.PodSpec) field.ErrorList {
	var errs field.ErrorList
	if s.RuntimeClassName != nil && !slices.Contains(g.Config.RuntimeClasses, *s.RuntimeClassName) {
		errs = append(errs, notAllowed(path.Child("runtimeClassName"), *s.RuntimeClassName, g.Config.RuntimeClasses, "--allowed-runtime-classes"))
	}
	// Translation strips a class outside the list (the host's default
	// applies); one that gets here anyway is refused.
	if s.PriorityClassName != "" && !slices.Contains(g.Config.PriorityClasses, s.PriorityClassName) {
		errs = append(errs, notAllowed(path.Child("priorityClassName"), s.PriorityClassName, g.Config.PriorityClasses, "--allowed-priority-classes"))
	}
	return errs
}

// volumes checks the volumes that act with the host namespace's rights:
// claims, inline CSI drivers and generic ephemeral volumes.
func (g Gate) volumes(path *field.Path, virtual, host *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	for i := range host.Spec.Volumes {
		v, p := &host.Spec.Volumes[i], path.Index(i)
		switch {
		case v.PersistentVolumeClaim != nil:
			// Only the host claim of a claim in the pod's own virtual
			// namespace: the host pod must name what translation names.
			var claim string
			if i < len(virtual.Spec.Volumes) && virtual.Spec.Volumes[i].PersistentVolumeClaim != nil {
				claim = virtual.Spec.Volumes[i].PersistentVolumeClaim.ClaimName
			}
			if want := translate.HostClaimName(claim, virtual.Namespace, g.Config.VCluster); claim == "" || v.PersistentVolumeClaim.ClaimName != want {
				errs = append(errs, field.Invalid(p.Child("persistentVolumeClaim", "claimName"), claim,
					"the host pod must name the host claim of PersistentVolumeClaim "+claim+" of namespace "+virtual.Namespace))
			}
		case v.CSI != nil:
			if !slices.Contains(g.Config.CSIDrivers, v.CSI.Driver) {
				errs = append(errs, notAllowed(p.Child("csi", "driver"), v.CSI.Driver, g.Config.CSIDrivers, "--allowed-csi-drivers"))
				continue
			}
			// Attributes are the driver's to read, and some name objects
			// (a secrets-store SecretProviderClass) that may be another
			// tenant's: only keys the platform allows for the driver pass.
			allowed := g.Config.CSIVolumeAttributes[v.CSI.Driver]
			for _, key := range slices.Sorted(maps.Keys(v.CSI.VolumeAttributes)) {
				if !slices.Contains(allowed, key) {
					errs = append(errs, notAllowed(p.Child("csi", "volumeAttributes").Key(key), key, allowed, "--allowed-csi-volume-attributes "+v.CSI.Driver+"="+key))
				}
			}
		case v.Ephemeral != nil:
			errs = append(errs, g.claimTemplate(p.Child("ephemeral", "volumeClaimTemplate"), v.Ephemeral.VolumeClaimTemplate)...)
		case v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil, v.DownwardAPI != nil, v.Projected != nil:
		default:
			errs = append(errs, field.NotSupported(p, v.Name, []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}))
		}
	}
	return errs
}

// claimTemplate checks a generic ephemeral volume's claim: the host's
// ephemeral-volume controller creates it in the host namespace with
// podbridge's rights, so nothing in it may reach another tenant's storage
// or steer the host.
func (g Gate) claimTemplate(path *field.Path, t *corev1.PersistentVolumeClaimTemplate) field.ErrorList {
	if t == nil {
		return field.ErrorList{field.Required(path, "a generic ephemeral volume needs a claim template")}
	}
	spec := path.Child("spec")
	errs := g.claimSpec(spec, &t.Spec)
	// The host's ephemeral-volume controller copies the template as it is:
	// nothing translates a source's name to the tenant's host claim.
	if t.Spec.DataSource != nil {
		errs = append(errs, field.Forbidden(spec.Child("dataSource"), "a claim template's data source is not translated to the host; clone from a PersistentVolumeClaim instead"))
	}
	if t.Spec.DataSourceRef != nil {
		errs = append(errs, field.Forbidden(spec.Child("dataSourceRef"), "a claim template's data source is not translated to the host; clone from a PersistentVolumeClaim instead"))
	}
	return append(errs, reservedClaimKeys(path.Child("metadata"), t.Labels, t.Annotations)...)
}

// storageClass checks the storage class a claim names (a generic
// ephemeral volume's or a PersistentVolumeClaim's: one policy for both)
// against --allowed-storage-classes and --allow-default-storage-class.
func (g Gate) storageClass(path *field.Path, class *string) field.ErrorList {
	switch {
	case class == nil && !g.Config.AllowDefaultStorageClass:
		return field.ErrorList{field.Required(path,
			"no storage class means the host's default class, which the platform has not allowed (--allow-default-storage-class); allowed: "+allowedList(g.Config.StorageClasses))}
	case class != nil && *class == "":
		return field.ErrorList{field.Invalid(path, "", "an empty storage class binds pre-provisioned volumes of any owner; allowed: "+allowedList(g.Config.StorageClasses))}
	case class != nil && !slices.Contains(g.Config.StorageClasses, *class):
		return field.ErrorList{notAllowed(path, *class, g.Config.StorageClasses, "--allowed-storage-classes")}
	}
	return nil
}

// reservedClaimKeys refuses podbridge's reserved labels and annotations
// and the annotations the host's volume controllers act on, in a claim's
// (or a claim template's) metadata at meta.
func reservedClaimKeys(meta *field.Path, labels, annotations map[string]string) field.ErrorList {
	var errs field.ErrorList
	for _, key := range slices.Sorted(maps.Keys(labels)) {
		if translate.IsReserved(key) || key == translate.LabelManagedBy {
			errs = append(errs, field.Forbidden(meta.Child("labels").Key(key), "podbridge's keys are reserved: host objects carrying them are taken for podbridge's"))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(annotations)) {
		if translate.IsReserved(key) || steersProvisioning(key) {
			errs = append(errs, field.Forbidden(meta.Child("annotations").Key(key), "this annotation steers the host's provisioning or podbridge"))
		}
	}
	return errs
}

// steersProvisioning reports whether a claim annotation is read by the
// host's volume controllers: the beta storage class annotation names a
// class past storageClassName, the others pick provisioners and nodes.
func steersProvisioning(key string) bool {
	for _, prefix := range []string{"volume.beta.kubernetes.io/", "volume.kubernetes.io/", "pv.kubernetes.io/"} {
		if strings.HasPrefix(key, prefix) {
			return true
		}
	}
	return false
}

func notAllowed(path *field.Path, value string, allowed []string, flag string) *field.Error {
	return field.Invalid(path, value, "not allowed on the host (platform flag "+flag+"); allowed: "+allowedList(allowed))
}

func allowedList(allowed []string) string {
	if len(allowed) == 0 {
		return "none"
	}
	return strings.Join(allowed, ", ")
}
