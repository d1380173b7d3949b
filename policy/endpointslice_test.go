package policy

import (
	"reflect"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// endpointSliceJSONPaths are the JSON paths of an EndpointSlice's fields,
// nested ones under their parent's: what endpointSliceFields must classify.
func endpointSliceJSONPaths() []string {
	var paths []string
	var walk func(ty reflect.Type, prefix string)
	walk = func(ty reflect.Type, prefix string) {
		for i := range ty.NumField() {
			name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
			if name == "" {
				continue // inline TypeMeta
			}
			paths = append(paths, prefix+name)
			switch ty.Field(i).Type {
			case reflect.TypeFor[[]discoveryv1.Endpoint](), reflect.TypeFor[[]discoveryv1.EndpointPort](), reflect.TypeFor[discoveryv1.EndpointConditions]():
				elem := ty.Field(i).Type
				if elem.Kind() == reflect.Slice {
					elem = elem.Elem()
				}
				walk(elem, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[discoveryv1.EndpointSlice](), "")
	return paths
}

// Every EndpointSlice field (of the slice, its endpoints, their conditions
// and its ports) has a decision, so a field a new Kubernetes version adds
// fails this test rather than reaching the host unexamined.
func TestEveryEndpointSliceFieldIsClassified(t *testing.T) {
	paths := endpointSliceJSONPaths()
	for _, name := range paths {
		rule, ok := endpointSliceFields[name]
		if !ok {
			t.Errorf("EndpointSlice field %q is not classified in endpointSliceFields", name)
			continue
		}
		switch rule.treatment {
		case Carried, Translated, AllowListed, Dropped:
		default:
			t.Errorf("field %q: unknown treatment %q", name, rule.treatment)
		}
	}
	for name := range endpointSliceFields {
		if !contains(paths, name) {
			t.Errorf("endpointSliceFields names %q, which EndpointSlice does not have", name)
		}
	}
}

// docs/services.md's EndpointSlice table lists every field with the code's treatment.
func TestDocsListEveryEndpointSliceField(t *testing.T) {
	checkDocsListEveryField(t, "../docs/services.md", endpointSliceFields)
}
