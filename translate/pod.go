package translate

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Config is what translation needs to know about the two clusters.
type Config struct {
	// VCluster is the virtual cluster's name, unique among the virtual
	// clusters that share HostNamespace.
	VCluster string
	// HostNamespace receives every host pod of the virtual cluster.
	HostNamespace string
	// HostServiceAccount is the host service account host pods run as.
	// Its token is never mounted: workloads talk to the virtual apiserver.
	HostServiceAccount string
}

// Validate reports configuration errors by flag-like field name.
func (c Config) Validate() error {
	var errs field.ErrorList
	for name, value := range map[string]string{"vcluster": c.VCluster, "hostNamespace": c.HostNamespace, "hostServiceAccount": c.HostServiceAccount} {
		if value == "" {
			errs = append(errs, field.Required(field.NewPath(name), "must be set"))
		}
	}
	return errs.ToAggregate()
}

// AnnotationOwnerReferences keeps the virtual pod's owner references on the
// host pod as JSON: host objects must not point at virtual owners, but the
// information stays readable for operators.
const AnnotationOwnerReferences = Prefix + "owner-references"

// serviceAccountTokenVolumePrefix names the projected volume the virtual
// apiserver's ServiceAccount admission adds to every pod.
const serviceAccountTokenVolumePrefix = "kube-api-access-"

// HostPod translates a named virtual pod into the host pod that runs it.
// syncID identifies the pair (see AnnotationSyncID). Input the host cannot
// run safely or that podbridge cannot carry yet is refused with errors that
// name the virtual pod's field.
func HostPod(virtual *corev1.Pod, cfg Config, syncID string) (*corev1.Pod, field.ErrorList) {
	errs := validateVirtualPod(virtual)
	if len(errs) > 0 {
		return nil, errs
	}
	vspec := &virtual.Spec
	host := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        HostName(virtual.Name, virtual.Namespace, cfg.VCluster),
			Namespace:   cfg.HostNamespace,
			Labels:      hostLabels(virtual, cfg),
			Annotations: hostAnnotations(virtual, cfg, syncID),
		},
		Spec: corev1.PodSpec{
			Hostname:                      Hostname(virtual.Name),
			Subdomain:                     vspec.Subdomain,
			ServiceAccountName:            cfg.HostServiceAccount,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			RestartPolicy:                 vspec.RestartPolicy,
			TerminationGracePeriodSeconds: vspec.TerminationGracePeriodSeconds,
			ActiveDeadlineSeconds:         vspec.ActiveDeadlineSeconds,
			NodeSelector:                  maps.Clone(vspec.NodeSelector),
			Tolerations:                   vspec.Tolerations,
			Affinity:                      vspec.Affinity,
			SchedulingGates:               vspec.SchedulingGates,
			SecurityContext:               vspec.SecurityContext,
			DNSPolicy:                     vspec.DNSPolicy,
			DNSConfig:                     vspec.DNSConfig,
			ReadinessGates:                vspec.ReadinessGates,
			RuntimeClassName:              vspec.RuntimeClassName,
			Overhead:                      vspec.Overhead,
			Resources:                     vspec.Resources,
			OS:                            vspec.OS,
			HostUsers:                     vspec.HostUsers,
			ShareProcessNamespace:         vspec.ShareProcessNamespace,
			HostAliases:                   vspec.HostAliases,
			PreemptionPolicy:              vspec.PreemptionPolicy,
		},
	}
	dropped := map[string]bool{}
	for _, v := range vspec.Volumes {
		if strings.HasPrefix(v.Name, serviceAccountTokenVolumePrefix) && v.Projected != nil {
			dropped[v.Name] = true
			continue
		}
		hv := v.DeepCopy()
		if hv.DownwardAPI != nil {
			for i := range hv.DownwardAPI.Items {
				rewriteFieldRef(hv.DownwardAPI.Items[i].FieldRef)
			}
		}
		host.Spec.Volumes = append(host.Spec.Volumes, *hv)
	}
	host.Spec.InitContainers = hostContainers(vspec.InitContainers, dropped)
	host.Spec.Containers = hostContainers(vspec.Containers, dropped)
	return host, nil
}

func hostLabels(virtual *corev1.Pod, cfg Config) map[string]string {
	labels := maps.Clone(virtual.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedByValue
	labels[LabelVCluster] = cfg.VCluster
	labels[LabelNamespace] = virtual.Namespace
	return labels
}

func hostAnnotations(virtual *corev1.Pod, cfg Config, syncID string) map[string]string {
	annotations := maps.Clone(virtual.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationSyncID] = syncID
	annotations[AnnotationName] = virtual.Name
	annotations[AnnotationNamespace] = virtual.Namespace
	annotations[AnnotationVCluster] = cfg.VCluster
	if len(virtual.OwnerReferences) > 0 {
		// Marshalling plain API structs cannot fail.
		owners, _ := json.Marshal(virtual.OwnerReferences)
		annotations[AnnotationOwnerReferences] = string(owners)
	}
	return annotations
}

// virtualFieldPaths maps downward-API paths whose host value differs to the
// host annotation holding the virtual value.
var virtualFieldPaths = map[string]string{
	"metadata.name":      fmt.Sprintf("metadata.annotations['%s']", AnnotationName),
	"metadata.namespace": fmt.Sprintf("metadata.annotations['%s']", AnnotationNamespace),
}

func hostContainers(virtual []corev1.Container, droppedVolumes map[string]bool) []corev1.Container {
	if virtual == nil {
		return nil
	}
	out := make([]corev1.Container, 0, len(virtual))
	for i := range virtual {
		c := *virtual[i].DeepCopy()
		c.VolumeMounts = c.VolumeMounts[:0]
		for _, m := range virtual[i].VolumeMounts {
			if !droppedVolumes[m.Name] {
				c.VolumeMounts = append(c.VolumeMounts, m)
			}
		}
		if len(c.VolumeMounts) == 0 {
			c.VolumeMounts = nil
		}
		for j := range c.Env {
			if ref := c.Env[j].ValueFrom; ref != nil {
				rewriteFieldRef(ref.FieldRef)
			}
		}
		out = append(out, c)
	}
	return out
}

// rewriteFieldRef points a downward-API reference whose host value differs
// at the host annotation holding the virtual value.
func rewriteFieldRef(ref *corev1.ObjectFieldSelector) {
	if ref == nil {
		return
	}
	if path, ok := virtualFieldPaths[ref.FieldPath]; ok {
		ref.FieldPath = path
	}
}
