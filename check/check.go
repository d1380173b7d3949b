// Package check verifies podbridge's invariant between a virtual cluster
// and its host: every virtual pod has exactly one host pod with its sync
// ID, no host pod outlives its virtual pod past the orphan grace period,
// and, once things are quiet, both pods tell the same status (Run); the
// same of Services and their ClusterIPs (RunServices), of the host
// EndpointSlices of Services without a selector, which must be what the
// gate decides now (RunEndpointSlices), of NetworkPolicies, with the
// isolation policy (RunNetworkPolicies), and of PersistentVolumeClaims
// (RunClaims). Tests use it
// after every fault, and operators run it as `podbridge check`.
package check

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// Options say what to check.
type Options struct {
	Config translate.Config
	// OrphanGracePeriod: younger host pods without a virtual pod are
	// admissions still under way, not violations.
	OrphanGracePeriod time.Duration
	// Statuses also compares phase, readiness and pod IP of each pair;
	// only meaningful once the clusters are quiet.
	Statuses bool
	Now      time.Time
}

// Violation is one breach of the invariant, named by pod.
type Violation struct {
	Kind    string
	Virtual string // namespace/name, when there is a virtual pod
	Host    string // name in the host namespace, when there is a host pod
	Detail  string
}

func (v Violation) String() string {
	var names []string
	if v.Virtual != "" {
		names = append(names, "virtual "+v.Virtual)
	}
	if v.Host != "" {
		names = append(names, "host "+v.Host)
	}
	return fmt.Sprintf("%s: %s: %s", v.Kind, strings.Join(names, ", "), v.Detail)
}

// Violation kinds.
const (
	NoSyncID        = "NoSyncID"
	NoHostPod       = "NoHostPod"
	DuplicateHost   = "DuplicateHostPod"
	Orphan          = "OrphanHostPod"
	StatusDisagrees = "StatusDisagrees"

	ServiceNoSyncID       = "ServiceNoSyncID"
	NoHostService         = "NoHostService"
	DuplicateHostService  = "DuplicateHostService"
	OrphanService         = "OrphanHostService"
	ServiceAddressDiffers = "ServiceAddressDiffers"

	NoHostEndpointSlice    = "NoHostEndpointSlice"
	EndpointSliceDiffers   = "EndpointSliceDiffers"
	ExtraHostEndpointSlice = "ExtraHostEndpointSlice"
	PolicyNoSyncID         = "NetworkPolicyNoSyncID"
	NoHostPolicy           = "NoHostNetworkPolicy"
	DuplicateHostPolicy    = "DuplicateHostNetworkPolicy"
	OrphanPolicy           = "OrphanHostNetworkPolicy"
	NoIsolationPolicy      = "NoIsolationPolicy"
	IsolationPolicyDiffers = "IsolationPolicyDiffers"
	ClaimNoSyncID          = "ClaimNoSyncID"
	NoHostClaim            = "NoHostClaim"
	DuplicateHostClaim     = "DuplicateHostClaim"
	OrphanClaim            = "OrphanHostClaim"
	ClaimStatusDisagrees   = "ClaimStatusDisagrees"
)

// ours selects this virtual cluster's host objects.
func ours(o Options) []client.ListOption {
	return []client.ListOption{client.InNamespace(o.Config.HostNamespace), client.MatchingLabels{
		translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: o.Config.VCluster,
	}}
}

// Run lists both sides and returns every violation, sorted.
func Run(ctx context.Context, host, virtual client.Reader, o Options) ([]Violation, error) {
	virtualPods := &corev1.PodList{}
	if err := virtual.List(ctx, virtualPods); err != nil {
		return nil, fmt.Errorf("listing virtual pods: %w", err)
	}
	hostPods := &corev1.PodList{}
	if err := host.List(ctx, hostPods, ours(o)...); err != nil {
		return nil, fmt.Errorf("listing host pods: %w", err)
	}
	return Evaluate(virtualPods.Items, hostPods.Items, o), nil
}

