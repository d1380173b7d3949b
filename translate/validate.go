package translate

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateVirtualPod refuses what a host pod must never carry from a tenant
// and what podbridge cannot translate yet, naming each field.
func validateVirtualPod(pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	if pod.Name == "" {
		errs = append(errs, field.Required(meta.Child("name"), "the webhook assigns names from generateName before translation"))
	}
	for _, key := range slices.Sorted(maps.Keys(pod.Labels)) {
		if IsReserved(key) {
			errs = append(errs, field.Forbidden(meta.Child("labels").Key(key), "the "+Prefix+" prefix is reserved for podbridge"))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(pod.Annotations)) {
		if IsReserved(key) && key != AnnotationSyncID && key != AnnotationHostName {
			errs = append(errs, field.Forbidden(meta.Child("annotations").Key(key), "the "+Prefix+" prefix is reserved for podbridge"))
		}
	}

	spec := field.NewPath("spec")
	if pod.Spec.NodeName != "" {
		errs = append(errs, field.Forbidden(spec.Child("nodeName"), "the host scheduler places pods; use nodeSelector or affinity instead"))
	}
	for i, v := range pod.Spec.Volumes {
		if unsupported := unsupportedVolumeSource(v); unsupported != "" {
			errs = append(errs, field.NotSupported(spec.Child("volumes").Index(i).Child(unsupported), unsupported, []string{"emptyDir", "downwardAPI", "the service account token volume"}))
		}
		if v.DownwardAPI != nil {
			for j, item := range v.DownwardAPI.Items {
				if item.FieldRef != nil && !supportedFieldPath(item.FieldRef.FieldPath) {
					errs = append(errs, field.NotSupported(spec.Child("volumes").Index(i).Child("downwardAPI", "items").Index(j).Child("fieldRef", "fieldPath"), item.FieldRef.FieldPath, supportedFieldPaths))
				}
			}
		}
	}
	for i := range pod.Spec.ImagePullSecrets {
		errs = append(errs, field.Forbidden(spec.Child("imagePullSecrets").Index(i), "podbridge does not copy Secrets to the host yet"))
	}
	errs = append(errs, validateContainers(spec.Child("initContainers"), pod.Spec.InitContainers)...)
	errs = append(errs, validateContainers(spec.Child("containers"), pod.Spec.Containers)...)
	return errs
}

func validateContainers(path *field.Path, containers []corev1.Container) field.ErrorList {
	var errs field.ErrorList
	for i, c := range containers {
		for j := range c.EnvFrom {
			errs = append(errs, field.Forbidden(path.Index(i).Child("envFrom").Index(j), "podbridge does not copy ConfigMaps and Secrets to the host yet"))
		}
		for j, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if e.ValueFrom.ConfigMapKeyRef != nil || e.ValueFrom.SecretKeyRef != nil || e.ValueFrom.FileKeyRef != nil {
				errs = append(errs, field.Forbidden(path.Index(i).Child("env").Index(j).Child("valueFrom"), "podbridge does not copy ConfigMaps and Secrets to the host yet"))
			}
			if ref := e.ValueFrom.FieldRef; ref != nil && !supportedFieldPath(ref.FieldPath) {
				errs = append(errs, field.NotSupported(path.Index(i).Child("env").Index(j).Child("valueFrom", "fieldRef", "fieldPath"), ref.FieldPath, supportedFieldPaths))
			}
		}
	}
	return errs
}

// supportedFieldPaths are the downward-API paths whose value is the same on
// both sides or is rewritten to the virtual value.
var supportedFieldPaths = []string{"metadata.name", "metadata.namespace", "spec.nodeName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}

func supportedFieldPath(path string) bool {
	return slices.Contains(supportedFieldPaths, path)
}

// unsupportedVolumeSource names the source of v when podbridge cannot carry
// it to the host, or returns "".
func unsupportedVolumeSource(v corev1.Volume) string {
	switch {
	case v.EmptyDir != nil, v.DownwardAPI != nil:
		return ""
	case v.Projected != nil && strings.HasPrefix(v.Name, serviceAccountTokenVolumePrefix):
		return ""
	case v.HostPath != nil:
		return "hostPath"
	case v.ConfigMap != nil:
		return "configMap"
	case v.Secret != nil:
		return "secret"
	case v.Projected != nil:
		return "projected"
	case v.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case v.Ephemeral != nil:
		return "ephemeral"
	default:
		return "source"
	}
}
