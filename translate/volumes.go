package translate

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// supportedVolumeSources are the volume types of the restricted Pod
// Security Standard: none of them reaches outside the pod's own storage.
var supportedVolumeSources = []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}

func (t *podTranslator) volumes(path *field.Path, volumes []corev1.Volume) []corev1.Volume {
	if volumes == nil {
		return nil
	}
	out := make([]corev1.Volume, 0, len(volumes))
	for i := range volumes {
		v := volumes[i].DeepCopy()
		p := path.Index(i)
		switch src := &v.VolumeSource; {
		case src.EmptyDir != nil, src.Ephemeral != nil:
		case src.DownwardAPI != nil:
			t.downwardAPIItems(p.Child("downwardAPI", "items"), src.DownwardAPI.Items)
		case src.ConfigMap != nil:
			src.ConfigMap.Name = t.configMap(src.ConfigMap.Name, src.ConfigMap.Optional)
		case src.Secret != nil:
			src.Secret.SecretName = t.secret(src.Secret.SecretName, src.Secret.Optional)
		case src.PersistentVolumeClaim != nil:
			src.PersistentVolumeClaim.ClaimName = HostName(src.PersistentVolumeClaim.ClaimName, t.pod.Namespace, t.cfg.VCluster)
		case src.CSI != nil:
			if ref := src.CSI.NodePublishSecretRef; ref != nil {
				ref.Name = t.secret(ref.Name, nil)
			}
		case src.Projected != nil:
			t.projected(p.Child("projected", "sources"), v.Name, src.Projected.Sources)
		default:
			t.errs = append(t.errs, field.NotSupported(p, volumeType(v), supportedVolumeSources))
			continue
		}
		out = append(out, *v)
	}
	return out
}

// projected rewrites a projected volume's sources in place. A
// serviceAccountToken source becomes a Secret that podbridge fills with a
// token from the virtual apiserver, so the workload authenticates there.
func (t *podTranslator) projected(path *field.Path, volume string, sources []corev1.VolumeProjection) {
	for i := range sources {
		s := &sources[i]
		switch {
		case s.ConfigMap != nil:
			s.ConfigMap.Name = t.configMap(s.ConfigMap.Name, s.ConfigMap.Optional)
		case s.Secret != nil:
			s.Secret.Name = t.secret(s.Secret.Name, s.Secret.Optional)
		case s.DownwardAPI != nil:
			t.downwardAPIItems(path.Index(i).Child("downwardAPI", "items"), s.DownwardAPI.Items)
		case s.ServiceAccountToken != nil:
			tok := s.ServiceAccountToken
			name := t.token(volume, tok.Audience, tok.ExpirationSeconds)
			*s = corev1.VolumeProjection{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: name},
				Items:                []corev1.KeyToPath{{Key: TokenKey, Path: tok.Path}},
			}}
		default:
			t.errs = append(t.errs, field.NotSupported(path.Index(i), "this projection", []string{"configMap", "secret", "downwardAPI", "serviceAccountToken"}))
		}
	}
}

// downwardAPIItems translates a downward-API volume's files. A file of a
// whole label or annotation map (which only files may show) reads the host
// annotation holding the virtual map (downwardMaps).
func (t *podTranslator) downwardAPIItems(path *field.Path, items []corev1.DownwardAPIVolumeFile) {
	for j := range items {
		if ref := items[j].FieldRef; ref != nil && wholeMapAnnotation[ref.FieldPath] != "" {
			ref.FieldPath = fmt.Sprintf("metadata.annotations['%s']", wholeMapAnnotation[ref.FieldPath])
			continue
		}
		t.fieldRef(path.Index(j).Child("fieldRef", "fieldPath"), items[j].FieldRef)
	}
}

// volumeType names a volume's source for error messages.
func volumeType(v *corev1.Volume) string {
	switch s := v.VolumeSource; {
	case s.HostPath != nil:
		return "hostPath"
	case s.NFS != nil:
		return "nfs"
	case s.ISCSI != nil:
		return "iscsi"
	case s.Image != nil:
		return "image"
	default:
		return "this volume type"
	}
}
