package translate

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Annotations on host copies of virtual ConfigMaps and Secrets, and on
// token Secrets.
const (
	// AnnotationSourceResourceVersion is the resourceVersion of the virtual
	// object a host copy was last made from: the reflector compares it to
	// the virtual object's to know the copy is current without reading it.
	AnnotationSourceResourceVersion = Prefix + "source-resource-version"
	// AnnotationCopyBytes is the size of a host copy's data, so the size
	// of all copies can be summed from their metadata.
	AnnotationCopyBytes = Prefix + "copy-bytes"
	// AnnotationTokenAudience and AnnotationTokenExpirationSeconds keep
	// what the pod's projected token asked for, to request it again.
	AnnotationTokenAudience          = Prefix + "token-audience"
	AnnotationTokenExpirationSeconds = Prefix + "token-expiration-seconds"
	// AnnotationTokenBoundUID is the UID of the virtual pod the token is
	// bound to. The host pod is released only once it matches.
	AnnotationTokenBoundUID = Prefix + "token-bound-uid"
	// AnnotationTokenRefreshAt is when the token must be replaced (RFC 3339).
	AnnotationTokenRefreshAt = Prefix + "token-refresh-at"
)

// HostConfigMap is the host copy of a virtual ConfigMap.
func HostConfigMap(virtual *corev1.ConfigMap, cfg Config) *corev1.ConfigMap {
	return withSize(&corev1.ConfigMap{
		ObjectMeta: copyMeta(virtual.Name, virtual.Namespace, virtual.ResourceVersion, cfg),
		Data:       virtual.Data,
		BinaryData: virtual.BinaryData,
		Immutable:  virtual.Immutable,
	})
}

// HostSecret is the host copy of a virtual Secret.
func HostSecret(virtual *corev1.Secret, cfg Config) *corev1.Secret {
	return withSize(&corev1.Secret{
		ObjectMeta: copyMeta(virtual.Name, virtual.Namespace, virtual.ResourceVersion, cfg),
		Type:       virtual.Type,
		Data:       virtual.Data,
		Immutable:  virtual.Immutable,
	})
}

// CopySize is the size of the data of a ConfigMap or Secret: keys and
// values, as the caps on host copies count it.
func CopySize(obj metav1.Object) int64 {
	var n int
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		for k, v := range o.Data {
			n += len(k) + len(v)
		}
		for k, v := range o.BinaryData {
			n += len(k) + len(v)
		}
	case *corev1.Secret:
		for k, v := range o.Data {
			n += len(k) + len(v)
		}
	}
	return int64(n)
}

func withSize[T metav1.Object](obj T) T {
	obj.GetAnnotations()[AnnotationCopyBytes] = strconv.FormatInt(CopySize(obj), 10)
	return obj
}

// HostTokenSecret is the host Secret holding token for tok of the virtual
// pod in namespace.
func HostTokenSecret(pod, namespace string, tok Token, token string, cfg Config) *corev1.Secret {
	meta := copyMeta(pod, namespace, "", cfg)
	meta.Name = tok.HostSecret
	meta.Annotations[AnnotationServiceAccount] = tok.ServiceAccount
	meta.Annotations[AnnotationTokenAudience] = tok.Audience
	meta.Annotations[AnnotationTokenExpirationSeconds] = strconv.FormatInt(tok.ExpirationSeconds, 10)
	return &corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{TokenKey: []byte(token)}}
}

// IsTokenSecret reports whether a host Secret of podbridge's holds a token
// rather than a copy of a virtual Secret.
func IsTokenSecret(s metav1.Object) bool {
	_, ok := s.GetAnnotations()[AnnotationTokenExpirationSeconds]
	return ok
}

// copyMeta is the metadata of the host object made from the virtual object
// namespace/name.
func copyMeta(name, namespace, sourceVersion string, cfg Config) metav1.ObjectMeta {
	meta := metav1.ObjectMeta{
		Name:      HostName(name, namespace, cfg.VCluster),
		Namespace: cfg.HostNamespace,
		Labels: map[string]string{
			LabelManagedBy: ManagedByValue,
			LabelVCluster:  cfg.VCluster,
			LabelNamespace: namespace,
		},
		Annotations: map[string]string{
			AnnotationName:      name,
			AnnotationNamespace: namespace,
			AnnotationVCluster:  cfg.VCluster,
		},
	}
	if sourceVersion != "" {
		meta.Annotations[AnnotationSourceResourceVersion] = sourceVersion
	}
	return meta
}

// SameCopy reports whether two host copies (ConfigMaps or Secrets) carry
// the same content and source version; metadata beyond that is ignored.
func SameCopy(a, b metav1.Object) bool {
	if a.GetAnnotations()[AnnotationSourceResourceVersion] != b.GetAnnotations()[AnnotationSourceResourceVersion] {
		return false
	}
	switch a := a.(type) {
	case *corev1.ConfigMap:
		b, ok := b.(*corev1.ConfigMap)
		return ok && apiequality.Semantic.DeepEqual(a.Data, b.Data) && apiequality.Semantic.DeepEqual(a.BinaryData, b.BinaryData)
	case *corev1.Secret:
		b, ok := b.(*corev1.Secret)
		return ok && a.Type == b.Type && apiequality.Semantic.DeepEqual(a.Data, b.Data)
	}
	return false
}

// PodDependencies lists the host objects a virtual pod needs while it
// runs: copies of the ConfigMaps and Secrets it reads and its token Secrets.
// It walks the pod the way HostPod does, so the two never disagree; a pod
// HostPod would refuse may list fewer.
func PodDependencies(pod *corev1.Pod, cfg Config) *Dependencies {
	t := &podTranslator{cfg: cfg, pod: pod, deps: &Dependencies{}}
	t.spec(field.NewPath("spec"))
	return t.deps
}
