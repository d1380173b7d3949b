package staticpolicy

import (
	"fmt"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/podbridge/podbridge/translate"
)

// Names of the policies; manifest-based admission requires the suffix
// .static.k8s.io, which no object made through the API may use.
const (
	NodesPolicy = "podbridge-nodes.static.k8s.io"
	ProxyPolicy = "podbridge-proxy.static.k8s.io"
)

// ProxiedSubresources are the proxy subresources the virtual apiserver
// refuses to everyone: each dials an address a tenant can write, with a
// scheme and port the request picks.
var ProxiedSubresources = []string{"nodes/proxy", "services/proxy", "pods/proxy"}

// Objects are the policies and their bindings for virtual nodes that
// advertise kubelet (empty: virtual nodes have no address).
func Objects(kubelet translate.KubeletEndpoint) []any {
	nodes := policy(NodesPolicy, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		[]string{"nodes", "nodes/status"}, nodeValidations(kubelet))
	proxy := policy(ProxyPolicy, []admissionregistrationv1.OperationType{admissionregistrationv1.Connect}, ProxiedSubresources,
		[]admissionregistrationv1.Validation{{
			Expression: "false",
			Message: "podbridge: the virtual apiserver proxies to no node, service or pod: it would dial an address a tenant writes " +
				"(a Node's, an Endpoints', a pod's status IP) from inside the platform's network. Use kubectl port-forward, logs or exec",
		}})
	return []any{nodes, binding(nodes), proxy, binding(proxy)}
}

// nodeValidations pin a Node's addresses and kubelet port to kubelet's.
func nodeValidations(kubelet translate.KubeletEndpoint) []admissionregistrationv1.Validation {
	addresses, ports, where := "[]", "[0]", "no address: podbridge serves no kubelet API here"
	if kubelet.Address != "" && kubelet.Port != 0 {
		addresses = "[" + strconv.Quote(kubelet.Address) + "]"
		ports = fmt.Sprintf("[0, %d]", kubelet.Port)
		where = fmt.Sprintf("podbridge's kubelet API, %s port %d", kubelet.Address, kubelet.Port)
	}
	return []admissionregistrationv1.Validation{
		{
			Expression: "object.?status.?addresses.orValue([]).all(a, a.address in " + addresses + ")",
			Message:    "a virtual Node's only address is " + where + ": the virtual apiserver dials it",
		},
		{
			Expression: "object.?status.?daemonEndpoints.?kubeletEndpoint.?Port.orValue(0) in " + ports,
			Message:    "a virtual Node's kubelet port is " + where + ": the virtual apiserver dials it",
		},
	}
}

func policy(name string, operations []admissionregistrationv1.OperationType, resources []string, validations []admissionregistrationv1.Validation) *admissionregistrationv1.ValidatingAdmissionPolicy {
	fail := admissionregistrationv1.Fail
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: operations,
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: resources},
				},
			}}},
			Validations: validations,
		},
	}
}

func binding(p *admissionregistrationv1.ValidatingAdmissionPolicy) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: p.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        p.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
}

// YAML is Objects as one multi-document file for staticManifestsDir.
func YAML(kubelet translate.KubeletEndpoint) ([]byte, error) {
	var out []byte
	for _, obj := range Objects(kubelet) {
		doc, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("encoding a static admission policy: %w", err)
		}
		out = append(append(out, "---\n"...), doc...)
	}
	return out, nil
}
