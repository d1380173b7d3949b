package translate

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
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
	path := field.NewPath("spec", "ephemeralContainers")
	out := t.ephemeralContainers(path, virtual.Spec.EphemeralContainers)
	return out, append(t.errs, reservedEphemeral(path, virtual.Spec.EphemeralContainers)...)
}

// serviceEnv points in-cluster clients at the virtual apiserver. The host
// kubelet injects its own `kubernetes` Service's variables into every
// container whatever enableServiceLinks says; a container variable of the
// same name overrides them, so the whole family is set here, ahead of the
// tenant's own variables: a tenant entry of the same name still wins, as
// it would over its virtual cluster's kubelet, and a tenant `$(VAR)`
// reference expands to the virtual value, never the host's.
func (t *podTranslator) serviceEnv(env []corev1.EnvVar) []corev1.EnvVar {
	family := apiServerEnv(t.cfg)
	if family == nil {
		return env
	}
	return append(family, env...)
}

// apiServerEnv is what a virtual cluster's own kubelet would inject for its
// `kubernetes` Service (envvars.FromServices: one TCP port named https) if
// that Service were the virtual apiserver at APIServerHost:APIServerPort,
// plus, when the host Service's port differs, the host kubelet's
// KUBERNETES_PORT_<host port>_TCP* names holding the same virtual values:
// no variable of the family is left holding the host's. Nil when
// APIServerHost is empty (the host's variables are left alone).
func apiServerEnv(cfg Config) []corev1.EnvVar {
	if cfg.APIServerHost == "" {
		return nil
	}
	host, port := cfg.APIServerHost, strconv.Itoa(int(cfg.APIServerPort))
	url := "tcp://" + net.JoinHostPort(host, port)
	env := []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: host},
		{Name: "KUBERNETES_SERVICE_PORT", Value: port},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: port},
		{Name: "KUBERNETES_PORT", Value: url},
	}
	names := []int32{cfg.APIServerPort}
	if hostPort := cfg.hostAPIServicePort(); hostPort != cfg.APIServerPort {
		names = append(names, hostPort)
	}
	for _, named := range names {
		prefix := fmt.Sprintf("KUBERNETES_PORT_%d_TCP", named)
		env = append(env,
			corev1.EnvVar{Name: prefix, Value: url},
			corev1.EnvVar{Name: prefix + "_PROTO", Value: "tcp"},
			corev1.EnvVar{Name: prefix + "_PORT", Value: port},
			corev1.EnvVar{Name: prefix + "_ADDR", Value: host},
		)
	}
	return env
}

var (
	// sameOnBothSides are downward-API paths whose host value is the
	// virtual value: the node and addresses are the host's on both sides.
	sameOnBothSides = regexp.MustCompile(`^(spec\.nodeName|status\.hostIPs?|status\.podIPs?)$`)
	// subscripted are references to one label or annotation.
	subscripted = regexp.MustCompile(`^metadata\.(labels|annotations)\['([^']*)'\]$`)
	// fromAnnotation are the paths whose host value differs, answered from
	// the host annotation holding the virtual value.
	fromAnnotation = map[string]string{
		"metadata.name":           AnnotationName,
		"metadata.namespace":      AnnotationNamespace,
		"spec.serviceAccountName": AnnotationServiceAccount,
		"metadata.uid":            AnnotationUID,
	}
)

// fieldRef makes a downward-API reference read the virtual value. A label
// or annotation is read under its host key (TenantKey), where the host pod
// carries the tenant's value. A whole label or annotation map is for
// volume files only (downwardAPIItems), as Kubernetes has it.
func (t *podTranslator) fieldRef(path *field.Path, ref *corev1.ObjectFieldSelector) {
	if ref == nil {
		return
	}
	if key, ok := fromAnnotation[ref.FieldPath]; ok {
		ref.FieldPath = fmt.Sprintf("metadata.annotations['%s']", key)
		return
	}
	if m := subscripted.FindStringSubmatch(ref.FieldPath); m != nil {
		kind, key := m[1], m[2]
		switch {
		case kind == "annotations" && key == AnnotationSyncID:
			// The same on both pods of the pair.
		case kind == "annotations" && key == AnnotationHostName:
			ref.FieldPath = "metadata.name"
		default:
			// Checked here: the host key of an invalid key may be valid, and
			// the host sees the pod before the virtual apiserver validates it.
			check := validation.IsQualifiedName
			if kind == "annotations" {
				check = func(k string) []string { return validation.IsQualifiedName(strings.ToLower(k)) }
			}
			for _, msg := range check(key) {
				t.errs = append(t.errs, field.Invalid(path, ref.FieldPath, msg))
			}
			ref.FieldPath = fmt.Sprintf("metadata.%s['%s']", kind, TenantKey(key))
		}
		return
	}
	switch {
	case ref.FieldPath == "metadata.labels" || ref.FieldPath == "metadata.annotations":
		t.errs = append(t.errs, field.Invalid(path, ref.FieldPath, "a whole label or annotation map can be read only into a downward-API volume file; reference single keys, as "+ref.FieldPath+"['key']"))
	case !sameOnBothSides.MatchString(ref.FieldPath):
		t.errs = append(t.errs, field.Invalid(path, ref.FieldPath, "the virtual pod's value cannot be provided on the host"))
	}
}

// annotationRefs lists the annotation keys the pod's downward-API
// references read, in containers of every kind and in volumes.
func annotationRefs(spec *corev1.PodSpec) []string {
	var keys []string
	add := func(ref *corev1.ObjectFieldSelector) {
		if ref == nil {
			return
		}
		if m := subscripted.FindStringSubmatch(ref.FieldPath); m != nil && m[1] == "annotations" {
			keys = append(keys, m[2])
		}
	}
	env := func(env []corev1.EnvVar) {
		for _, e := range env {
			if e.ValueFrom != nil {
				add(e.ValueFrom.FieldRef)
			}
		}
	}
	for i := range spec.InitContainers {
		env(spec.InitContainers[i].Env)
	}
	for i := range spec.Containers {
		env(spec.Containers[i].Env)
	}
	for i := range spec.EphemeralContainers {
		env(spec.EphemeralContainers[i].Env)
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.DownwardAPI != nil {
			for _, item := range v.DownwardAPI.Items {
				add(item.FieldRef)
			}
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.DownwardAPI != nil {
					for _, item := range src.DownwardAPI.Items {
						add(item.FieldRef)
					}
				}
			}
		}
	}
	return keys
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
