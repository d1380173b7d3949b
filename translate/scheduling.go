package translate

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// scheduling copies the tenant's placement wishes, with every pod label
// selector and label key under the tenant's host keys (TenantKey) and scoped
// to this virtual cluster (and namespace), and adds the enforced node
// selector and tolerations.
func (t *podTranslator) scheduling(path *field.Path, spec *corev1.PodSpec) {
	v := &t.pod.Spec
	spec.NodeSelector = maps.Clone(v.NodeSelector)
	if len(t.cfg.NodeSelector) > 0 {
		if spec.NodeSelector == nil {
			spec.NodeSelector = map[string]string{}
		}
		maps.Copy(spec.NodeSelector, t.cfg.NodeSelector)
	}
	spec.Tolerations = append(append([]corev1.Toleration(nil), v.Tolerations...), t.cfg.Tolerations...)
	if len(spec.Tolerations) == 0 {
		spec.Tolerations = nil
	}
	if v.Affinity != nil {
		spec.Affinity = v.Affinity.DeepCopy()
		p := path.Child("affinity")
		if a := spec.Affinity.PodAffinity; a != nil {
			t.affinityTerms(p.Child("podAffinity"), a.RequiredDuringSchedulingIgnoredDuringExecution, a.PreferredDuringSchedulingIgnoredDuringExecution)
		}
		if a := spec.Affinity.PodAntiAffinity; a != nil {
			t.affinityTerms(p.Child("podAntiAffinity"), a.RequiredDuringSchedulingIgnoredDuringExecution, a.PreferredDuringSchedulingIgnoredDuringExecution)
		}
	}
	for i := range v.TopologySpreadConstraints {
		c := *v.TopologySpreadConstraints[i].DeepCopy()
		p := path.Child("topologySpreadConstraints").Index(i)
		c.LabelSelector = t.scopedSelector(p.Child("labelSelector"), c.LabelSelector, []string{t.pod.Namespace})
		c.MatchLabelKeys = t.labelKeys(p.Child("matchLabelKeys"), c.MatchLabelKeys)
		spec.TopologySpreadConstraints = append(spec.TopologySpreadConstraints, c)
	}
}

func (t *podTranslator) affinityTerms(path *field.Path, required []corev1.PodAffinityTerm, preferred []corev1.WeightedPodAffinityTerm) {
	for i := range required {
		t.affinityTerm(path.Child("requiredDuringSchedulingIgnoredDuringExecution").Index(i), &required[i])
	}
	for i := range preferred {
		t.affinityTerm(path.Child("preferredDuringSchedulingIgnoredDuringExecution").Index(i).Child("podAffinityTerm"), &preferred[i].PodAffinityTerm)
	}
}

// affinityTerm rewrites one pod (anti-)affinity term: the host pods of its
// virtual namespaces in the host namespace, never another tenant's.
func (t *podTranslator) affinityTerm(path *field.Path, term *corev1.PodAffinityTerm) {
	namespaces := term.Namespaces
	switch {
	case term.NamespaceSelector != nil && (len(term.NamespaceSelector.MatchLabels) > 0 || len(term.NamespaceSelector.MatchExpressions) > 0):
		t.errs = append(t.errs, field.Forbidden(path.Child("namespaceSelector"), "only an empty selector (all namespaces) is supported: the host cannot see virtual namespace labels"))
	case term.NamespaceSelector != nil:
		namespaces = nil // every namespace of this virtual cluster
	case len(namespaces) == 0:
		namespaces = []string{t.pod.Namespace}
	}
	term.LabelSelector = t.scopedSelector(path.Child("labelSelector"), term.LabelSelector, namespaces)
	term.MatchLabelKeys = t.labelKeys(path.Child("matchLabelKeys"), term.MatchLabelKeys)
	term.MismatchLabelKeys = t.labelKeys(path.Child("mismatchLabelKeys"), term.MismatchLabelKeys)
	term.Namespaces = []string{t.cfg.HostNamespace}
	term.NamespaceSelector = nil
}

