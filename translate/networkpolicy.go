package translate

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Paths of the webhook server for NetworkPolicies, each registered as its
// own webhook as the Service paths are.
const (
	// WebhookPathNetworkPolicy serves NetworkPolicy creates: the host
	// NetworkPolicy is made here.
	WebhookPathNetworkPolicy = "/mutate-networking-v1-networkpolicy"
	// WebhookPathNetworkPolicyUpdate serves NetworkPolicy updates: the
	// change is carried to the host NetworkPolicy before the virtual one
	// is stored.
	WebhookPathNetworkPolicyUpdate = "/mutate-networking-v1-networkpolicy-update"
)

// NamespaceLabels are the labels of the virtual cluster's namespaces, by
// name, as read now: a namespaceSelector of a tenant's NetworkPolicy is
// evaluated against them (the host cannot see virtual namespaces).
type NamespaceLabels map[string]map[string]string

// HostNetworkPolicyName is the name of the host NetworkPolicy of virtual
// NetworkPolicy name in namespace of virtual cluster vcluster (HostName:
// a NetworkPolicy's name is a DNS subdomain, as a pod's).
func HostNetworkPolicyName(name, namespace, vcluster string) string {
	return HostName(name, namespace, vcluster)
}

// IsolationPolicyName is the name of the host NetworkPolicy that keeps
// other tenants' pods from reaching this virtual cluster's
// (IsolationPolicy). A tenant policy whose host name were the same would
// be refused by the webhook (the name is taken by an object that names no
// pair of this virtual cluster).
func IsolationPolicyName(vcluster string) string {
	return "podbridge-isolation-" + vcluster
}

// HostNetworkPolicy translates a named virtual NetworkPolicy into its host
// NetworkPolicy. syncID identifies the pair; namespaces are the virtual
// namespaces' labels, read now (the translation of a namespaceSelector
// depends on them, and is made again when they change).
//
// NetworkPolicies add up: a pod some policy selects for a direction may
// send or receive what any policy selecting it allows. A platform policy
// in the host namespace can therefore not take back what a tenant's
// translated policy allows, and the translation itself never allows more
// than the tenant's own pods and the addresses outside the platform's
// reserved ranges (Config.ReservedCIDRs):
//   - spec.podSelector and every peer podSelector: the tenant's keys under
//     TenantKey, plus app.kubernetes.io/managed-by, podbridge.io/vcluster
//     and, for the policy's own namespace, podbridge.io/namespace; no host
//     peer has a namespaceSelector (every host pod is in the host
//     namespace, the policy's own);
//   - a namespaceSelector: the pods of this virtual cluster's namespaces
//     whose labels match it now (podbridge.io/namespace In [...]), none
//     when none does; an empty one (every namespace): every pod of this
//     virtual cluster, never another's;
//   - an ipBlock is carried (policy.Gate.CheckNetworkPolicy refuses one
//     that reaches into a reserved range);
//   - a rule with no peers (every source or destination): this virtual
//     cluster's pods, and every address outside the reserved ranges of
//     each family the platform names (Config.ReservedCIDRs), never other
//     tenants' pods;
//   - ports, endPort and policyTypes are carried;
//   - labels under tenant keys plus podbridge's own, no tenant annotation.
func HostNetworkPolicy(virtual *networkingv1.NetworkPolicy, cfg Config, syncID string, namespaces NamespaceLabels) (*networkingv1.NetworkPolicy, field.ErrorList) {
	errs := validateObjectMeta(virtual, validation.IsDNS1123Subdomain)
	spec := field.NewPath("spec")
	t := policyTranslator{cfg: cfg, namespace: virtual.Namespace, namespaces: namespaces}
	host := networkingv1.NetworkPolicySpec{PolicyTypes: slices.Clone(virtual.Spec.PolicyTypes)}
	podSelector := virtual.Spec.PodSelector
	if s := t.pods(spec.Child("podSelector"), &podSelector, []string{virtual.Namespace}); s != nil {
		host.PodSelector = *s
	}
	for i, r := range virtual.Spec.Ingress {
		path := spec.Child("ingress").Index(i)
		host.Ingress = append(host.Ingress, networkingv1.NetworkPolicyIngressRule{
			Ports: copyPorts(r.Ports), From: t.peers(path.Child("from"), r.From),
		})
	}
	for i, r := range virtual.Spec.Egress {
		path := spec.Child("egress").Index(i)
		host.Egress = append(host.Egress, networkingv1.NetworkPolicyEgressRule{
			Ports: copyPorts(r.Ports), To: t.peers(path.Child("to"), r.To),
		})
	}
	if errs = append(errs, t.errs...); len(errs) > 0 {
		return nil, errs
	}
	meta := pairedHostMeta(virtual, HostNetworkPolicyName(virtual.Name, virtual.Namespace, cfg.VCluster), cfg, syncID)
	meta.Annotations[AnnotationSelectorScheme] = SelectorScheme
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: meta,
		Spec:       host,
	}, nil
}

// IsolationPolicy is the host NetworkPolicy the reflector keeps for the
// virtual cluster: it selects every host pod of the virtual cluster and
// admits ingress only from the virtual cluster's own pods and, when the
// platform names its reserved ranges, from addresses outside them (clients
// of the tenant's NodePort and LoadBalancer Services). Other tenants' pods
// in the host namespace, and pods elsewhere in the pod network, are kept
// out unless a policy of the tenant's or the platform's admits them;
// a tenant's translated policy never admits another tenant's pods.
func IsolationPolicy(cfg Config) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      IsolationPolicyName(cfg.VCluster),
			Namespace: cfg.HostNamespace,
			Labels:    map[string]string{LabelManagedBy: ManagedByValue, LabelVCluster: cfg.VCluster},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *virtualClusterPods(cfg),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: everyPeer(cfg)}},
		},
	}
}

// virtualClusterPods selects every host pod of the virtual cluster.
func virtualClusterPods(cfg Config) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: ManagedByValue, LabelVCluster: cfg.VCluster}}
}

// everyPeer is what "every source" or "every destination" may mean for a
// tenant: its own virtual cluster's pods, and every address outside the
// platform's reserved ranges of each family it names any for.
func everyPeer(cfg Config) []networkingv1.NetworkPolicyPeer {
	peers := []networkingv1.NetworkPolicyPeer{{PodSelector: virtualClusterPods(cfg)}}
	for _, family := range []string{"0.0.0.0/0", "::/0"} {
		all := netip.MustParsePrefix(family)
		var except []string
		for _, r := range cfg.ReservedPrefixes() {
			if r.Addr().Is4() == all.Addr().Is4() {
				except = append(except, r.String())
			}
		}
		if len(except) > 0 {
			peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: family, Except: except}})
		}
	}
	return peers
}

// policyTranslator gathers a NetworkPolicy's translation errors.
type policyTranslator struct {
	cfg        Config
	namespace  string
	namespaces NamespaceLabels
	errs       field.ErrorList
}

// pods is the host selector of a tenant pod selector: ScopedSelector, plus
// podbridge's own label so that no pod but those podbridge made is selected.
func (t *policyTranslator) pods(path *field.Path, selector *metav1.LabelSelector, namespaces []string) *metav1.LabelSelector {
	s, errs := ScopedSelector(path, selector, t.cfg.VCluster, namespaces)
	t.errs = append(t.errs, errs...)
	if s != nil {
		s.MatchLabels[LabelManagedBy] = ManagedByValue
	}
	return s
}

// peers translates a rule's peers; none (every peer) becomes everyPeer.
func (t *policyTranslator) peers(path *field.Path, peers []networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer {
	if len(peers) == 0 {
		return everyPeer(t.cfg)
	}
	out := make([]networkingv1.NetworkPolicyPeer, 0, len(peers))
	for i, p := range peers {
		path := path.Index(i)
		if p.IPBlock != nil {
			out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: p.IPBlock.DeepCopy()})
			continue
		}
		selector := p.PodSelector
		if selector == nil {
			selector = &metav1.LabelSelector{} // a namespaceSelector alone: every pod there.
		}
		if p.NamespaceSelector == nil {
			out = append(out, networkingv1.NetworkPolicyPeer{PodSelector: t.pods(path.Child("podSelector"), selector, []string{t.namespace})})
			continue
		}
		namespaces, none := t.selectedNamespaces(path.Child("namespaceSelector"), p.NamespaceSelector)
		s := t.pods(path.Child("podSelector"), selector, namespaces)
		if none {
			// No namespace matches now: no pod of this virtual cluster
			// (every one carries its namespace). An empty peer list would
			// mean every peer.
			s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: LabelNamespace, Operator: metav1.LabelSelectorOpDoesNotExist})
		}
		out = append(out, networkingv1.NetworkPolicyPeer{PodSelector: s})
	}
	return out
}

// selectedNamespaces are the virtual namespaces selector matches now,
// sorted; nil for an empty selector (every namespace of the virtual
// cluster), and none when it matches no namespace.
func (t *policyTranslator) selectedNamespaces(path *field.Path, selector *metav1.LabelSelector) (names []string, none bool) {
	if len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0 {
		return nil, false
	}
	s, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		t.errs = append(t.errs, field.Invalid(path, selector, err.Error()))
		return nil, true
	}
	for name, l := range t.namespaces {
		if s.Matches(labels.Set(l)) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, len(names) == 0
}

func copyPorts(ports []networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort {
	if ports == nil {
		return nil
	}
	out := make([]networkingv1.NetworkPolicyPort, len(ports))
	for i := range ports {
		ports[i].DeepCopyInto(&out[i])
	}
	return out
}

// UsesNamespaceLabels reports whether a NetworkPolicy's translation reads
// namespace labels: it has a namespaceSelector that is not empty.
func UsesNamespaceLabels(np *networkingv1.NetworkPolicy) bool {
	uses := false
	EachPeer(&np.Spec, func(_ *field.Path, p networkingv1.NetworkPolicyPeer) {
		if s := p.NamespaceSelector; s != nil && (len(s.MatchLabels) > 0 || len(s.MatchExpressions) > 0) {
			uses = true
		}
	})
	return uses
}

// EachPeer calls f with every peer of spec's rules and its path, ingress
// first.
func EachPeer(spec *networkingv1.NetworkPolicySpec, f func(*field.Path, networkingv1.NetworkPolicyPeer)) {
	for i, r := range spec.Ingress {
		for j, p := range r.From {
			f(field.NewPath("spec", "ingress").Index(i).Child("from").Index(j), p)
		}
	}
	for i, r := range spec.Egress {
		for j, p := range r.To {
			f(field.NewPath("spec", "egress").Index(i).Child("to").Index(j), p)
		}
	}
}

// OverHostNetworkPolicy is the host NetworkPolicy to write over current
// so that it holds desired: desired's labels and spec, podbridge's
// annotations added to current's.
func OverHostNetworkPolicy(desired, current *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	updated := current.DeepCopy()
	updated.Labels = desired.Labels
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, desired.Annotations)
	updated.Spec = *desired.Spec.DeepCopy()
	return updated
}

// SameHostNetworkPolicy reports whether current, read from the host,
// already holds what desired would write (the host defaults a port's
// protocol to TCP and policyTypes from the rules).
func SameHostNetworkPolicy(desired, current *networkingv1.NetworkPolicy) bool {
	d := desired.Spec.DeepCopy()
	defaultPolicySpec(d)
	c := current.Spec.DeepCopy()
	defaultPolicySpec(c)
	return equality.Semantic.DeepEqual(d, c) && maps.Equal(desired.Labels, current.Labels) && hasAll(current.Annotations, desired.Annotations)
}

// defaultPolicySpec applies the apiserver's defaults for NetworkPolicies
// (SetDefaults_NetworkPolicySpec, SetDefaults_NetworkPolicyPort).
func defaultPolicySpec(s *networkingv1.NetworkPolicySpec) {
	var ports [][]networkingv1.NetworkPolicyPort
	for _, r := range s.Ingress {
		ports = append(ports, r.Ports)
	}
	for _, r := range s.Egress {
		ports = append(ports, r.Ports)
	}
	for _, rule := range ports {
		for i := range rule {
			if rule[i].Protocol == nil {
				rule[i].Protocol = ptrTo(corev1.ProtocolTCP)
			}
		}
	}
	if len(s.PolicyTypes) == 0 {
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(s.Egress) > 0 {
			s.PolicyTypes = append(s.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
}

// ClaimsNetworkPolicy reports whether host is the host NetworkPolicy of
// the stored virtual NetworkPolicy, as Claims defines a pod pair.
func ClaimsNetworkPolicy(virtual, host *networkingv1.NetworkPolicy) bool {
	return virtual != nil && host != nil && ClaimsObject(virtual, host)
}
