package translate

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidateMetadataUpdate refuses an update of a virtual pod that adds,
// changes or removes podbridge's own labels or annotations: the reflector
// pairs pods by them (the sync ID) and the tenant must not forge them after
// creation any more than at it.
func ValidateMetadataUpdate(old, pod *corev1.Pod) field.ErrorList {
	meta := field.NewPath("metadata")
	errs := forbidReserved(meta.Child("labels"), setKeys(old.Labels, pod.Labels), reservedPrefix)
	if claimsManagedBy(pod.Labels) && !claimsManagedBy(old.Labels) {
		errs = append(errs, managedByForbidden(meta))
	}
	return append(errs, forbidReserved(meta.Child("annotations"), setKeys(old.Annotations, pod.Annotations),
		"podbridge sets the "+Prefix+" annotations; they cannot change")...)
}

// DroppedReserved are podbridge's labels and annotations that old carries
// and pod does not. An ordinary write of the tenant's drops them (kubectl
// replace, an apply of a manifest that never had them, an editor that
// rewrites the map); podbridge puts them back rather than refuse it:
// bookkeeping the tenant can see must not block the tenant's writes.
func DroppedReserved(old, pod *corev1.Pod) (labels, annotations map[string]string) {
	return droppedReserved(old.Labels, pod.Labels), droppedReserved(old.Annotations, pod.Annotations)
}

func droppedReserved(old, updated map[string]string) map[string]string {
	var dropped map[string]string
	for k, v := range old {
		if _, kept := updated[k]; !kept && IsReserved(k) {
			if dropped == nil {
				dropped = map[string]string{}
			}
			dropped[k] = v
		}
	}
	return dropped
}

const reservedPrefix = "the " + Prefix + " prefix is reserved for podbridge"

// forbidReserved refuses each of keys, the label or annotation keys at
// path, that carries podbridge's prefix.
func forbidReserved(path *field.Path, keys []string, detail string) field.ErrorList {
	var errs field.ErrorList
	for _, key := range keys {
		if IsReserved(key) {
			errs = append(errs, field.Forbidden(path.Key(key), detail))
		}
	}
	return errs
}

// claimsManagedBy reports whether labels say podbridge manages the pod.
func claimsManagedBy(labels map[string]string) bool { return labels[LabelManagedBy] == ManagedByValue }

func managedByForbidden(meta *field.Path) *field.Error {
	return field.Forbidden(meta.Child("labels").Key(LabelManagedBy), "the value "+ManagedByValue+" is reserved for podbridge")
}

// setKeys lists, sorted, the keys updated adds or gives another value.
func setKeys(old, updated map[string]string) []string {
	var keys []string
	for k, v := range updated {
		if was, ok := old[k]; !ok || was != v {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// sysctlName is the apiserver's rule for a sysctl name (validateSysctls
// in k8s.io/kubernetes' core validation): segments joined by dots or
// slashes, at most maxSysctlName characters.
var sysctlName = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)

const maxSysctlName = 253

// validateSysctls refuses malformed sysctl names as the apiserver's
// validation does, with its words. That validation runs after mutating
// admission but before any validating admission, so a tenant's malformed
// name meets it first on any cluster; here it must come before the
// host-side gate's Pod Security check, which would refuse every sysctl
// the pod names with a 403 instead.
func validateSysctls(pod *corev1.Pod) field.ErrorList {
	if pod.Spec.SecurityContext == nil {
		return nil
	}
	var errs field.ErrorList
	path := field.NewPath("spec", "securityContext", "sysctls")
	for i, s := range pod.Spec.SecurityContext.Sysctls {
		switch {
		case s.Name == "":
			errs = append(errs, field.Required(path.Index(i).Child("name"), ""))
		case len(s.Name) > maxSysctlName || !sysctlName.MatchString(s.Name):
			errs = append(errs, field.Invalid(path.Index(i).Child("name"), s.Name, fmt.Sprintf("must have at most %d characters and match regex %s", maxSysctlName, sysctlName)))
		}
	}
	return errs
}

// validateMetadata refuses a pod that claims podbridge's own labels or
// annotations: the reflector trusts them to find and pair its pods.
func validateMetadata(pod *corev1.Pod) field.ErrorList {
	return validateObjectMeta(pod, validation.IsDNS1123Subdomain)
}

// validateObjectMeta refuses what the metadata of a pod or a Service may
// not hold on its way to the host: a name validName refuses (mutating
// admission runs before the apiserver validates the object, and the name
// becomes a host name, which the host would otherwise check first), an
// invalid namespace or label key, and podbridge's own labels and
// annotations, which the reflector trusts to find and pair its objects.
func validateObjectMeta(obj metav1.Object, validName func(string) []string) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	if obj.GetName() == "" {
		errs = append(errs, field.Required(meta.Child("name"), "the webhook assigns names from generateName before translation"))
	}
	for _, msg := range validName(obj.GetName()) {
		errs = append(errs, field.Invalid(meta.Child("name"), obj.GetName(), msg))
	}
	for _, msg := range validation.IsDNS1123Label(obj.GetNamespace()) {
		errs = append(errs, field.Invalid(meta.Child("namespace"), obj.GetNamespace(), msg))
	}
	labels := slices.Sorted(maps.Keys(obj.GetLabels()))
	// The host key of an invalid key may be valid (TenantKey).
	for _, key := range labels {
		for _, msg := range validation.IsQualifiedName(key) {
			errs = append(errs, field.Invalid(meta.Child("labels").Key(key), key, msg))
		}
	}
	errs = append(errs, forbidReserved(meta.Child("labels"), labels, reservedPrefix)...)
	if claimsManagedBy(obj.GetLabels()) {
		errs = append(errs, managedByForbidden(meta))
	}
	// The two annotations podbridge sets on virtual objects may come back
	// when admission runs again; the webhook checks the sync ID.
	annotations := slices.DeleteFunc(slices.Sorted(maps.Keys(obj.GetAnnotations())), func(key string) bool {
		return key == AnnotationSyncID || key == AnnotationHostName
	})
	return append(errs, forbidReserved(meta.Child("annotations"), annotations, reservedPrefix)...)
}
