package translate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Host annotations holding a virtual pod's whole label and annotation
// maps, formatted as the kubelet writes a downward-API file of
// metadata.labels or metadata.annotations. The host pod's own maps hold
// host keys, so a file of them would show the tenant the host's view; a
// reference to the whole map reads one of these annotations instead, and
// the reflector keeps them in step with the virtual pod (HostPodUpdate),
// as the kubelet keeps such files in step with the pod.
const (
	AnnotationDownwardLabels      = Prefix + "downward-labels"
	AnnotationDownwardAnnotations = Prefix + "downward-annotations"
)

// wholeMapAnnotation is, for a whole-map downward-API path, the host
// annotation that holds it.
var wholeMapAnnotation = map[string]string{
	"metadata.labels":      AnnotationDownwardLabels,
	"metadata.annotations": AnnotationDownwardAnnotations,
}

// downwardMaps returns the host annotations holding the maps the virtual
// pod's downward-API volumes read whole: none for most pods.
func downwardMaps(virtual *corev1.Pod) map[string]string {
	var out map[string]string
	add := func(items []corev1.DownwardAPIVolumeFile) {
		for _, item := range items {
			if item.FieldRef == nil {
				continue
			}
			var m map[string]string
			switch item.FieldRef.FieldPath {
			case "metadata.labels":
				m = virtual.Labels
			case "metadata.annotations":
				m = virtual.Annotations
			default:
				continue
			}
			if out == nil {
				out = map[string]string{}
			}
			out[wholeMapAnnotation[item.FieldRef.FieldPath]] = formatMap(m)
		}
	}
	for i := range virtual.Spec.Volumes {
		v := &virtual.Spec.Volumes[i]
		if v.DownwardAPI != nil {
			add(v.DownwardAPI.Items)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.DownwardAPI != nil {
					add(src.DownwardAPI.Items)
				}
			}
		}
	}
	return out
}

// formatMap writes m as the kubelet writes a label or annotation map into
// a downward-API file: one key="value" line per key, sorted, values
// quoted as Go quotes strings, no newline after the last.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}
