package translate

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// HostPodUpdate applies to host the updates Kubernetes allows on an
// existing pod that virtual carries: container and init-container images,
// activeDeadlineSeconds, added tolerations (and changed tolerationSeconds),
// removed scheduling gates, labels and annotations; while the host pod is
// still gated, also added node selectors and a changed node affinity. It
// returns an updated copy and true, or host and false when nothing differs.
//
// Labels and annotations are carried as HostPod carries them: every label
// under its host key (TenantKey), annotations only when cfg.HostAnnotations
// allows them or the downward API reads them, so a tenant can neither forge
// nor drop podbridge's own keys nor reach host keys. A key the host pod
// should no longer have is removed only when one of managers (podbridge's
// field managers) owns it in the host pod's managedFields: keys the host's
// own controllers added (a CNI plugin's annotations, say) stay, and keys
// podbridge copied verbatim before it translated them go. The same rule
// applies to scheduling gates.
func HostPodUpdate(virtual, host *corev1.Pod, cfg Config, managers []string) (*corev1.Pod, bool) {
	// Parsed only when a key may have to go: most reconciles remove nothing.
	owned := sync.OnceValue(func() ownedKeys { return ownedByManagers(host.ManagedFields, managers) })
	out := updatableCopy(host)
	out.Labels = mergeTenantKeys(tenantLabels(virtual.Labels), host.Labels, func(k string) bool { return owned().labels[k] }, isPodbridgeLabel)
	out.Annotations = mergeTenantKeys(tenantAnnotations(virtual, cfg), host.Annotations, func(k string) bool { return owned().annotations[k] }, IsReserved)

	// Kept in step as the kubelet keeps the files that show them.
	maps.Copy(out.Annotations, downwardMaps(virtual))
	if len(virtual.Spec.EphemeralContainers) > 0 && out.Annotations[AnnotationUID] != string(virtual.UID) {
		// Ephemeral containers may read metadata.uid on a pod released
		// without it; annotations can still change, their spec cannot.
		out.Annotations[AnnotationUID] = string(virtual.UID)
	}
	spec, vspec := &out.Spec, &virtual.Spec
	setImages(spec.Containers, vspec.Containers)
	setImages(spec.InitContainers, vspec.InitContainers)
	if vspec.ActiveDeadlineSeconds != nil && !ptr.Equal(spec.ActiveDeadlineSeconds, vspec.ActiveDeadlineSeconds) {
		spec.ActiveDeadlineSeconds = ptr.To(*vspec.ActiveDeadlineSeconds)
	}
	for _, t := range vspec.Tolerations {
		i := slices.IndexFunc(spec.Tolerations, func(h corev1.Toleration) bool {
			return h.Key == t.Key && h.Operator == t.Operator && h.Value == t.Value && h.Effect == t.Effect
		})
		switch {
		case i < 0:
			spec.Tolerations = append(spec.Tolerations, *t.DeepCopy())
		case !ptr.Equal(spec.Tolerations[i].TolerationSeconds, t.TolerationSeconds):
			spec.Tolerations[i].TolerationSeconds = t.DeepCopy().TolerationSeconds
		}
	}
	if len(host.Spec.SchedulingGates) > 0 {
		// Kubernetes lets a gated pod's node selection narrow; the virtual
		// apiserver checked the change against the same rules.
		for k, v := range vspec.NodeSelector {
			if _, ok := spec.NodeSelector[k]; !ok {
				if spec.NodeSelector == nil {
					spec.NodeSelector = map[string]string{}
				}
				spec.NodeSelector[k] = v
			}
		}
		if na := nodeAffinity(&virtual.Spec); !apiequality.Semantic.DeepEqual(na, nodeAffinity(spec)) {
			if spec.Affinity == nil {
				spec.Affinity = &corev1.Affinity{}
			}
			spec.Affinity.NodeAffinity = na.DeepCopy()
		}
		// podbridge's own gate goes with ReleaseHostPod only.
		keep := map[string]bool{GateVirtualPod: true}
		for _, g := range vspec.SchedulingGates {
			keep[g.Name] = true
		}
		spec.SchedulingGates = slices.DeleteFunc(spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool {
			return !keep[g.Name] && owned().gates[g.Name]
		})
		if len(spec.SchedulingGates) == 0 {
			spec.SchedulingGates = nil
		}
	}

	if updatableEqual(out, host) {
		return host, false
	}
	return out, true
}

// updatableCopy copies host for HostPodUpdate: the fields it may change are
// copied, the rest is shared with host (a reconcile runs once per status
// change; copying and comparing whole pods was a fifth of its CPU). A
// container is copied shallowly: only its image changes.
func updatableCopy(host *corev1.Pod) *corev1.Pod {
	out := *host
	out.Labels, out.Annotations = maps.Clone(host.Labels), maps.Clone(host.Annotations)
	spec := &out.Spec
	spec.Containers = slices.Clone(host.Spec.Containers)
	spec.InitContainers = slices.Clone(host.Spec.InitContainers)
	spec.Tolerations = slices.Clone(host.Spec.Tolerations)
	spec.NodeSelector = maps.Clone(host.Spec.NodeSelector)
	spec.Affinity = host.Spec.Affinity.DeepCopy()
	spec.SchedulingGates = slices.Clone(host.Spec.SchedulingGates)
	return &out
}

