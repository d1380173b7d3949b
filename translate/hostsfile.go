package translate

import (
	"path"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// The hosts file of a pod with a subdomain. The host kubelet writes each
// container's /etc/hosts with the pod's fully qualified name in the HOST
// namespace (<hostname>.<subdomain>.<host namespace>.svc.<domain>), so
// `hostname -f` would name the host namespace every tenant shares. A
// container that mounts something at /etc/hosts gets no kubelet file
// (kubelet_pods.go, makeMounts: mountEtcHostsFile is false for it), so
// podbridge gives such pods an init container that copies the kubelet's
// file into an emptyDir with the pod's own line (its IPs, from the downward
// API) naming the VIRTUAL namespace, and mounts that file at /etc/hosts in
// every other container. Pods without a subdomain are left alone: the
// kubelet's line then holds only the hostname, as on any cluster.
const (
	// HostsContainerName and HostsVolumeName are the init container and
	// the emptyDir podbridge adds; a tenant container, volume or volume
	// mount of these names is refused (see ReservedHostsNames).
	HostsContainerName = "podbridge-hosts"
	HostsVolumeName    = "podbridge-hosts"
	// HostsUID is the user and group the init container runs as (the
	// "nonroot" user of distroless images): never root.
	HostsUID int64 = 65532

	etcHosts = "/etc/hosts"
	// hostsDir is where the init container writes (not /podbridge-hosts:
	// the image's binary is there).
	hostsDir      = "/out"
	hostsFileName = "hosts"
	// hostsPodIPsEnv carries status.podIPs (comma-separated) to the init
	// container.
	hostsPodIPsEnv = "POD_IPS"
)

// hostsResources are the init container's requests and limits: a static
// binary that reads and writes one small file. They count in the host
// pod's requests (the largest init container's or the sum of the regular
// containers', whichever is larger) and in any host quota like a tenant
// container's.
var hostsResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
}

// HostsResources are the hosts-file container's requests and limits
// without pod-level resources: the most it ever has.
func HostsResources() corev1.ResourceRequirements { return *hostsResources.DeepCopy() }

// hostsResourcesWithin is hostsResources lowered, per resource, to the
// pod-level requests and limits the tenant set (spec.resources): the host
// refuses a container limit above the pod's, and containers' requests
// above the pod's.
func hostsResourcesWithin(pod *corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := *hostsResources.DeepCopy()
	if pod == nil {
		return out
	}
	lower := func(list corev1.ResourceList, name corev1.ResourceName, bound corev1.ResourceList) {
		if b, ok := bound[name]; ok && b.Cmp(list[name]) < 0 {
			list[name] = b.DeepCopy()
		}
	}
	for name := range out.Limits {
		lower(out.Limits, name, pod.Limits)
		lower(out.Requests, name, pod.Requests)
		lower(out.Requests, name, out.Limits)
	}
	return out
}

// hostsSizeLimit bounds the emptyDir: the file plus what a tenant's
// container appends to its /etc/hosts.
var hostsSizeLimit = resource.MustParse("1Mi")

// HostsFileInjection is what podbridge adds to a host pod for its hosts
// file: the init container (first of the init containers), the emptyDir
// (last of the volumes) and the mount each container gets.
type HostsFileInjection struct {
	Container corev1.Container
	Volume    corev1.Volume
	Mount     corev1.VolumeMount
}

// HostsFile is the injection the host pod of virtual gets under cfg, or nil
// when it gets none: no --hosts-image, no subdomain, a Windows pod (no
// kubelet hosts file), or no container left that does not mount its own
// /etc/hosts. Pure: the gate (package policy) computes it again to accept
// exactly this and nothing else.
func HostsFile(virtual *corev1.Pod, cfg Config) *HostsFileInjection {
	s := &virtual.Spec
	if cfg.HostsImage == "" || s.Subdomain == "" || (s.OS != nil && s.OS.Name == corev1.Windows) {
		return nil
	}
	if !slices.ContainsFunc(s.InitContainers, getsHostsFile) && !slices.ContainsFunc(s.Containers, getsHostsFile) {
		return nil
	}
	hostname := s.Hostname
	if hostname == "" {
		hostname = Hostname(virtual.Name)
	}
	fqdn := hostname + "." + s.Subdomain + "." + virtual.Namespace + ".svc." + cfg.clusterDomain()
	return &HostsFileInjection{
		Container: corev1.Container{
			Name:    HostsContainerName,
			Image:   cfg.HostsImage,
			Command: []string{"/podbridge-hosts"},
			Args:    []string{"--hostname=" + hostname, "--fqdn=" + fqdn, "--out=" + path.Join(hostsDir, hostsFileName)},
			Env: []corev1.EnvVar{{Name: hostsPodIPsEnv, ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIPs"},
			}}},
			Resources:    hostsResourcesWithin(s.Resources),
			VolumeMounts: []corev1.VolumeMount{{Name: HostsVolumeName, MountPath: hostsDir}},
			// Set as the apiserver defaults them, so the host pod as stored
			// equals this (the gate compares it on every reflector write).
			TerminationMessagePath:   corev1.TerminationMessagePathDefault,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			ImagePullPolicy:          corev1.PullIfNotPresent,
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:                ptr.To(HostsUID),
				RunAsGroup:               ptr.To(HostsUID),
				RunAsNonRoot:             ptr.To(true),
				Privileged:               ptr.To(false),
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		},
		Volume: corev1.Volume{Name: HostsVolumeName, VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(hostsSizeLimit.DeepCopy())},
		}},
		// Writable, as the kubelet's file is (root in the container may
		// add lines), and one file shared by the pod's containers, as the
		// kubelet's is.
		Mount: corev1.VolumeMount{Name: HostsVolumeName, MountPath: etcHosts, SubPath: hostsFileName},
	}
}

