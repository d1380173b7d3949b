package policy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podbridge/podbridge/translate"
)

// hostsFile checks the hosts-file injection (translate.HostsFile): the
// virtual pod names none of its reserved names, and the host pod carries
// exactly what translation adds for this pod under this configuration:
// the init container, first and equal in every field, the emptyDir, and
// that file mounted at /etc/hosts and nowhere else; or none of it. A
// tenant cannot reach the container or volume by a name of its own, and a
// translation that added anything else (another image, an environment
// variable, a mount of the volume elsewhere) is refused.
func (g Gate) hostsFile(spec *field.Path, virtual, host *corev1.Pod) field.ErrorList {
	errs := translate.ReservedHostsNames(spec, &virtual.Spec)
	want := translate.HostsFile(virtual, g.Config)
	s := &host.Spec
	const not = "the host pod must carry exactly podbridge's hosts-file injection for this pod"
	for i := range s.InitContainers {
		if s.InitContainers[i].Name != translate.HostsContainerName {
			continue
		}
		if want == nil || i != 0 || !sameInjected(&s.InitContainers[i], &want.Container) {
			errs = append(errs, field.Forbidden(spec.Child("initContainers").Index(i), not))
		}
	}
	if want != nil && (len(s.InitContainers) == 0 || s.InitContainers[0].Name != translate.HostsContainerName) {
		errs = append(errs, field.Required(spec.Child("initContainers").Index(0), not))
	}
	for i := range s.Volumes {
		if s.Volumes[i].Name != translate.HostsVolumeName {
			continue
		}
		if want == nil || i != len(s.Volumes)-1 || !apiequality.Semantic.DeepEqual(s.Volumes[i], want.Volume) {
			errs = append(errs, field.Forbidden(spec.Child("volumes").Index(i), not))
		}
	}
	mounts := func(p *field.Path, cs []corev1.Container, from int) {
		for i := from; i < len(cs); i++ {
			for j, m := range cs[i].VolumeMounts {
				if m.Name == translate.HostsVolumeName && (want == nil || !apiequality.Semantic.DeepEqual(m, want.Mount)) {
					errs = append(errs, field.Forbidden(p.Index(i).Child("volumeMounts").Index(j), not))
				}
			}
		}
	}
	// The injected container, compared whole above, mounts the folder.
	from := 0
	if want != nil && len(s.InitContainers) > 0 && s.InitContainers[0].Name == translate.HostsContainerName {
		from = 1
	}
	mounts(spec.Child("initContainers"), s.InitContainers, from)
	mounts(spec.Child("containers"), s.Containers, 0)
	for i := range s.EphemeralContainers {
		if s.EphemeralContainers[i].Name == translate.HostsContainerName || slices.ContainsFunc(s.EphemeralContainers[i].VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == translate.HostsVolumeName
		}) {
			errs = append(errs, field.Forbidden(spec.Child("ephemeralContainers").Index(i), not))
		}
	}
	return errs
}

// sameInjected reports whether host, the host pod's hosts-file container
// (as translated, or as the host stored it: the gate checks every write of
// the reflector's too), is want. Resources are compared against the most
// translation ever gives (translate.HostsResources): it lowers them to the
// tenant's pod-level resources, which a resize may change after the host
// pod was made, and the host's admission may add resource names (a
// LimitRange's defaults). Neither widens anything; every other field must
// be want's.
func sameInjected(host, want *corev1.Container) bool {
	h, w := host.DeepCopy(), want.DeepCopy()
	most := translate.HostsResources()
	for _, l := range []struct{ host, most corev1.ResourceList }{{h.Resources.Requests, most.Requests}, {h.Resources.Limits, most.Limits}} {
		for name, q := range l.most {
			if got, ok := l.host[name]; !ok || got.Sign() <= 0 || got.Cmp(q) > 0 {
				return false
			}
		}
	}
	h.Resources, w.Resources = corev1.ResourceRequirements{}, corev1.ResourceRequirements{}
	return apiequality.Semantic.DeepEqual(h, w)
}
