// Package check verifies podbridge's invariant between a virtual cluster
// and its host: every virtual pod has exactly one host pod with its sync
// ID, no host pod outlives its virtual pod past the orphan grace period,
// and, once things are quiet, both pods tell the same status (Run); and
// the same of Services and their ClusterIPs (RunServices) and of
// PersistentVolumeClaims (RunClaims). Tests use it
// after every fault, and operators run it as `podbridge check`.
package check

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

	ClaimNoSyncID        = "ClaimNoSyncID"
	NoHostClaim          = "NoHostClaim"
	DuplicateHostClaim   = "DuplicateHostClaim"
	OrphanClaim          = "OrphanHostClaim"
	ClaimStatusDisagrees = "ClaimStatusDisagrees"
)

// Run lists both sides and returns every violation, sorted.
func Run(ctx context.Context, host, virtual client.Reader, o Options) ([]Violation, error) {
	virtualPods := &corev1.PodList{}
	if err := virtual.List(ctx, virtualPods); err != nil {
		return nil, fmt.Errorf("listing virtual pods: %w", err)
	}
	hostPods := &corev1.PodList{}
	if err := host.List(ctx, hostPods, client.InNamespace(o.Config.HostNamespace), client.MatchingLabels{
		translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: o.Config.VCluster,
	}); err != nil {
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
// host Service outlives its virtual Service past the orphan grace period.
func RunServices(ctx context.Context, host, virtual client.Reader, o Options) ([]Violation, error) {
	virtualServices := &corev1.ServiceList{}
	if err := virtual.List(ctx, virtualServices); err != nil {
		return nil, fmt.Errorf("listing virtual Services: %w", err)
	}
	hostServices := &corev1.ServiceList{}
	if err := host.List(ctx, hostServices, client.InNamespace(o.Config.HostNamespace), client.MatchingLabels{
		translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: o.Config.VCluster,
	}); err != nil {
		return nil, fmt.Errorf("listing host Services: %w", err)
	}
	return EvaluateServices(virtualServices.Items, hostServices.Items, o), nil
}

// EvaluateServices is RunServices' pure part.
func EvaluateServices(virtualServices, hostServices []corev1.Service, o Options) []Violation {
	return evaluatePairs(virtualServices, hostServices, o, pairKinds{
		noun: "Service", noSyncID: ServiceNoSyncID, noHost: NoHostService, duplicate: DuplicateHostService, orphan: OrphanService,
	}, func(v *corev1.Service) bool {
		return translate.NeedsHostService(v) && (v.Namespace != "default" || v.Name != "kubernetes")
	}, translate.ClaimsService, func(v, h *corev1.Service) (string, string) {
		if v.Spec.ClusterIP != h.Spec.ClusterIP {
			return ServiceAddressDiffers, fmt.Sprintf("ClusterIP %q, host %q", v.Spec.ClusterIP, h.Spec.ClusterIP)
		}
		return "", ""
	})
}

// pairKinds name the violations of one kind of pair.
type pairKinds struct {
	noun                                string
	noSyncID, noHost, duplicate, orphan string
	// goingIsGone: a host object being deleted is no orphan (a host claim
	// the host's protection keeps while a host pod uses it).
	goingIsGone bool
}

// evaluatePairs is the invariant of one kind of pair (Services, claims):
// every virtual object that needs a host object and was admitted has
// exactly one host object with its sync ID, and no host object outlives
// its virtual object past the orphan grace period; claims is the one
// definition of a pair the reflector uses too. differs names a difference
// within a pair by violation kind and detail (an empty kind for none).
func evaluatePairs[T any, P interface {
	*T
	client.Object
}](virtuals, hosts []T, o Options, kinds pairKinds, needsHost func(P) bool, claims func(v, h P) bool, differs func(v, h P) (kind, detail string)) []Violation {
	var out []Violation
	bySyncID := map[string][]P{}
	for i := range hosts {
		h := P(&hosts[i])
		id := h.GetAnnotations()[translate.AnnotationSyncID]
		bySyncID[id] = append(bySyncID[id], h)
	}
	virtualBySyncID := map[string]P{}
	for i := range virtuals {
		v := P(&virtuals[i])
		ref := v.GetNamespace() + "/" + v.GetName()
		if !needsHost(v) {
			continue
		}
		syncID := v.GetAnnotations()[translate.AnnotationSyncID]
		if syncID == "" {
			out = append(out, Violation{Kind: kinds.noSyncID, Virtual: ref, Detail: "the " + kinds.noun + " was not admitted by podbridge"})
			continue
		}
		virtualBySyncID[syncID] = v
		found := bySyncID[syncID]
		switch {
		case len(found) == 0 && v.GetDeletionTimestamp() == nil:
			out = append(out, Violation{Kind: kinds.noHost, Virtual: ref, Detail: "no host " + kinds.noun + " carries sync ID " + syncID})
		case len(found) > 1:
			out = append(out, Violation{Kind: kinds.duplicate, Virtual: ref, Host: found[0].GetName(), Detail: fmt.Sprintf("%d host %ss carry sync ID %s", len(found), kinds.noun, syncID)})
		case len(found) == 1:
			if kind, detail := differs(v, found[0]); kind != "" {
				out = append(out, Violation{Kind: kind, Virtual: ref, Host: found[0].GetName(), Detail: detail})
			}
		}
	}
	for i := range hosts {
		h := P(&hosts[i])
		if claims(virtualBySyncID[h.GetAnnotations()[translate.AnnotationSyncID]], h) || (kinds.goingIsGone && h.GetDeletionTimestamp() != nil) {
			continue
		}
		if translate.OrphanWait(h, o.Now, o.OrphanGracePeriod) == 0 {
			out = append(out, Violation{Kind: kinds.orphan, Host: h.GetName(), Detail: fmt.Sprintf("no virtual %s %s/%s with its sync ID after %s", kinds.noun,
				h.GetAnnotations()[translate.AnnotationNamespace], h.GetAnnotations()[translate.AnnotationName], o.Now.Sub(h.GetCreationTimestamp().Time).Round(time.Second))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
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
		noun: "PersistentVolumeClaim", noSyncID: ClaimNoSyncID, noHost: NoHostClaim, duplicate: DuplicateHostClaim, orphan: OrphanClaim, goingIsGone: true,
	}, func(*corev1.PersistentVolumeClaim) bool { return true }, translate.ClaimsClaim, func(v, h *corev1.PersistentVolumeClaim) (string, string) {
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
