package translate

import (
	"encoding/json"
	"regexp"

	corev1 "k8s.io/api/core/v1"
)

// Container lists of a pod spec, as ContainerList names them and as event
// field paths spell them.
const (
	ListContainers          = "containers"
	ListInitContainers      = "initContainers"
	ListEphemeralContainers = "ephemeralContainers"
)

// ContainerList names the list of spec that holds container name, or "".
func ContainerList(spec *corev1.PodSpec, name string) string {
	for _, c := range spec.Containers {
		if c.Name == name {
			return ListContainers
		}
	}
	for _, c := range spec.InitContainers {
		if c.Name == name {
			return ListInitContainers
		}
	}
	for _, c := range spec.EphemeralContainers {
		if c.Name == name {
			return ListEphemeralContainers
		}
	}
	return ""
}

// AddedByReflector reports whether the host pod's ephemeral container name
// is one the reflector added: its entry in the host pod's managed fields
// belongs to the reflector's field manager. Ephemeral containers are the
// one list the host can add to after podbridge created the pod (a host
// operator's kubectl debug), and a tenant can give one of its own the same
// name; the reflector then adds nothing (the host has as many), and a name
// match alone would carry the tenant into the operator's container.
func AddedByReflector(host *corev1.Pod, name string) bool {
	key, err := json.Marshal(map[string]string{"name": name})
	if err != nil {
		return false
	}
	for _, m := range host.ManagedFields {
		if m.Manager != FieldManagerReflector || m.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Spec struct {
				Ephemeral map[string]map[string]json.RawMessage `json:"f:ephemeralContainers"`
			} `json:"f:spec"`
		}
		if json.Unmarshal(m.FieldsV1.GetRawBytes(), &fields) != nil {
			continue
		}
		if _, ok := fields.Spec.Ephemeral["k:"+string(key)]["."]; ok {
			return true
		}
	}
	return false
}

// carriedList names the list container name is in when podbridge carries
// it for the virtual pod, or "": the same list of both specs, and, for an
// ephemeral container, one the reflector added. Only such a container is
// the tenant's to hear about.
func carriedList(virtual, host *corev1.Pod, name string) string {
	list := ContainerList(&virtual.Spec, name)
	if list == "" || ContainerList(&host.Spec, name) != list ||
		(list == ListEphemeralContainers && !AddedByReflector(host, name)) {
		return ""
	}
	return list
}

// containerFieldPath matches the field path an event about one container
// of a pod carries, as the kubelet writes it: spec.containers{name}.
var containerFieldPath = regexp.MustCompile(`^spec\.(containers|initContainers|ephemeralContainers)\{([^{}]+)\}$`)

// EventConcernsVirtualPod reports whether a host event about hostPod says
// only what its virtual pod's tenant may see: an event about the pod as a
// whole, or about a container podbridge carries for it (carriedList) in
// the list the field path names. An event about a container only the
// host pod has (a host operator's debug container) or with a field path of
// another form says nothing of the tenant's.
func EventConcernsVirtualPod(e *corev1.Event, virtual, hostPod *corev1.Pod) bool {
	path := e.InvolvedObject.FieldPath
	if path == "" {
		return true
	}
	m := containerFieldPath.FindStringSubmatch(path)
	if m == nil {
		return false
	}
	list, name := m[1], m[2]
	return carriedList(virtual, hostPod, name) == list
}
