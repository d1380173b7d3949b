package controlplane

import (
	"strings"
	"testing"
)

// kwok runs an exec it has a rule for on this machine, as the user running
// the test bed: the default rules have none, so kwok answers every exec
// with an error and runs nothing, and a caller's extra rule adding one is
// refused before kwok starts.
func TestKwokRulesRunNoExecOnThisMachine(t *testing.T) {
	rules, err := defaultKwokRules(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := refuseKwokExec([]byte(rules)); err != nil {
		t.Errorf("the default kwok rules: %v", err)
	}
	for _, kind := range []string{"Exec", "ClusterExec"} {
		extra := "---\napiVersion: kwok.x-k8s.io/v1alpha1\nkind: " + kind + "\nmetadata: {name: x, namespace: y}\nspec:\n  execs:\n  - local: {workDir: /tmp}\n"
		config := string(kwokStages) + "\n" + extra + "\n" + rules
		if err := refuseKwokExec([]byte(config)); err == nil || !strings.Contains(err.Error(), kind) {
			t.Errorf("a %s rule among kwok's: %v, want it refused", kind, err)
		}
	}
}
