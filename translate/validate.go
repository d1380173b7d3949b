package translate

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidateMetadataUpdate refuses an update of a virtual pod that adds,
// changes or removes podbridge's own labels or annotations: the reflector
// pairs pods by them (the sync ID) and the tenant must not forge them after
// creation any more than at it.
func ValidateMetadataUpdate(old, pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	for _, key := range changedKeys(old.Labels, pod.Labels) {
		if IsReserved(key) {
			errs = append(errs, field.Forbidden(meta.Child("labels").Key(key), "the "+Prefix+" prefix is reserved for podbridge"))
		}
	}
	if pod.Labels[LabelManagedBy] == ManagedByValue && old.Labels[LabelManagedBy] != ManagedByValue {
		errs = append(errs, field.Forbidden(meta.Child("labels").Key(LabelManagedBy), "the value "+ManagedByValue+" is reserved for podbridge"))
	}
	for _, key := range changedKeys(old.Annotations, pod.Annotations) {
		if IsReserved(key) {
			errs = append(errs, field.Forbidden(meta.Child("annotations").Key(key), "podbridge sets the "+Prefix+" annotations; they cannot change"))
		}
	}
	return errs
}

// changedKeys lists, sorted, the keys whose presence or value differ.
func changedKeys(old, updated map[string]string) []string {
	var keys []string
	for k, v := range updated {
		if was, ok := old[k]; !ok || was != v {
			keys = append(keys, k)
		}
	}
	for k := range old {
		if _, ok := updated[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// validateMetadata refuses a pod that claims podbridge's own labels or
// annotations: the reflector trusts them to find and pair its pods.
func validateMetadata(pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	// Mutating admission runs before the apiserver validates the pod: check
	// the names that become host names here, or the host would see them first.
	if pod.Name == "" {
		errs = append(errs, field.Required(meta.Child("name"), "the webhook assigns names from generateName before translation"))
	}
	for _, msg := range validation.IsDNS1123Subdomain(pod.Name) {
		errs = append(errs, field.Invalid(meta.Child("name"), pod.Name, msg))
	}
	for _, msg := range validation.IsDNS1123Label(pod.Namespace) {
		errs = append(errs, field.Invalid(meta.Child("namespace"), pod.Namespace, msg))
	}
	for _, key := range slices.Sorted(maps.Keys(pod.Labels)) {
		if IsReserved(key) {
			errs = append(errs, field.Forbidden(meta.Child("labels").Key(key), "the "+Prefix+" prefix is reserved for podbridge"))
		}
	}
	if pod.Labels[LabelManagedBy] == ManagedByValue {
		errs = append(errs, field.Forbidden(meta.Child("labels").Key(LabelManagedBy), "the value "+ManagedByValue+" is reserved for podbridge"))
	}
	for _, key := range slices.Sorted(maps.Keys(pod.Annotations)) {
		// The two annotations podbridge sets on virtual pods may come back
		// when admission runs again; the webhook checks the sync ID.
		if IsReserved(key) && key != AnnotationSyncID && key != AnnotationHostName {
			errs = append(errs, field.Forbidden(meta.Child("annotations").Key(key), "the "+Prefix+" prefix is reserved for podbridge"))
		}
	}
	return errs
}
