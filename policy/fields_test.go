package policy

import (
	"os"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Every PodSpec field is classified, so a field a new Kubernetes version
// adds fails this test rather than being dropped without a decision; and
// the table names no field PodSpec lacks.
func TestEveryPodSpecFieldIsClassified(t *testing.T) {
	fields := podSpecJSONNames()
	for _, name := range fields {
		rule, ok := podSpecFields[name]
		if !ok {
			t.Errorf("PodSpec field %q is not classified in podSpecFields: carry, translate or refuse it", name)
			continue
		}
		switch rule.treatment {
		case Carried, Translated, Refused, AllowListed:
		default:
			t.Errorf("field %q: unknown treatment %q", name, rule.treatment)
		}
	}
	for name := range podSpecFields {
		if !contains(fields, name) {
			t.Errorf("podSpecFields names %q, which PodSpec does not have", name)
		}
	}
}

// docs/gate.md's table lists every field with the treatment the code gives it.
func TestDocsListEveryPodSpecField(t *testing.T) {
	raw, err := os.ReadFile("../docs/gate.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, name := range podSpecJSONNames() {
		rule := podSpecFields[name]
		row := "| `" + name + "` | " + string(rule.treatment) + " |"
		if !strings.Contains(readme, row) {
			t.Errorf("docs/gate.md has no row starting %q", row)
		}
	}
}

func podSpecJSONNames() []string {
	var names []string
	ty := reflect.TypeFor[corev1.PodSpec]()
	for i := range ty.NumField() {
		name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
