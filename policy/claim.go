package policy

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podbridge/podbridge/translate"
)

// claimSpecFields classifies every field of corev1.PersistentVolumeClaimSpec
// by its JSON name, as podSpecFields does for pods: a test fails when
// Kubernetes adds a field this table does not name, and docs/storage.md's
// table is checked against it. Metadata: labels reach the host under
// tenant keys; annotations never reach it (the host's provisioners and
// binder act on claim annotations), and podbridge's keys and the
// provisioning annotations are refused.
var claimSpecFields = map[string]fieldRule{
	"accessModes":               {Carried, "immutable once the host claim exists"},
	"selector":                  {Refused, "selects pre-provisioned host volumes, which may be another tenant's"},
	"resources":                 {Carried, "requests within --max-claim-storage; growth is carried to the host claim (resize where the class allows it)"},
	"volumeName":                {Refused, "names a host PersistentVolume, which may be another tenant's; the host binds, and only its binding comes back on the virtual claim"},
	"storageClassName":          {AllowListed, "--allowed-storage-classes, or none with --allow-default-storage-class (the policy of generic ephemeral volumes); an empty class is refused"},
	"volumeMode":                {Carried, ""},
	"dataSource":                {Translated, "a PersistentVolumeClaim of the same virtual namespace only, pointed at its host claim; snapshots and other kinds refused"},
	"dataSourceRef":             {Translated, "as dataSource; a namespace (a cross-namespace source) refused"},
	"volumeAttributesClassName": {Refused, "podbridge has no allow-list of volume attributes classes yet"},
}

// claimSpec checks what a claim and a generic ephemeral volume's claim
// template share: the storage class (one policy for both), and no
// pre-provisioned volume by name or selector.
func (g Gate) claimSpec(spec *field.Path, s *corev1.PersistentVolumeClaimSpec) field.ErrorList {
	errs := g.storageClass(spec.Child("storageClassName"), s.StorageClassName)
	if s.VolumeName != "" {
		errs = append(errs, field.Forbidden(spec.Child("volumeName"), "a claim may not bind a named persistent volume: the host binds, and a named volume may be another tenant's"))
	}
	if s.Selector != nil {
		errs = append(errs, field.Forbidden(spec.Child("selector"), "a claim may not select pre-provisioned volumes: they may be another tenant's"))
	}
	if s.VolumeAttributesClassName != nil {
		errs = append(errs, field.Forbidden(spec.Child("volumeAttributesClassName"), "podbridge has no allow-list of volume attributes classes yet"))
	}
	return errs
}

// CheckClaim returns why the claim virtual (the object admitted or stored
// in the virtual cluster) may not be carried to the host; nil when it may.
// current is its host claim as the host holds it now (nil when there is
// none): once it exists, only the resource requests may change, and the
// binding the host decided (its volume name and the binder's annotations)
// may come back on the virtual claim, no other. host is
// the host claim a write would leave: it must be in the host namespace
// with podbridge's labels, carry no tenant annotation, and a data source
// must be the host claim of a claim of the same virtual namespace,
// whatever translation did. Errors name the virtual field and, for the
// storage class, the allowed values and the platform flag.
func (g Gate) CheckClaim(virtual, current, host *corev1.PersistentVolumeClaim) field.ErrorList {
	spec := field.NewPath("spec")
	v := &virtual.Spec
	annotations := maps.Clone(virtual.Annotations)
	// The two keys podbridge sets on the virtual claim; the webhook checks them.
	delete(annotations, translate.AnnotationSyncID)
	delete(annotations, translate.AnnotationHostName)
	if current != nil {
		// The binding the host decided comes back on the virtual claim
		// (the reflector mirrors it), and only that binding.
		bound, bindAnnotations := translate.ClaimBinding(current)
		if bound != "" && v.VolumeName == bound {
			v = v.DeepCopy()
			v.VolumeName = ""
		}
		for k, value := range bindAnnotations {
			if annotations[k] == value {
				delete(annotations, k)
			}
		}
	}
	errs := g.claimSpec(spec, v)
	if src := v.DataSource; src != nil {
		errs = append(errs, claimSource(spec.Child("dataSource"), src.APIGroup, src.Kind, nil)...)
	}
	if src := v.DataSourceRef; src != nil {
		errs = append(errs, claimSource(spec.Child("dataSourceRef"), src.APIGroup, src.Kind, src.Namespace)...)
	}
	errs = append(errs, reservedClaimKeys(field.NewPath("metadata"), virtual.Labels, annotations)...)
	if current != nil && host != nil {
		if !equality.Semantic.DeepEqual(translate.ImmutableClaimSpec(&host.Spec), translate.ImmutableClaimSpec(&current.Spec)) {
			errs = append(errs, field.Forbidden(spec, "only spec.resources.requests of a claim may change once its host claim exists (storage class, access modes, volume mode and data source stay as created)"))
		}
	}
	if host != nil {
		errs = append(errs, g.hostClaimRules(virtual, host)...)
	}
	return errs
}

