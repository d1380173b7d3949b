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

// jsonFieldNames are the JSON names of ty's fields, each after prefix.
func jsonFieldNames(prefix string, ty reflect.Type) []string {
	var names []string
	for i := range ty.NumField() {
		name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
		names = append(names, prefix+name)
	}
	return names
}

// checkEveryFieldClassified fails t for each of fields that rules (the
// table named table) does not classify as carried, translated, refused or
// allow-listed, and for each entry of rules that names none of fields.
func checkEveryFieldClassified(t *testing.T, table string, rules map[string]fieldRule, fields []string) {
	t.Helper()
	for _, name := range fields {
		rule, ok := rules[name]
		if !ok {
			t.Errorf("field %q is not classified in %s", name, table)
			continue
		}
		switch rule.treatment {
		case Carried, Translated, Refused, AllowListed:
		default:
			t.Errorf("field %q: unknown treatment %q", name, rule.treatment)
		}
	}
	for name := range rules {
		if !contains(fields, name) {
			t.Errorf("%s names %q, which is no field of its kind", table, name)
		}
	}
}

// checkDocsListEveryField fails t for each entry of rules that the table
// of doc (a path from this package) does not list with its treatment and
// how.
func checkDocsListEveryField(t *testing.T, doc string, rules map[string]fieldRule) {
	t.Helper()
	raw, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for name, rule := range rules {
		row := "| `" + name + "` | " + string(rule.treatment) + " | " + rule.How + " |"
		if !strings.Contains(string(raw), row) {
			t.Errorf("%s has no row %q", doc, row)
		}
	}
}

// checkRefusal fails t unless got, a gate's answer, is empty when want is,
// and otherwise names every string of want.
func checkRefusal(t *testing.T, got error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if got != nil {
			t.Errorf("refused: %v", got)
		}
		return
	}
	if got == nil {
		t.Fatalf("admitted, want errors naming %v", want)
	}
	for _, w := range want {
		if !strings.Contains(got.Error(), w) {
			t.Errorf("errors %q do not name %q", got, w)
		}
	}
}
