package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podbridge/podbridge/translate"
)

// FlagReservedCIDRs is the platform flag that names the address ranges no
// tenant NetworkPolicy may open (translate.Config.ReservedCIDRs).
const FlagReservedCIDRs = "network-policy-reserved-cidrs"

// networkPolicyFields classifies every field of a NetworkPolicySpec and of
// the types it holds (rules, peers, ports, ipBlock), by the path of its
// JSON name from the spec's rules ("ingress.from", "peer.ipBlock"), as
// serviceSpecFields does for Services: a test fails when Kubernetes adds
// a field this table does not name. A field dropped unexamined from a peer
// could widen what the host policy allows. Metadata: labels reach the
// host under tenant keys; annotations are dropped (CNI plugins act on
// policy annotations); podbridge's own keys are refused.
var networkPolicyFields = map[string]fieldRule{
	"podSelector":            {Translated, "tenant keys (translate.TenantKey) plus podbridge.io/vcluster, podbridge.io/namespace and app.kubernetes.io/managed-by: only this virtual cluster's pods of the policy's namespace"},
	"ingress":                {Translated, "rule by rule"},
	"egress":                 {Translated, "rule by rule"},
	"policyTypes":            {Carried, ""},
	"ingress.from":           {Translated, "peer by peer; none (every source) becomes this virtual cluster's pods plus the addresses outside --network-policy-reserved-cidrs"},
	"ingress.ports":          {Carried, ""},
	"egress.to":              {Translated, "as ingress.from"},
	"egress.ports":           {Carried, ""},
	"peer.podSelector":       {Translated, "as podSelector; in the policy's namespace unless namespaceSelector is set"},
	"peer.namespaceSelector": {Translated, "matched against the virtual namespaces' labels now and again whenever they change: podbridge.io/namespace In the matching namespaces (none matching: no pod); empty: every namespace of this virtual cluster, never another's"},
	"peer.ipBlock":           {AllowListed, "only outside --network-policy-reserved-cidrs (a reserved range inside the block must be in its except); refused when the flag names no range of its family"},
	"port.protocol":          {Carried, ""},
	"port.port":              {Carried, "named ports name the host pod's container ports, which are the tenant's"},
	"port.endPort":           {Carried, ""},
	"ipBlock.cidr":           {AllowListed, "as peer.ipBlock"},
	"ipBlock.except":         {Carried, "only narrows the block"},
}

// CheckNetworkPolicy returns why the NetworkPolicy virtual (as admitted or
// stored in the virtual cluster) may not be carried to the host as host,
// its translation (nil: not checked); nil when it may. An ipBlock must lie
// outside the platform's reserved ranges; the host policy must select only
// this virtual cluster's pods of the policy's namespace, and each host
// peer only this virtual cluster's pods or addresses outside the reserved
// ranges, whatever translation did. Errors name the virtual field and the
// platform flag.
func (g Gate) CheckNetworkPolicy(virtual, host *networkingv1.NetworkPolicy) field.ErrorList {
	var errs field.ErrorList
	translate.EachPeer(&virtual.Spec, func(path *field.Path, p networkingv1.NetworkPolicyPeer) {
		if p.IPBlock != nil {
			errs = append(errs, g.checkIPBlock(path.Child("ipBlock"), p.IPBlock)...)
		}
	})
	if host == nil || len(errs) > 0 {
		return errs
	}
	spec := field.NewPath("spec")
	if !scopedTo(&host.Spec.PodSelector, g.Config.VCluster) || !slices.ContainsFunc(host.Spec.PodSelector.MatchExpressions, func(r metav1.LabelSelectorRequirement) bool {
		return r.Key == translate.LabelNamespace && r.Operator == metav1.LabelSelectorOpIn && slices.Equal(r.Values, []string{virtual.Namespace})
	}) {
		errs = append(errs, field.Forbidden(spec.Child("podSelector"), "the host policy would select pods beyond this virtual cluster's in the policy's namespace"))
	}
	translate.EachPeer(&host.Spec, func(path *field.Path, p networkingv1.NetworkPolicyPeer) {
		switch {
		case p.IPBlock != nil:
			if len(g.checkIPBlock(path, p.IPBlock)) > 0 {
				errs = append(errs, field.Forbidden(path, "the host policy would open a reserved address range"))
			}
		case p.NamespaceSelector != nil || p.PodSelector == nil || !scopedTo(p.PodSelector, g.Config.VCluster):
			errs = append(errs, field.Forbidden(path, "the host policy would reach pods beyond this virtual cluster's"))
		}
	})
	for _, k := range slices.Sorted(maps.Keys(host.Annotations)) {
		if !translate.IsReserved(k) {
			errs = append(errs, field.Forbidden(field.NewPath("metadata", "annotations").Key(k), "tenant annotations do not reach host NetworkPolicies"))
		}
	}
	return errs
}

// scopedTo reports whether a host selector requires podbridge's pods of
// virtual cluster vcluster.
func scopedTo(s *metav1.LabelSelector, vcluster string) bool {
	return s.MatchLabels[translate.LabelVCluster] == vcluster && s.MatchLabels[translate.LabelManagedBy] == translate.ManagedByValue
}

// checkIPBlock refuses a block that opens any of the platform's reserved
// ranges: one inside a reserved range, or one holding a reserved range its
// except does not take out. A block of a family the platform reserves no
// range of is refused too: podbridge cannot tell which of its addresses
// are another tenant's pods.
func (g Gate) checkIPBlock(path *field.Path, b *networkingv1.IPBlock) field.ErrorList {
	block, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return field.ErrorList{field.Invalid(path.Child("cidr"), b.CIDR, err.Error())}
	}
	block = block.Masked()
	var except []netip.Prefix
	for i, e := range b.Except {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return field.ErrorList{field.Invalid(path.Child("except").Index(i), e, err.Error())}
		}
		except = append(except, p.Masked())
	}
	var reserved []netip.Prefix
	for _, r := range g.Config.ReservedPrefixes() {
		if r.Addr().Is4() == block.Addr().Is4() {
			reserved = append(reserved, r)
		}
	}
	if len(reserved) == 0 {
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf("%s: the platform names no reserved address range of its family (platform flag --%s), so podbridge cannot tell it from other tenants' pods", b.CIDR, FlagReservedCIDRs))}
	}
	var errs field.ErrorList
	for _, r := range reserved {
		switch {
		case within(block, r):
			errs = append(errs, field.Forbidden(path.Child("cidr"), fmt.Sprintf("%s lies in the reserved range %s (platform flag --%s): it may hold other tenants' pods or the platform's addresses", b.CIDR, r, FlagReservedCIDRs)))
		case within(r, block) && !slices.ContainsFunc(except, func(e netip.Prefix) bool { return within(r, e) }):
			errs = append(errs, field.Forbidden(path.Child("cidr"), fmt.Sprintf("%s holds the reserved range %s (platform flag --%s): add it to except", b.CIDR, r, FlagReservedCIDRs)))
		}
	}
	return errs
}

// within reports whether prefix a lies inside prefix b.
func within(a, b netip.Prefix) bool {
	return a.Bits() >= b.Bits() && b.Contains(a.Addr())
}
