package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// AnnotationAdmittedSpec records on a host pod the fingerprint of the
// virtual pod spec it was translated from (see AdmittedSpec). Mutating
// webhooks that run after podbridge's (a sidecar injector) change the pod
// after its host pod was made; the reflector compares this with the stored
// virtual pod before it releases the host pod. Only podbridge writes host
// pods, so the tenant cannot forge it.
const AnnotationAdmittedSpec = Prefix + "admitted-spec"

// admittedSpecVersion prefixes the fingerprint: a podbridge that blanks
// other fields compares only fingerprints of its own version, so an
// upgrade never reports running pods as different.
const admittedSpecVersion = "v1"

// AdmittedSpec is the fingerprint of a virtual pod's spec as far as it
// cannot change after creation: a hash, plus the names of its containers,
// init containers and volumes, so a difference can be named.
type AdmittedSpec struct {
	Hash           string
	Containers     []string
	InitContainers []string
	Volumes        []string
}

// AdmittedSpecOf fingerprints the virtual pod's spec with the fields
// Kubernetes lets a pod change later blanked (images, resources and
// resize policies, activeDeadlineSeconds, tolerations, scheduling gates,
// node selection, ephemeral containers, nodeName): the reflector carries
// those as updates, so only what was fixed at creation counts. It is taken
// from the virtual spec, not the translation, so a change of podbridge's
// configuration or translation does not make every pod differ.
func AdmittedSpecOf(virtual *corev1.Pod) AdmittedSpec {
	spec := virtual.Spec.DeepCopy()
	spec.NodeName = ""
	spec.EphemeralContainers = nil
	spec.ActiveDeadlineSeconds = nil
	spec.Tolerations = nil
	spec.SchedulingGates = nil
	spec.NodeSelector = nil
	spec.Resources = nil
	if spec.Affinity != nil {
		spec.Affinity.NodeAffinity = nil
		if *spec.Affinity == (corev1.Affinity{}) {
			spec.Affinity = nil
		}
	}
	blank := func(cs []corev1.Container) {
		for i := range cs {
			cs[i].Image = ""
			cs[i].Resources = corev1.ResourceRequirements{}
			cs[i].ResizePolicy = nil
		}
	}
	blank(spec.Containers)
	blank(spec.InitContainers)
	// Marshalling plain API structs cannot fail; map keys are sorted.
	raw, _ := json.Marshal(spec)
	sum := sha256.Sum256(raw)
	names := func(cs []corev1.Container) []string {
		out := make([]string, len(cs))
		for i := range cs {
			out[i] = cs[i].Name
		}
		return out
	}
	volumes := make([]string, len(spec.Volumes))
	for i := range spec.Volumes {
		volumes[i] = spec.Volumes[i].Name
	}
	return AdmittedSpec{
		Hash:           hex.EncodeToString(sum[:16]),
		Containers:     names(spec.Containers),
		InitContainers: names(spec.InitContainers),
		Volumes:        volumes,
	}
}

// String is the annotation value: "v1:<hash>;c=a,b;i=x;v=vol". Names are
// DNS labels, so neither separator occurs in them.
func (a AdmittedSpec) String() string {
	return fmt.Sprintf("%s:%s;c=%s;i=%s;v=%s", admittedSpecVersion, a.Hash,
		strings.Join(a.Containers, ","), strings.Join(a.InitContainers, ","), strings.Join(a.Volumes, ","))
}

// ParseAdmittedSpec reads an AnnotationAdmittedSpec value. It reports
// false for an absent value, another version's or one it cannot read: such
// a host pod is not compared.
func ParseAdmittedSpec(value string) (AdmittedSpec, bool) {
	rest, ok := strings.CutPrefix(value, admittedSpecVersion+":")
	if !ok {
		return AdmittedSpec{}, false
	}
	parts := strings.Split(rest, ";")
	if len(parts) != 4 || parts[0] == "" {
		return AdmittedSpec{}, false
	}
	a := AdmittedSpec{Hash: parts[0]}
	for _, p := range parts[1:] {
		key, list, ok := strings.Cut(p, "=")
		if !ok {
			return AdmittedSpec{}, false
		}
		names := []string{}
		if list != "" {
			names = strings.Split(list, ",")
		}
		switch key {
		case "c":
			a.Containers = names
		case "i":
			a.InitContainers = names
		case "v":
			a.Volumes = names
		default:
			return AdmittedSpec{}, false
		}
	}
	return a, true
}

// SpecDifference describes how the stored spec differs from the admitted
// one, for the tenant: the containers, init containers and volumes added
// or removed, else that other fields changed. It is "" when they do not
// differ.
func SpecDifference(admitted, stored AdmittedSpec) string {
	if admitted.Hash == stored.Hash {
		return ""
	}
	var parts []string
	diff := func(what string, before, after []string) {
		if added := missing(after, before); len(added) > 0 {
			parts = append(parts, what+" added: "+strings.Join(added, ", "))
		}
		if removed := missing(before, after); len(removed) > 0 {
			parts = append(parts, what+" removed: "+strings.Join(removed, ", "))
		}
	}
	diff("containers", admitted.Containers, stored.Containers)
	diff("init containers", admitted.InitContainers, stored.InitContainers)
	diff("volumes", admitted.Volumes, stored.Volumes)
	if len(parts) == 0 {
		return "spec fields fixed at creation changed"
	}
	return strings.Join(parts, "; ")
}

// missing returns the names of a that b lacks, in a's order.
func missing(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			out = append(out, n)
		}
	}
	return out
}