// claimSource admits a data source that names a PersistentVolumeClaim in
// the claim's own namespace (translated to its host claim); snapshots are
// not carried to the host, so no host snapshot is the tenant's.
func claimSource(path *field.Path, apiGroup *string, kind string, namespace *string) field.ErrorList {
	var errs field.ErrorList
	if !translate.IsClaimSource(apiGroup, kind) {
		errs = append(errs, field.NotSupported(path.Child("kind"), kind, []string{"PersistentVolumeClaim"}))
	}
	if namespace != nil && *namespace != "" {
		errs = append(errs, field.Forbidden(path.Child("namespace"), "a data source must be a claim of the same namespace"))
	}
	return errs
}

// hostClaimRules are podbridge's own rules for a host claim, checked on
// what would be written.
func (g Gate) hostClaimRules(virtual, host *corev1.PersistentVolumeClaim) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	if host.Namespace != g.Config.HostNamespace {
		errs = append(errs, field.Invalid(meta.Child("namespace"), host.Namespace, "the host claim must be in the host namespace "+g.Config.HostNamespace))
	}
	if host.Labels[translate.LabelVCluster] != g.Config.VCluster || host.Labels[translate.LabelManagedBy] != translate.ManagedByValue || host.Labels[translate.LabelNamespace] != virtual.Namespace {
		errs = append(errs, field.Invalid(meta.Child("labels"), host.Labels[translate.LabelVCluster], "the host claim must carry podbridge's labels of virtual cluster "+g.Config.VCluster))
	}
	for _, k := range slices.Sorted(maps.Keys(host.Annotations)) {
		if !translate.IsReserved(k) {
			errs = append(errs, field.Forbidden(meta.Child("annotations").Key(k), "tenant annotations do not reach host claims"))
		}
	}
	spec := field.NewPath("spec")
	if host.Spec.VolumeName != "" || host.Spec.Selector != nil {
		errs = append(errs, field.Forbidden(spec, "the host claim would name or select a host volume"))
	}
	own := func(name string) bool {
		return name == translate.HostClaimName(nameOf(virtual.Spec.DataSource, virtual.Spec.DataSourceRef), virtual.Namespace, g.Config.VCluster)
	}
	if src := host.Spec.DataSource; src != nil && !own(src.Name) {
		errs = append(errs, field.Forbidden(spec.Child("dataSource"), fmt.Sprintf("host claim %s is not the host claim of this namespace's claim", src.Name)))
	}
	if src := host.Spec.DataSourceRef; src != nil && (!own(src.Name) || (src.Namespace != nil && *src.Namespace != "")) {
		errs = append(errs, field.Forbidden(spec.Child("dataSourceRef"), fmt.Sprintf("host claim %s is not the host claim of this namespace's claim", src.Name)))
	}
	return errs
}

// nameOf is the name of the claim a virtual claim clones.
func nameOf(src *corev1.TypedLocalObjectReference, ref *corev1.TypedObjectReference) string {
	if src != nil {
		return src.Name
	}
	if ref != nil {
		return ref.Name
	}
	return ""
}