// Evaluate is Run's pure part: the violations between the two lists.
func Evaluate(virtualPods, hostPods []corev1.Pod, o Options) []Violation {
	var out []Violation
	bySyncID := map[string][]*corev1.Pod{}
	for i := range hostPods {
		h := &hostPods[i]
		bySyncID[h.Annotations[translate.AnnotationSyncID]] = append(bySyncID[h.Annotations[translate.AnnotationSyncID]], h)
	}
	virtualBySyncID := map[string]*corev1.Pod{}
	for i := range virtualPods {
		v := &virtualPods[i]
		ref := v.Namespace + "/" + v.Name
		syncID := v.Annotations[translate.AnnotationSyncID]
		if syncID == "" {
			out = append(out, Violation{Kind: NoSyncID, Virtual: ref, Detail: "the pod was not admitted by podbridge"})
			continue
		}
		virtualBySyncID[syncID] = v
		hosts := bySyncID[syncID]
		switch {
		case len(hosts) == 0 && v.DeletionTimestamp == nil:
			out = append(out, Violation{Kind: NoHostPod, Virtual: ref, Detail: "no host pod carries sync ID " + syncID})
		case len(hosts) > 1:
			out = append(out, Violation{Kind: DuplicateHost, Virtual: ref, Host: hosts[0].Name, Detail: fmt.Sprintf("%d host pods carry sync ID %s", len(hosts), syncID)})
		case len(hosts) == 1 && o.Statuses && v.DeletionTimestamp == nil:
			if d := statusDifference(v, hosts[0]); d != "" {
				out = append(out, Violation{Kind: StatusDisagrees, Virtual: ref, Host: hosts[0].Name, Detail: d})
			}
		}
	}
	for i := range hostPods {
		h := &hostPods[i]
		if translate.Claims(virtualBySyncID[h.Annotations[translate.AnnotationSyncID]], h) {
			continue
		}
		if translate.OrphanWait(h, o.Now, o.OrphanGracePeriod) == 0 {
			out = append(out, Violation{Kind: Orphan, Host: h.Name, Detail: fmt.Sprintf("no virtual pod %s/%s with its sync ID after %s",
				h.Annotations[translate.AnnotationNamespace], h.Annotations[translate.AnnotationName], o.Now.Sub(h.CreationTimestamp.Time).Round(time.Second))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func statusDifference(virtual, host *corev1.Pod) string {
	switch {
	case virtual.Status.Phase != host.Status.Phase:
		return fmt.Sprintf("phase %s, host %s", virtual.Status.Phase, host.Status.Phase)
	case ready(virtual) != ready(host):
		return fmt.Sprintf("ready %v, host %v", ready(virtual), ready(host))
	case virtual.Status.PodIP != host.Status.PodIP:
		return fmt.Sprintf("pod IP %q, host %q", virtual.Status.PodIP, host.Status.PodIP)
	case virtual.Spec.NodeName != host.Spec.NodeName:
		return fmt.Sprintf("node %q, host %q", virtual.Spec.NodeName, host.Spec.NodeName)
	}
	return ""
}

func ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// RunServices lists the Services of both sides and returns every violation
// of their invariant, sorted: every virtual Service that has a host Service
// (translate.NeedsHostService, and not the apiserver's own
// default/kubernetes) has exactly one, holding the same ClusterIP, and no
// host Service outlives its virtual Service past the orphan grace period;
// default/kubernetes holds the platform's address for it, when set.
func RunServices(ctx context.Context, host, virtual client.Reader, o Options) ([]Violation, error) {
	virtualServices := &corev1.ServiceList{}
	if err := virtual.List(ctx, virtualServices); err != nil {
		return nil, fmt.Errorf("listing virtual Services: %w", err)
	}
	hostServices := &corev1.ServiceList{}
	if err := host.List(ctx, hostServices, ours(o)...); err != nil {
		return nil, fmt.Errorf("listing host Services: %w", err)
	}
	return EvaluateServices(virtualServices.Items, hostServices.Items, o), nil
}

// EvaluateServices is RunServices' pure part.
func EvaluateServices(virtualServices, hostServices []corev1.Service, o Options) []Violation {
	var out []Violation
	for i := range virtualServices {
		v := &virtualServices[i]
		if ip := o.Config.KubernetesServiceIP; translate.IsKubernetesService(v) && ip != "" && v.Spec.ClusterIP != ip {
			out = append(out, Violation{Kind: ServiceAddressDiffers, Virtual: v.Namespace + "/" + v.Name,
				Detail: fmt.Sprintf("ClusterIP %q, not the virtual apiserver's host Service %q (--virtual-kubernetes-service-ip)", v.Spec.ClusterIP, ip)})
		}
	}
	out = append(out, evaluatePairs(virtualServices, hostServices, o, pairKinds{
		object: "Service", noSyncID: ServiceNoSyncID, noHost: NoHostService, duplicate: DuplicateHostService, orphan: OrphanService,
	}, func(v *corev1.Service) bool {
		return translate.NeedsHostService(v) && !translate.IsKubernetesService(v)
	}, func(v, h *corev1.Service) (string, string) {
		if v.Spec.ClusterIP != h.Spec.ClusterIP {
			return ServiceAddressDiffers, fmt.Sprintf("ClusterIP %q, host %q", v.Spec.ClusterIP, h.Spec.ClusterIP)
		}
		return "", ""
	})...)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// RunNetworkPolicies lists the NetworkPolicies of both sides and returns
// every violation of their invariant, sorted: every virtual NetworkPolicy
// has exactly one host NetworkPolicy with its sync ID, no host
// NetworkPolicy outlives its virtual one past the orphan grace period, and
// the virtual cluster's isolation policy (translate.IsolationPolicy) is in
// place as podbridge makes it.
func RunNetworkPolicies(ctx context.Context, host, virtual client.Reader, o Options) ([]Violation, error) {
	virtualPolicies := &networkingv1.NetworkPolicyList{}
	if err := virtual.List(ctx, virtualPolicies); err != nil {
		return nil, fmt.Errorf("listing virtual NetworkPolicies: %w", err)
	}
	hostPolicies := &networkingv1.NetworkPolicyList{}
	if err := host.List(ctx, hostPolicies, client.InNamespace(o.Config.HostNamespace), client.MatchingLabels{
		translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: o.Config.VCluster,
	}); err != nil {
		return nil, fmt.Errorf("listing host NetworkPolicies: %w", err)
	}
	return EvaluateNetworkPolicies(virtualPolicies.Items, hostPolicies.Items, o), nil
}

// EvaluateNetworkPolicies is RunNetworkPolicies' pure part.
func EvaluateNetworkPolicies(virtualPolicies, hostPolicies []networkingv1.NetworkPolicy, o Options) []Violation {
	isolation := translate.IsolationPolicy(o.Config)
	var pairs []networkingv1.NetworkPolicy
	var out []Violation
	found := false
	for _, h := range hostPolicies {
		if h.Name != isolation.Name {
			pairs = append(pairs, h)
			continue
		}
		found = true
		if !translate.SameHostNetworkPolicy(isolation, &h) {
			out = append(out, Violation{Kind: IsolationPolicyDiffers, Host: h.Name, Detail: "not as podbridge makes it: other tenants' pods may reach this virtual cluster's"})
		}
	}
	if !found {
		out = append(out, Violation{Kind: NoIsolationPolicy, Host: isolation.Name, Detail: "missing: other tenants' pods may reach this virtual cluster's"})
	}
	out = append(out, evaluatePairs(virtualPolicies, pairs, o, pairKinds{
		object: "NetworkPolicy", noSyncID: PolicyNoSyncID, noHost: NoHostPolicy, duplicate: DuplicateHostPolicy, orphan: OrphanPolicy,
	}, nil, nil)...)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// pairKinds name the violations of one kind of pair and its object.
type pairKinds struct {
	object, noSyncID, noHost, duplicate, orphan string
	// goingIsGone: a host object being deleted is no orphan (a host claim
	// the host's protection keeps while a host pod uses it).
	goingIsGone bool
}

// evaluatePairs returns the violations, sorted, between the virtual
// objects of a kind that pairs by sync ID and their host objects: every
// virtual object that has a host object (has: nil for all) has exactly
// one, and differs (nil: none) finds no difference between the two; no
// host object outlives its virtual one past the orphan grace period.
func evaluatePairs[T any, PT interface {
	*T
	metav1.Object
}](virtuals, hosts []T, o Options, kinds pairKinds, has func(PT) bool, differs func(v, h PT) (kind, detail string)) []Violation {
	var out []Violation
	bySyncID := map[string][]PT{}
	for i := range hosts {
		h := PT(&hosts[i])
		id := h.GetAnnotations()[translate.AnnotationSyncID]
		bySyncID[id] = append(bySyncID[id], h)
	}
	virtualBySyncID := map[string]PT{}
	for i := range virtuals {
		v := PT(&virtuals[i])
		ref := v.GetNamespace() + "/" + v.GetName()
		if has != nil && !has(v) {
			continue
		}
		syncID := v.GetAnnotations()[translate.AnnotationSyncID]
		if syncID == "" {
			out = append(out, Violation{Kind: kinds.noSyncID, Virtual: ref, Detail: "the " + kinds.object + " was not admitted by podbridge"})
			continue
		}
		virtualBySyncID[syncID] = v
		matched := bySyncID[syncID]
		switch {
		case len(matched) == 0 && v.GetDeletionTimestamp() == nil:
			out = append(out, Violation{Kind: kinds.noHost, Virtual: ref, Detail: "no host " + kinds.object + " carries sync ID " + syncID})
		case len(matched) > 1:
			out = append(out, Violation{Kind: kinds.duplicate, Virtual: ref, Host: matched[0].GetName(), Detail: fmt.Sprintf("%d host %ss carry sync ID %s", len(matched), kinds.object, syncID)})
		case len(matched) == 1 && differs != nil:
			if kind, detail := differs(v, matched[0]); kind != "" {
				out = append(out, Violation{Kind: kind, Virtual: ref, Host: matched[0].GetName(), Detail: detail})
			}
		}
	}
	for i := range hosts {
		h := PT(&hosts[i])
		if v, ok := virtualBySyncID[h.GetAnnotations()[translate.AnnotationSyncID]]; ok && translate.ClaimsObject(v, h) {
			continue
		}
		if kinds.goingIsGone && h.GetDeletionTimestamp() != nil {
			continue
		}
		if translate.OrphanWait(h, o.Now, o.OrphanGracePeriod) == 0 {
			out = append(out, Violation{Kind: kinds.orphan, Host: h.GetName(), Detail: fmt.Sprintf("no virtual %s %s/%s with its sync ID after %s", kinds.object,
				h.GetAnnotations()[translate.AnnotationNamespace], h.GetAnnotations()[translate.AnnotationName], o.Now.Sub(h.GetCreationTimestamp().Time).Round(time.Second))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// RunEndpointSlices lists what the host EndpointSlices of Services without
// a selector are decided from, and returns every host slice that is not
// what the decision (policy.Gate.EndpointSlices, with o.Config's allowed
// ranges) gives now: missing, different or left over. Run it when the
// clusters are quiet: the reflector writes slices after the fact.
func RunEndpointSlices(ctx context.Context, host, virtual client.Reader, o Options) ([]Violation, error) {
	virtualServices, hostServices := &corev1.ServiceList{}, &corev1.ServiceList{}
	virtualSlices, hostSlices := &discoveryv1.EndpointSliceList{}, &discoveryv1.EndpointSliceList{}
	hostPods := &corev1.PodList{}
	for _, l := range []struct {
		c    client.Reader
		list client.ObjectList
		opts []client.ListOption
	}{{virtual, virtualServices, nil}, {virtual, virtualSlices, nil}, {host, hostServices, ours(o)}, {host, hostSlices, []client.ListOption{client.InNamespace(o.Config.HostNamespace), client.MatchingLabels(translate.OwnEndpointSliceLabels(o.Config.VCluster))}}, {host, hostPods, ours(o)}} {
		if err := l.c.List(ctx, l.list, l.opts...); err != nil {
			return nil, fmt.Errorf("listing for the EndpointSlice check: %w", err)
		}
	}
	return EvaluateEndpointSlices(virtualServices.Items, hostServices.Items, virtualSlices.Items, hostSlices.Items, hostPods.Items, o), nil
}

// EvaluateEndpointSlices is RunEndpointSlices' pure part.
func EvaluateEndpointSlices(virtualServices, hostServices []corev1.Service, virtualSlices, hostSlices []discoveryv1.EndpointSlice, hostPods []corev1.Pod, o Options) []Violation {
	gate := policy.Gate{Config: o.Config}
	pods := map[netip.Addr]policy.EndpointPod{}
	for i := range hostPods {
		policy.AddTenantPod(pods, &hostPods[i], o.Config)
	}
	services := map[types.NamespacedName]*corev1.Service{}
	for i := range virtualServices {
		services[client.ObjectKeyFromObject(&virtualServices[i])] = &virtualServices[i]
	}
	hosts := map[string]*corev1.Service{}
	for i := range hostServices {
		hosts[hostServices[i].Name] = &hostServices[i]
	}
	virtualByKey := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for i := range virtualSlices {
		s := &virtualSlices[i]
		if service := s.Labels[discoveryv1.LabelServiceName]; service != "" {
			key := types.NamespacedName{Namespace: s.Namespace, Name: service}
			virtualByKey[key] = append(virtualByKey[key], s)
		}
	}
	hostByKey := map[types.NamespacedName]map[string]*discoveryv1.EndpointSlice{}
	for i := range hostSlices {
		h := &hostSlices[i]
		if h.DeletionTimestamp != nil {
			continue
		}
		key := translate.HostEndpointSliceKey(h)
		if hostByKey[key] == nil {
			hostByKey[key] = map[string]*discoveryv1.EndpointSlice{}
		}
		if _, ok := virtualByKey[key]; !ok {
			virtualByKey[key] = nil // a key with host slices only is checked too.
		}
		hostByKey[key][h.Name] = h
	}
	var out []Violation
	for key, slices := range virtualByKey {
		host := hosts[translate.HostServiceName(key.Name, key.Namespace, o.Config.VCluster)]
		desired, _ := gate.EndpointSlices(services[key], host, slices, pods)
		have := hostByKey[key]
		for _, want := range desired {
			switch h := have[want.Name]; {
			case h == nil:
				out = append(out, Violation{Kind: NoHostEndpointSlice, Virtual: key.String(), Host: want.Name, Detail: "no host EndpointSlice for virtual slice " + want.Annotations[translate.AnnotationName]})
			case !translate.SameHostEndpointSlice(want, h):
				out = append(out, Violation{Kind: EndpointSliceDiffers, Virtual: key.String(), Host: h.Name, Detail: fmt.Sprintf("holds %s, the decision gives %s", endpointAddresses(h), endpointAddresses(want))})
			}
			delete(have, want.Name)
		}
		for name, h := range have {
			out = append(out, Violation{Kind: ExtraHostEndpointSlice, Virtual: key.String(), Host: name, Detail: fmt.Sprintf("holds %s; the decision gives no such slice", endpointAddresses(h))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func endpointAddresses(s *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, e.Addresses...)
	}
	return out
}

// RunClaims lists the PersistentVolumeClaims of both sides and returns
// every violation of their invariant, sorted: every admitted virtual claim
// has exactly one host claim, no host claim outlives its virtual claim past
// the orphan grace period (one being deleted, which the host keeps while a
// host pod uses it, is going), and, with Statuses, each pair's phase and
// capacity agree.
func RunClaims(ctx context.Context, host, virtual client.Reader, o Options) ([]Violation, error) {
	virtualClaims := &corev1.PersistentVolumeClaimList{}
	if err := virtual.List(ctx, virtualClaims); err != nil {
		return nil, fmt.Errorf("listing virtual PersistentVolumeClaims: %w", err)
	}
	hostClaims := &corev1.PersistentVolumeClaimList{}
	if err := host.List(ctx, hostClaims, client.InNamespace(o.Config.HostNamespace), client.MatchingLabels{
		translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: o.Config.VCluster,
	}); err != nil {
		return nil, fmt.Errorf("listing host PersistentVolumeClaims: %w", err)
	}
	return EvaluateClaims(virtualClaims.Items, hostClaims.Items, o), nil
}

// EvaluateClaims is RunClaims' pure part.
func EvaluateClaims(virtualClaims, hostClaims []corev1.PersistentVolumeClaim, o Options) []Violation {
	return evaluatePairs(virtualClaims, hostClaims, o, pairKinds{
		object: "PersistentVolumeClaim", noSyncID: ClaimNoSyncID, noHost: NoHostClaim, duplicate: DuplicateHostClaim, orphan: OrphanClaim, goingIsGone: true,
	}, nil, func(v, h *corev1.PersistentVolumeClaim) (string, string) {
		if !o.Statuses || v.DeletionTimestamp != nil {
			return "", ""
		}
		vc, hc := v.Status.Capacity[corev1.ResourceStorage], h.Status.Capacity[corev1.ResourceStorage]
		if v.Status.Phase != h.Status.Phase || vc.Cmp(hc) != 0 {
			return ClaimStatusDisagrees, fmt.Sprintf("phase %s capacity %s, host %s %s", v.Status.Phase, vc.String(), h.Status.Phase, hc.String())
		}
		return "", ""
	})
}