// getsHostsFile reports whether c gets podbridge's hosts file: it mounts
// nothing of its own at /etc/hosts. The kubelet leaves a container that
// does alone (its file is the tenant's, as on any cluster); the cleaned
// path counts, as the runtime mounts it there.
func getsHostsFile(c corev1.Container) bool {
	return !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return path.Clean(m.MountPath) == etcHosts
	})
}

// hostsFile adds HostsFile's injection to the translated spec: the init
// container first (tenant init containers read the file too), the volume
// last (the gate names volumes by the virtual pod's indices) and the
// mount to each container that getsHostsFile. Ephemeral containers keep
// the kubelet's file: they may not use subPath.
func (t *podTranslator) hostsFile(spec *corev1.PodSpec) {
	inject := HostsFile(t.pod, t.cfg)
	if inject == nil {
		return
	}
	mount := func(cs []corev1.Container) {
		for i := range cs {
			if getsHostsFile(cs[i]) {
				cs[i].VolumeMounts = append(slices.Clip(cs[i].VolumeMounts), inject.Mount)
			}
		}
	}
	mount(spec.InitContainers)
	mount(spec.Containers)
	spec.InitContainers = append([]corev1.Container{inject.Container}, spec.InitContainers...)
	spec.Volumes = append(slices.Clip(spec.Volumes), inject.Volume)
}

// ReservedHostsNames refuses what would collide with, or reach into, what
// podbridge adds to every host pod that needs it (HostsFile), whether or
// not this one does: a container of HostsContainerName (an ephemeral
// container targeting it too), a volume of HostsVolumeName, a mount of
// it. Refused always, so a pod's acceptance never depends on podbridge's
// configuration, and the reflector's re-creation of a stored pod never
// meets a collision.
func ReservedHostsNames(path *field.Path, s *corev1.PodSpec) field.ErrorList {
	var errs field.ErrorList
	const why = " is reserved for podbridge's hosts file"
	containers := func(p *field.Path, cs []corev1.Container) {
		for i := range cs {
			if cs[i].Name == HostsContainerName {
				errs = append(errs, field.Invalid(p.Index(i).Child("name"), cs[i].Name, "the container name "+HostsContainerName+why))
			}
			errs = append(errs, reservedMounts(p.Index(i).Child("volumeMounts"), cs[i].VolumeMounts)...)
		}
	}
	containers(path.Child("initContainers"), s.InitContainers)
	containers(path.Child("containers"), s.Containers)
	errs = append(errs, reservedEphemeral(path.Child("ephemeralContainers"), s.EphemeralContainers)...)
	for i := range s.Volumes {
		if s.Volumes[i].Name == HostsVolumeName {
			errs = append(errs, field.Invalid(path.Child("volumes").Index(i).Child("name"), s.Volumes[i].Name, "the volume name "+HostsVolumeName+why))
		}
	}
	return errs
}

func reservedEphemeral(p *field.Path, ec []corev1.EphemeralContainer) field.ErrorList {
	var errs field.ErrorList
	for i := range ec {
		if ec[i].Name == HostsContainerName {
			errs = append(errs, field.Invalid(p.Index(i).Child("name"), ec[i].Name, "the container name "+HostsContainerName+" is reserved for podbridge's hosts file"))
		}
		if ec[i].TargetContainerName == HostsContainerName {
			errs = append(errs, field.Invalid(p.Index(i).Child("targetContainerName"), ec[i].TargetContainerName, "podbridge's hosts-file container is not the tenant's to target"))
		}
		errs = append(errs, reservedMounts(p.Index(i).Child("volumeMounts"), ec[i].VolumeMounts)...)
	}
	return errs
}

func reservedMounts(p *field.Path, mounts []corev1.VolumeMount) field.ErrorList {
	var errs field.ErrorList
	for j := range mounts {
		if mounts[j].Name == HostsVolumeName {
			errs = append(errs, field.Invalid(p.Index(j).Child("name"), mounts[j].Name, "the volume "+HostsVolumeName+" is podbridge's hosts file, not the tenant's to mount"))
		}
	}
	return errs
}

// validateHostnames refuses a hostname or subdomain that is not a DNS
// label: mutating admission runs before the apiserver validates the pod,
// and both become the host pod's and part of the hosts file's line.
func validateHostnames(path *field.Path, s *corev1.PodSpec) field.ErrorList {
	var errs field.ErrorList
	for _, f := range []struct{ name, value string }{{"hostname", s.Hostname}, {"subdomain", s.Subdomain}} {
		if f.value == "" {
			continue
		}
		for _, msg := range validation.IsDNS1123Label(f.value) {
			errs = append(errs, field.Invalid(path.Child(f.name), f.value, msg))
		}
	}
	return errs
}
