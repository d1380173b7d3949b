package policy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// alwaysTolerated are the taint keys every tenant may tolerate: Kubernetes
// itself gives every pod a NoExecute toleration of each (the apiserver's
// DefaultTolerationSeconds admission), so a virtual pod carries them
// unasked. They mark a node that is failing, not one the platform keeps
// for itself.
var alwaysTolerated = []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable}

// placement checks where a host pod may run: a taint is the platform's way
// to keep tenants off a node (its control plane, a node being drained), so
// a tenant toleration passes only for a taint key the platform allows, and
// naming a node outright (node affinity's matchFields on metadata.name,
// which the scheduler honours like nodeName) only where the platform
// allows pinning. The virtual pod's tolerations are checked, as the tenant
// wrote them: the host pod holds those, the platform's enforced ones
// (translate.Config's Tolerations) and what the host's own admission adds.
func (g Gate) placement(spec *field.Path, virtual, host *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	for i, t := range virtual.Spec.Tolerations {
		if err := g.toleration(spec, i, t); err != nil {
			errs = append(errs, err)
		}
	}
	if a := host.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		errs = append(errs, g.nodeAffinity(spec.Child("affinity", "nodeAffinity"), a.NodeAffinity)...)
	}
	return errs
}

// toleration checks toleration i of the pod; paths are built only for an
// error, since every admission passes here.
func (g Gate) toleration(spec *field.Path, i int, t corev1.Toleration) *field.Error {
	if t.Key == "" {
		return field.Forbidden(spec.Child("tolerations").Index(i).Child("key"), "a toleration of every taint would let the pod onto nodes the platform keeps tenants off; name the taint key (platform flag --allowed-toleration-keys; allowed: "+allowedList(g.tolerationKeys())+")")
	}
	if slices.Contains(alwaysTolerated, t.Key) || slices.Contains(g.Config.TolerationKeys, t.Key) || containsToleration(g.Config.Tolerations, t) {
		return nil
	}
	return notAllowed(spec.Child("tolerations").Index(i).Child("key"), t.Key, g.tolerationKeys(), "--allowed-toleration-keys")
}

func (g Gate) tolerationKeys() []string {
	return append(slices.Clone(alwaysTolerated), g.Config.TolerationKeys...)
}

// nodeAffinity refuses matchFields (a node by name) unless the platform
// allows pinning; label expressions stay the tenant's, since the enforced
// node selector and the taints already bound which nodes they can reach.
func (g Gate) nodeAffinity(path *field.Path, a *corev1.NodeAffinity) field.ErrorList {
	if g.Config.AllowNodePinning {
		return nil
	}
	const why = "naming nodes is not allowed on the host (platform flag --allow-node-pinning); select nodes by label with matchExpressions"
	var errs field.ErrorList
	if r := a.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
		terms := path.Child("requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
		for i, term := range r.NodeSelectorTerms {
			if len(term.MatchFields) > 0 {
				errs = append(errs, field.Forbidden(terms.Index(i).Child("matchFields"), why))
			}
		}
	}
	for i, p := range a.PreferredDuringSchedulingIgnoredDuringExecution {
		if len(p.Preference.MatchFields) > 0 {
			errs = append(errs, field.Forbidden(path.Child("preferredDuringSchedulingIgnoredDuringExecution").Index(i).Child("preference", "matchFields"), why))
		}
	}
	return errs
}

func containsToleration(list []corev1.Toleration, t corev1.Toleration) bool {
	return slices.ContainsFunc(list, func(l corev1.Toleration) bool { return apiequality.Semantic.DeepEqual(l, t) })
}