// scopedSelector is ScopedSelector for the pod being translated.
func (t *podTranslator) scopedSelector(path *field.Path, selector *metav1.LabelSelector, namespaces []string) *metav1.LabelSelector {
	s, errs := ScopedSelector(path, selector, t.cfg.VCluster, namespaces)
	t.errs = append(t.errs, errs...)
	return s
}

// ScopedSelector translates a tenant's pod label selector's keys to the
// tenant's host keys (TenantKey) and restricts it to host pods of virtual
// cluster vcluster and, when namespaces is not empty, of those virtual
// namespaces. A nil selector matches nothing and stays nil. Its keys are
// checked (validateLabelKey).
func ScopedSelector(path *field.Path, selector *metav1.LabelSelector, vcluster string, namespaces []string) (*metav1.LabelSelector, field.ErrorList) {
	if selector == nil {
		return nil, nil
	}
	var errs field.ErrorList
	s := &metav1.LabelSelector{MatchLabels: make(map[string]string, len(selector.MatchLabels)+2)}
	for k, v := range selector.MatchLabels {
		s.MatchLabels[TenantKey(k)] = v
		errs = append(errs, validateLabelKey(path.Child("matchLabels").Key(k), k)...)
	}
	for i, r := range selector.MatchExpressions {
		r := *r.DeepCopy()
		errs = append(errs, validateLabelKey(path.Child("matchExpressions").Index(i).Child("key"), r.Key)...)
		r.Key = TenantKey(r.Key)
		s.MatchExpressions = append(s.MatchExpressions, r)
	}
	s.MatchLabels[LabelVCluster] = vcluster
	if len(namespaces) > 0 {
		s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: LabelNamespace, Operator: metav1.LabelSelectorOpIn, Values: namespaces,
		})
	}
	return s, errs
}

// labelKeys translates label keys (matchLabelKeys, mismatchLabelKeys),
// which name the pod's own labels: the host pod has them under host keys.
func (t *podTranslator) labelKeys(path *field.Path, keys []string) []string {
	if keys == nil {
		return nil
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = t.labelKey(path.Index(i), k)
	}
	return out
}

// labelKey is the host key of a tenant label key in a selector, checked
// (validateLabelKey).
func (t *podTranslator) labelKey(path *field.Path, key string) string {
	t.errs = append(t.errs, validateLabelKey(path, key)...)
	return TenantKey(key)
}

// validateLabelKey refuses an invalid label key of a selector: the host
// key of an invalid key may be valid, and the host sees the selector
// before the virtual apiserver validates it.
func validateLabelKey(path *field.Path, key string) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsQualifiedName(key) {
		errs = append(errs, field.Invalid(path, key, msg))
	}
	return errs
}

// dns sends ClusterFirst lookups to the virtual cluster's DNS server with
// its search domains, when one is configured.
func (t *podTranslator) dns(spec *corev1.PodSpec) {
	v := &t.pod.Spec
	spec.DNSPolicy, spec.DNSConfig = v.DNSPolicy, v.DNSConfig.DeepCopy()
	if t.cfg.DNSNameserver == "" || (v.DNSPolicy != "" && v.DNSPolicy != corev1.DNSClusterFirst) {
		return
	}
	domain := t.cfg.clusterDomain()
	cfg := &corev1.PodDNSConfig{
		Nameservers: []string{t.cfg.DNSNameserver},
		Searches:    []string{t.pod.Namespace + ".svc." + domain, "svc." + domain, domain},
		Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptrTo("5")}},
	}
	if v.DNSConfig != nil {
		cfg.Nameservers = append(cfg.Nameservers, v.DNSConfig.Nameservers...)
		cfg.Searches = append(cfg.Searches, v.DNSConfig.Searches...)
		cfg.Options = append(cfg.Options, v.DNSConfig.Options...)
	}
	spec.DNSPolicy, spec.DNSConfig = corev1.DNSNone, cfg
}