// updatableEqual compares the fields updatableCopy copies.
func updatableEqual(a, b *corev1.Pod) bool {
	as, bs := &a.Spec, &b.Spec
	return maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		imagesEqual(as.Containers, bs.Containers) && imagesEqual(as.InitContainers, bs.InitContainers) &&
		ptr.Equal(as.ActiveDeadlineSeconds, bs.ActiveDeadlineSeconds) &&
		apiequality.Semantic.DeepEqual(as.Tolerations, bs.Tolerations) &&
		maps.Equal(as.NodeSelector, bs.NodeSelector) &&
		apiequality.Semantic.DeepEqual(as.Affinity, bs.Affinity) &&
		slices.Equal(as.SchedulingGates, bs.SchedulingGates)
}

func imagesEqual(a, b []corev1.Container) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.Container) bool { return x.Image == y.Image })
}

// ReleaseHostPod gives host the virtual pod's UID and removes
// GateVirtualPod, once the virtual pod exists and its tokens are bound. It
// returns an updated copy and true, or host and false when host is not
// held by the gate.
func ReleaseHostPod(virtual, host *corev1.Pod) (*corev1.Pod, bool) {
	if virtual.UID == "" || !HeldForVirtualPod(host) {
		return host, false
	}
	out := host.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationUID] = string(virtual.UID)
	out.Spec.SchedulingGates = slices.DeleteFunc(out.Spec.SchedulingGates, isGateVirtualPod)
	if len(out.Spec.SchedulingGates) == 0 {
		out.Spec.SchedulingGates = nil
	}
	return out, true
}

// HeldForVirtualPod reports whether host waits behind GateVirtualPod.
func HeldForVirtualPod(host *corev1.Pod) bool {
	return slices.ContainsFunc(host.Spec.SchedulingGates, isGateVirtualPod)
}

func isGateVirtualPod(g corev1.PodSchedulingGate) bool { return g.Name == GateVirtualPod }

// HostPodResize applies the virtual pod's container resources and resize
// policies to host, for the pods/resize subresource (in-place resize). It
// returns an updated copy and true, or host and false when nothing differs.
// Only the resources the virtual pod names are set: the host may have added
// others (a LimitRange's defaults), and a resize cannot remove any.
func HostPodResize(virtual, host *corev1.Pod) (*corev1.Pod, bool) {
	// As in HostPodUpdate, only what a resize changes is copied and compared.
	out := *host
	out.Spec.Containers = resizableCopy(host.Spec.Containers)
	out.Spec.InitContainers = resizableCopy(host.Spec.InitContainers)
	out.Spec.Resources = host.Spec.Resources.DeepCopy()
	resizeContainers(out.Spec.Containers, virtual.Spec.Containers)
	resizeContainers(out.Spec.InitContainers, virtual.Spec.InitContainers)
	if virtual.Spec.Resources != nil {
		if out.Spec.Resources == nil {
			out.Spec.Resources = &corev1.ResourceRequirements{}
		}
		mergeResources(out.Spec.Resources, virtual.Spec.Resources)
	}
	if resourcesEqual(out.Spec.Containers, host.Spec.Containers) && resourcesEqual(out.Spec.InitContainers, host.Spec.InitContainers) &&
		apiequality.Semantic.DeepEqual(out.Spec.Resources, host.Spec.Resources) {
		return host, false
	}
	return &out, true
}

// resizableCopy copies containers with their resources, which a resize
// changes in place; the rest of each container is shared.
func resizableCopy(containers []corev1.Container) []corev1.Container {
	out := slices.Clone(containers)
	for i := range out {
		out[i].Resources = *containers[i].Resources.DeepCopy()
	}
	return out
}

func resourcesEqual(a, b []corev1.Container) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.Container) bool {
		return apiequality.Semantic.DeepEqual(x.Resources, y.Resources) && slices.Equal(x.ResizePolicy, y.ResizePolicy)
	})
}

// isPodbridgeLabel reports whether podbridge sets the host label key itself.
func isPodbridgeLabel(key string) bool {
	return IsReserved(key) || key == LabelManagedBy
}

