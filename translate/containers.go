package translate

import (
	"fmt"
	"regexp"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (t *podTranslator) containers(path *field.Path, containers []corev1.Container) []corev1.Container {
	if containers == nil {
		return nil
	}
	out := make([]corev1.Container, 0, len(containers))
	for i := range containers {
		c := containers[i].DeepCopy()
		p := path.Index(i)
		for j := range c.EnvFrom {
			from := &c.EnvFrom[j]
			switch {
			case from.ConfigMapRef != nil:
				from.ConfigMapRef.Name = t.configMap(from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
			case from.SecretRef != nil:
				from.SecretRef.Name = t.secret(from.SecretRef.Name, from.SecretRef.Optional)
			}
		}
		for j := range c.Env {
			ref := c.Env[j].ValueFrom
			if ref == nil {
				continue
			}
			switch {
			case ref.ConfigMapKeyRef != nil:
				ref.ConfigMapKeyRef.Name = t.configMap(ref.ConfigMapKeyRef.Name, ref.ConfigMapKeyRef.Optional)
			case ref.SecretKeyRef != nil:
				ref.SecretKeyRef.Name = t.secret(ref.SecretKeyRef.Name, ref.SecretKeyRef.Optional)
			case ref.FieldRef != nil:
				t.fieldRef(p.Child("env").Index(j).Child("valueFrom", "fieldRef", "fieldPath"), ref.FieldRef)
			}
		}
		c.Env = t.serviceEnv(c.Env)
		out = append(out, *c)
	}
	return out
}

// ephemeralContainers translates ephemeral containers like containers:
// they share their fields (EphemeralContainerCommon converts to Container).
func (t *podTranslator) ephemeralContainers(path *field.Path, ephemeral []corev1.EphemeralContainer) []corev1.EphemeralContainer {
	if ephemeral == nil {
		return nil
	}
	common := make([]corev1.Container, len(ephemeral))
	for i := range ephemeral {
		common[i] = corev1.Container(ephemeral[i].EphemeralContainerCommon)
	}
	translated := t.containers(path, common)
	out := make([]corev1.EphemeralContainer, len(ephemeral))
	for i := range ephemeral {
		out[i] = corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(translated[i]), TargetContainerName: ephemeral[i].TargetContainerName}
	}
	return out
}

// HostEphemeralContainers translates the virtual pod's ephemeral containers
// for its host pod (pods/ephemeralcontainers), or refuses them with errors
// naming the virtual field. The objects they reference are among
// PodDependencies'.
func HostEphemeralContainers(virtual *corev1.Pod, cfg Config) ([]corev1.EphemeralContainer, field.ErrorList) {
	t := &podTranslator{cfg: cfg, pod: virtual, deps: &Dependencies{}}
	out := t.ephemeralContainers(field.NewPath("spec", "ephemeralContainers"), virtual.Spec.EphemeralContainers)
	return out, t.errs
}

// serviceEnv points in-cluster clients at the virtual apiserver, unless the
// container sets the variables itself.
func (t *podTranslator) serviceEnv(env []corev1.EnvVar) []corev1.EnvVar {
	if t.cfg.APIServerHost == "" {
		return env
	}
	for _, e := range env {
		if e.Name == "KUBERNETES_SERVICE_HOST" || e.Name == "KUBERNETES_SERVICE_PORT" {
			return env
		}
	}
	return append(env,
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: t.cfg.APIServerHost},
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(int(t.cfg.APIServerPort))},
	)
}

var (
	// sameOnBothSides are downward-API paths whose host value is the
	// virtual value: labels and annotations are copied, and the node and
	// addresses are the host's on both sides.
	sameOnBothSides = regexp.MustCompile(`^(metadata\.labels|metadata\.annotations)(\['[^']*'\])?$|^(spec\.nodeName|status\.hostIPs?|status\.podIPs?)$`)
	// fromAnnotation are the paths whose host value differs, answered from
	// the host annotation holding the virtual value.
	fromAnnotation = map[string]string{
		"metadata.name":           AnnotationName,
		"metadata.namespace":      AnnotationNamespace,
		"spec.serviceAccountName": AnnotationServiceAccount,
		"metadata.uid":            AnnotationUID,
	}
)

// fieldRef makes a downward-API reference read the virtual value.
func (t *podTranslator) fieldRef(path *field.Path, ref *corev1.ObjectFieldSelector) {
	if ref == nil {
		return
	}
	if key, ok := fromAnnotation[ref.FieldPath]; ok {
		ref.FieldPath = fmt.Sprintf("metadata.annotations['%s']", key)
		return
	}
	if !sameOnBothSides.MatchString(ref.FieldPath) {
		t.errs = append(t.errs, field.Invalid(path, ref.FieldPath, "the virtual pod's value cannot be provided on the host"))
	}
}

func (t *podTranslator) imagePullSecrets(_ *field.Path, refs []corev1.LocalObjectReference) []corev1.LocalObjectReference {
	if refs == nil {
		return nil
	}
	out := make([]corev1.LocalObjectReference, len(refs))
	for i, r := range refs {
		// Missing pull secrets do not stop a pod in Kubernetes: optional.
		out[i].Name = t.secret(r.Name, ptrTo(true))
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }
