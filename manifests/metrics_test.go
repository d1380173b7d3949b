package manifests

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Each host overlay serves the webhook's and the reflector's metrics on
// the port named metrics, over HTTPS with podbridge's authentication and
// authorization (which needs TokenReview and SubjectAccessReview on the
// host), offers a ClusterRole for readers, and admits the metrics port
// only from pods of other namespaces a platform labelled: never from any
// source, nor from this namespace, where tenants' host pods live with any
// labels the tenant likes (issue 20, class 7).
func TestHostOverlaysServeMetricsSecurely(t *testing.T) {
	if eachHostOverlay(t, func(t *testing.T, objects []*unstructured.Unstructured, prefix string) {
		var policies []*networkingv1.NetworkPolicy
		deployments := map[string]*appsv1.Deployment{}
		clusterRoles := map[string]*rbacv1.ClusterRole{}
		var bindings []*rbacv1.ClusterRoleBinding
		var metricsService *corev1.Service
		for _, o := range objects {
			switch o.GetKind() {
			case "NetworkPolicy":
				policies = append(policies, convert[networkingv1.NetworkPolicy](t, o))
			case "Deployment":
				deployments[o.GetName()] = convert[appsv1.Deployment](t, o)
			case "ClusterRole":
				clusterRoles[o.GetName()] = convert[rbacv1.ClusterRole](t, o)
			case "ClusterRoleBinding":
				bindings = append(bindings, convert[rbacv1.ClusterRoleBinding](t, o))
			case "Service":
				if o.GetName() == prefix+"podbridge-metrics" {
					metricsService = convert[corev1.Service](t, o)
				}
			}
		}

		for _, name := range []string{prefix + "podbridge-webhook", prefix + "podbridge-reflector"} {
			d := deployments[name]
			if d == nil {
				t.Errorf("no Deployment %s", name)
				continue
			}
			port := metricsPort(t, d)
			if port == 0 {
				continue
			}
			checkMetricsPolicies(t, name, d, port, policies)
		}

		if metricsService == nil {
			t.Error("no Service podbridge-metrics")
		} else {
			for _, p := range metricsService.Spec.Ports {
				if p.TargetPort.String() != "metrics" {
					t.Errorf("Service podbridge-metrics port %s targets %s, not the port named metrics", p.Name, p.TargetPort.String())
				}
			}
		}

		// podbridge's own identity reviews scrapers' tokens and access.
		namespace := deployments[prefix+"podbridge-webhook"].GetNamespace()
		for _, want := range []rbacv1.PolicyRule{
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
		} {
			if !grantedTo(clusterRoles, bindings, namespace, prefix+"podbridge", want) {
				t.Errorf("ServiceAccount %s/"+prefix+"podbridge is not granted %v %v/%v cluster-wide: the metrics' authentication and authorization would fail", namespace, want.Verbs, want.APIGroups, want.Resources)
			}
		}
		// Readers get exactly GET /metrics.
		reader := clusterRoles[prefix+"podbridge-metrics-reader"]
		wantReader := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
		if reader == nil || !slices.EqualFunc(reader.Rules, wantReader, ruleEqual) {
			t.Errorf("ClusterRole podbridge-metrics-reader %+v, want rules %+v", reader, wantReader)
		}
	}) == 0 {
		t.Fatal("no host overlay")
	}
}

// metricsPort is the container port named metrics of d's container, which
// --metrics-bind-address must name (0 turns the metrics off).
func metricsPort(t *testing.T, d *appsv1.Deployment) int32 {
	t.Helper()
	containers := d.Spec.Template.Spec.Containers
	if len(containers) != 1 {
		t.Errorf("%s: %d containers, want podbridge's one", d.Name, len(containers))
		return 0
	}
	c := containers[0]
	var port int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			port = p.ContainerPort
		}
	}
	if port == 0 {
		t.Errorf("%s: no container port named metrics", d.Name)
		return 0
	}
	var bind []string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--metrics-bind-address="); ok {
			bind = append(bind, v)
		}
		if strings.HasPrefix(a, "--metrics-") && !strings.HasPrefix(a, "--metrics-bind-address=") && !strings.HasPrefix(a, "--metrics-cert-dir=") {
			t.Errorf("%s: unexpected metrics flag %s", d.Name, a)
		}
	}
	if len(bind) != 1 || !strings.HasSuffix(bind[0], ":"+strconv.Itoa(int(port))) {
		t.Errorf("%s: --metrics-bind-address %v, want one naming the metrics port %d", d.Name, bind, port)
	}
	return port
}

// checkMetricsPolicies fails unless d's pods are isolated for ingress and
// every rule that admits their metrics port names restricted peers.
func checkMetricsPolicies(t *testing.T, name string, d *appsv1.Deployment, port int32, policies []*networkingv1.NetworkPolicy) {
	t.Helper()
	podLabels := labels.Set(d.Spec.Template.Labels)
	isolated, admitted := false, false
	for _, p := range policies {
		selector, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		if p.Namespace != d.Namespace || !selector.Matches(podLabels) || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		isolated = true
		for i, rule := range p.Spec.Ingress {
			if !coversPort(rule.Ports, port) {
				continue
			}
			admitted = true
			if len(rule.From) == 0 {
				t.Errorf("%s: NetworkPolicy %s rule %d admits the metrics port from every source", name, p.Name, i)
			}
			for _, peer := range rule.From {
				checkMetricsPeer(t, name, p.Name, d.Namespace, peer)
			}
		}
	}
	if !isolated {
		t.Errorf("%s: no NetworkPolicy isolates its pods: the metrics port is open to every source", name)
	}
	if !admitted {
		t.Errorf("%s: no NetworkPolicy admits the metrics port: nothing could scrape it", name)
	}
}

// checkMetricsPeer fails a peer that a tenant pod could match: an IP
// block, a pod selector alone (this namespace), or a namespace selector
// that is empty or matches this namespace by its own name label.
func checkMetricsPeer(t *testing.T, name, policy, namespace string, peer networkingv1.NetworkPolicyPeer) {
	t.Helper()
	if peer.IPBlock != nil {
		t.Errorf("%s: NetworkPolicy %s admits the metrics port from IP block %s", name, policy, peer.IPBlock.CIDR)
		return
	}
	if peer.NamespaceSelector == nil {
		t.Errorf("%s: NetworkPolicy %s admits the metrics port from pods of its own namespace, where tenants' host pods run", name, policy)
		return
	}
	ns, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	if ns.Empty() {
		t.Errorf("%s: NetworkPolicy %s admits the metrics port from every namespace", name, policy)
	}
	if ns.Matches(labels.Set{corev1.LabelMetadataName: namespace}) {
		t.Errorf("%s: NetworkPolicy %s admits the metrics port from its own namespace %s (selector %q)", name, policy, namespace, ns)
	}
}

// coversPort reports whether a rule's ports include port (no ports: all).
func coversPort(ports []networkingv1.NetworkPolicyPort, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		switch {
		case p.Port == nil:
			return true
		case p.Port.String() == "metrics":
			return true
		case p.Port.IntVal == port && p.Port.StrVal == "":
			return true
		case p.EndPort != nil && p.Port.StrVal == "" && p.Port.IntVal <= port && port <= *p.EndPort:
			return true
		}
	}
	return false
}

// grantedTo reports whether a ClusterRoleBinding gives ServiceAccount
// namespace/name a ClusterRole with a rule covering want.
func grantedTo(roles map[string]*rbacv1.ClusterRole, bindings []*rbacv1.ClusterRoleBinding, namespace, name string, want rbacv1.PolicyRule) bool {
	for _, b := range bindings {
		bound := slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Namespace == namespace && s.Name == name
		})
		role := roles[b.RoleRef.Name]
		if !bound || b.RoleRef.Kind != "ClusterRole" || role == nil {
			continue
		}
		for _, r := range role.Rules {
			if slices.Equal(r.APIGroups, want.APIGroups) && slices.Equal(r.Resources, want.Resources) && slices.Equal(r.Verbs, want.Verbs) {
				return true
			}
		}
	}
	return false
}

func ruleEqual(a, b rbacv1.PolicyRule) bool {
	return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) &&
		slices.Equal(a.ResourceNames, b.ResourceNames) && slices.Equal(a.NonResourceURLs, b.NonResourceURLs) && slices.Equal(a.Verbs, b.Verbs)
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return out
}