// mergeTenantKeys returns host's map with the tenant's keys (already under
// their host keys) set and the other keys podbridge owns removed, except
// its own.
func mergeTenantKeys(tenant, host map[string]string, owned, podbridges func(string) bool) map[string]string {
	out := maps.Clone(host)
	for k, v := range tenant {
		if podbridges(k) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	for k := range host {
		if _, kept := tenant[k]; !kept && !podbridges(k) && owned(k) {
			delete(out, k)
		}
	}
	if len(out) == 0 && host == nil {
		return nil
	}
	return out
}

func setImages(host, virtual []corev1.Container) {
	for i := range host {
		if j := slices.IndexFunc(virtual, func(c corev1.Container) bool { return c.Name == host[i].Name }); j >= 0 {
			host[i].Image = virtual[j].Image
		}
	}
}

func resizeContainers(host, virtual []corev1.Container) {
	for i := range host {
		j := slices.IndexFunc(virtual, func(c corev1.Container) bool { return c.Name == host[i].Name })
		if j < 0 {
			continue
		}
		mergeResources(&host[i].Resources, &virtual[j].Resources)
		if len(virtual[j].ResizePolicy) > 0 {
			host[i].ResizePolicy = slices.Clone(virtual[j].ResizePolicy)
		}
	}
}

func mergeResources(host, virtual *corev1.ResourceRequirements) {
	merge := func(dst *corev1.ResourceList, src corev1.ResourceList) {
		for name, q := range src {
			if cur, ok := (*dst)[name]; ok && cur.Cmp(q) == 0 {
				continue
			}
			if *dst == nil {
				*dst = corev1.ResourceList{}
			}
			(*dst)[name] = q.DeepCopy()
		}
	}
	merge(&host.Requests, virtual.Requests)
	merge(&host.Limits, virtual.Limits)
}

func nodeAffinity(spec *corev1.PodSpec) *corev1.NodeAffinity {
	if spec.Affinity == nil {
		return nil
	}
	return spec.Affinity.NodeAffinity
}

// ownedKeys are the label and annotation keys and scheduling gate names a
// set of field managers owns on an object.
type ownedKeys struct {
	labels, annotations, gates map[string]bool
}

// ownedByManagers reads the keys managers own from managedFields (fieldsV1:
// "f:<key>" for a map entry, `k:{"name":…}` for an associative list entry).
// Entries it cannot parse own nothing, so nothing is removed on their account.
func ownedByManagers(entries []metav1.ManagedFieldsEntry, managers []string) ownedKeys {
	o := ownedKeys{labels: map[string]bool{}, annotations: map[string]bool{}, gates: map[string]bool{}}
	for _, e := range entries {
		if !slices.Contains(managers, e.Manager) || e.Subresource != "" || e.FieldsV1 == nil {
			continue
		}
		var root fieldSet
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &root); err != nil {
			continue
		}
		meta := root.child("f:metadata")
		for k := range meta.child("f:labels") {
			if key, ok := strings.CutPrefix(k, "f:"); ok {
				o.labels[key] = true
			}
		}
		for k := range meta.child("f:annotations") {
			if key, ok := strings.CutPrefix(k, "f:"); ok {
				o.annotations[key] = true
			}
		}
		for k := range root.child("f:spec").child("f:schedulingGates") {
			raw, ok := strings.CutPrefix(k, "k:")
			if !ok {
				continue
			}
			var gate struct {
				Name string `json:"name"`
			}
			if json.Unmarshal([]byte(raw), &gate) == nil && gate.Name != "" {
				o.gates[gate.Name] = true
			}
		}
	}
	return o
}

// OwnedKeysFields cuts a fieldsV1 tree down to what ownedByManagers reads:
// the label and annotation keys and the scheduling gates. A pod's create
// entry lists every field of its spec; the reflector's cache keeps only
// this. A tree it cannot parse is returned as it is.
//
// It decodes into a struct, which skips the rest of the tree without
// building it: a third of the time of decoding each level into a map,
// which the reflector paid for every host pod at its start. encoding/json
// matches struct keys regardless of case; the trees are the apiserver's,
// whose keys are exact.
func OwnedKeysFields(raw []byte) []byte {
	var root struct {
		Metadata struct {
			Labels      json.RawMessage `json:"f:labels"`
			Annotations json.RawMessage `json:"f:annotations"`
		} `json:"f:metadata"`
		Spec struct {
			SchedulingGates json.RawMessage `json:"f:schedulingGates"`
		} `json:"f:spec"`
	}
	if err := json.Unmarshal(raw, &root); err != nil {
		return raw
	}
	out := map[string]map[string]json.RawMessage{}
	keep := func(parent, child string, v json.RawMessage) {
		if v == nil {
			return
		}
		if out[parent] == nil {
			out[parent] = map[string]json.RawMessage{}
		}
		out[parent][child] = v
	}
	keep("f:metadata", "f:labels", root.Metadata.Labels)
	keep("f:metadata", "f:annotations", root.Metadata.Annotations)
	keep("f:spec", "f:schedulingGates", root.Spec.SchedulingGates)
	cut, err := json.Marshal(out)
	if err != nil {
		return raw
	}
	return cut
}

// fieldSet is one level of a managedFields fieldsV1 tree.
type fieldSet map[string]json.RawMessage

// child returns the set under key, or nil when there is none.
func (f fieldSet) child(key string) fieldSet {
	raw, ok := f[key]
	if !ok {
		return nil
	}
	var c fieldSet
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil
	}
	return c
}
