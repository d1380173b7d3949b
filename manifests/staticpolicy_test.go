package manifests

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sigs.k8s.io/yaml"

	"github.com/podbridge/podbridge/staticpolicy"
	"github.com/podbridge/podbridge/translate"
)

// Every host overlay gives the virtual apiserver podbridge's static
// admission policies as podbridge renders them for the overlay's
// namespace and name prefix (virtual nodes advertise
// <prefix>podbridge-kubelet.<namespace>.svc),
// and names the folder they are mounted at in its admission configuration.
func TestOverlaysCarryTheStaticPolicies(t *testing.T) {
	eachHostOverlay(t, func(t *testing.T, objects []*unstructured.Unstructured, prefix string) {
		var policies, admission string
		var namespace string
		for _, o := range objects {
			if o.GetKind() != "ConfigMap" {
				continue
			}
			data := stringData(o.Object)
			switch strings.TrimPrefix(o.GetName(), prefix) {
			case "podbridge-virtual-apiserver-policies":
				policies, namespace = data["podbridge.yaml"], o.GetNamespace()
			case "podbridge-virtual-apiserver-admission":
				admission = data["admission-configuration.yaml"]
			}
		}
		// The kubelet API's Service, as the reflector advertises it.
		want, err := staticpolicy.YAML(translate.KubeletEndpoint{Address: prefix + "podbridge-kubelet." + namespace + ".svc", Port: 10350})
		if err != nil {
			t.Fatal(err)
		}
		if !sameDocuments(t, policies, string(want)) {
			t.Errorf("the overlay's static policies differ from podbridge's for namespace %q:\n%s\nwant:\n%s", namespace, policies, want)
		}
		if !strings.Contains(admission, "staticManifestsDir: /etc/podbridge-admission-policies") {
			t.Errorf("the admission configuration loads no static policies:\n%s", admission)
		}
	})
}

// sameDocuments compares two multi-document YAML files object by object
// (kustomize re-encodes the text it carries).
func sameDocuments(t *testing.T, a, b string) bool {
	t.Helper()
	decode := func(text string) []any {
		var out []any
		for _, doc := range strings.Split(text, "\n---\n") {
			if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
				continue
			}
			var obj any
			if err := yaml.Unmarshal([]byte(strings.TrimPrefix(doc, "---\n")), &obj); err != nil {
				t.Fatalf("decoding %q: %v", doc, err)
			}
			out = append(out, obj)
		}
		return out
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

// stringData is a ConfigMap's data.
func stringData(obj map[string]any) map[string]string {
	out := map[string]string{}
	m, _ := obj["data"].(map[string]any)
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}
