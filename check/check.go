// Package check verifies podbridge's invariant between a virtual cluster
// and its host: every virtual pod has exactly one host pod with its sync
// ID, no host pod outlives its virtual pod past the orphan grace period,
// and, once things are quiet, both pods tell the same status (Run); and
// the same of Services and their ClusterIPs (RunServices). Tests use it
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
// host Service outlives its virtual Service past the orphan grace period;
// default/kubernetes holds the platform's address for it, when set.
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
	var out []Violation
	bySyncID := map[string][]*corev1.Service{}
	for i := range hostServices {
		h := &hostServices[i]
		id := h.Annotations[translate.AnnotationSyncID]
		bySyncID[id] = append(bySyncID[id], h)
	}
	virtualBySyncID := map[string]*corev1.Service{}
	for i := range virtualServices {
		v := &virtualServices[i]
		ref := v.Namespace + "/" + v.Name
		if translate.IsKubernetesService(v) {
			if ip := o.Config.KubernetesServiceIP; ip != "" && v.Spec.ClusterIP != ip {
				out = append(out, Violation{Kind: ServiceAddressDiffers, Virtual: ref,
					Detail: fmt.Sprintf("ClusterIP %q, not the virtual apiserver's host Service %q (--virtual-kubernetes-service-ip)", v.Spec.ClusterIP, ip)})
			}
			continue
		}
		if !translate.NeedsHostService(v) {
			continue
		}
		syncID := v.Annotations[translate.AnnotationSyncID]
		if syncID == "" {
			out = append(out, Violation{Kind: ServiceNoSyncID, Virtual: ref, Detail: "the Service was not admitted by podbridge"})
			continue
		}
		virtualBySyncID[syncID] = v
		hosts := bySyncID[syncID]
		switch {
		case len(hosts) == 0 && v.DeletionTimestamp == nil:
			out = append(out, Violation{Kind: NoHostService, Virtual: ref, Detail: "no host Service carries sync ID " + syncID})
		case len(hosts) > 1:
			out = append(out, Violation{Kind: DuplicateHostService, Virtual: ref, Host: hosts[0].Name, Detail: fmt.Sprintf("%d host Services carry sync ID %s", len(hosts), syncID)})
		case len(hosts) == 1 && v.Spec.ClusterIP != hosts[0].Spec.ClusterIP:
			out = append(out, Violation{Kind: ServiceAddressDiffers, Virtual: ref, Host: hosts[0].Name,
				Detail: fmt.Sprintf("ClusterIP %q, host %q", v.Spec.ClusterIP, hosts[0].Spec.ClusterIP)})
		}
	}
	for i := range hostServices {
		h := &hostServices[i]
		if translate.ClaimsService(virtualBySyncID[h.Annotations[translate.AnnotationSyncID]], h) {
			continue
		}
		if translate.OrphanWait(h, o.Now, o.OrphanGracePeriod) == 0 {
			out = append(out, Violation{Kind: OrphanService, Host: h.Name, Detail: fmt.Sprintf("no virtual Service %s/%s with its sync ID after %s",
				h.Annotations[translate.AnnotationNamespace], h.Annotations[translate.AnnotationName], o.Now.Sub(h.CreationTimestamp.Time).Round(time.Second))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
