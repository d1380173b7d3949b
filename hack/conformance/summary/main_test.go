package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// report is a JUnit report shaped as ginkgo writes it: setup nodes, specs
// the focus left out (skipped, no message of their own), a spec that
// skipped itself, passes and failures.
const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" disabled="1" errors="0" failures="2" time="60">
  <testsuite name="Kubernetes e2e suite" tests="6" disabled="1" skipped="2" errors="0" failures="2" time="60">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1"></testcase>
    <testcase name="[It] [sig-node] Pods should get a host IP [Conformance] [NodeConformance] [sig-node, NodeConformance, Conformance]" classname="Kubernetes e2e suite" status="passed" time="3"></testcase>
    <testcase name="[It] [sig-storage] Projected downwardAPI should update labels on modification [Conformance] [NodeConformance]" classname="Kubernetes e2e suite" status="failed" time="0.1">
      <failure message="Error creating Pod: admission webhook &#34;pods.podbridge.podbridge.io&#34; denied the request: ... the whole map cannot be shown as the virtual pod has it" type="failed">[FAILED] Error creating Pod: ...&#xA;In [It] at: projected_downwardapi.go:161</failure>
    </testcase>
    <testcase name="[It] [sig-node] Sysctls should support sysctls [Conformance] [sig-node, Conformance]" classname="Kubernetes e2e suite" status="failed" time="2">
      <failure message="" type="failed">&#xA;[FAILED] Expected&#xA;    &lt;*v1.Event&gt;&#xA;</failure>
    </testcase>
    <testcase name="[It] [sig-apps] Deployment should run [Conformance]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[It] [sig-node] Pods should run on Windows [Conformance]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped - Only supported for node OS distro [windows] (not linux)"></skipped>
    </testcase>
  </testsuite>
</testsuites>`

func TestSummary(t *testing.T) {
	file := filepath.Join(t.TempDir(), "junit.xml")
	if err := os.WriteFile(file, []byte(report), 0o600); err != nil {
		t.Fatal(err)
	}
	specs, err := readJUnit(file)
	if err != nil {
		t.Fatal(err)
	}
	causes := filepath.Join(t.TempDir(), "causes.txt")
	if err := os.WriteFile(causes, []byte("# a comment\nthe whole map cannot be shown # not built yet: whole-map downward API\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := readCauses(causes)
	if err != nil {
		t.Fatal(err)
	}
	s := summarize(specs, rules)
	if want := (counts{Selected: 4, Passed: 1, Failed: 2, Skipped: 1}); s.Total != want {
		t.Errorf("total = %+v, want %+v", s.Total, want)
	}
	if want := (counts{Selected: 3, Passed: 1, Failed: 1, Skipped: 1}); *s.BySIG["sig-node"] != want {
		t.Errorf("sig-node = %+v, want %+v", *s.BySIG["sig-node"], want)
	}
	if _, ok := s.BySIG["sig-apps"]; ok {
		t.Error("a spec the focus left out was counted")
	}
	want := []failure{
		{
			Name:      "[sig-node] Sysctls should support sysctls [Conformance]",
			FirstLine: "Expected",
			Cause:     unclassified,
		},
		{
			Name:      "[sig-storage] Projected downwardAPI should update labels on modification [Conformance] [NodeConformance]",
			FirstLine: `Error creating Pod: admission webhook "pods.podbridge.podbridge.io" denied the request: ... the whole map cannot be shown as the virtual pod has it`,
			Cause:     "not built yet: whole-map downward API",
		},
	}
	if len(s.Fails) != len(want) {
		t.Fatalf("failures = %+v, want %+v", s.Fails, want)
	}
	for i := range want {
		if s.Fails[i] != want[i] {
			t.Errorf("failure %d = %+v, want %+v", i, s.Fails[i], want[i])
		}
	}
	var out strings.Builder
	if err := write(&out, s, "1m0s"); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Conformance run: 4 selected, 1 passed, 2 failed, 1 skipped; wall time 1m0s",
		"    1  not built yet: whole-map downward API",
		"Only supported for node OS distro",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("summary lacks %q:\n%s", line, out.String())
		}
	}
}

func TestReadCausesRefusesALineWithoutAClass(t *testing.T) {
	file := filepath.Join(t.TempDir(), "causes.txt")
	if err := os.WriteFile(file, []byte("just a pattern\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readCauses(file); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("err = %v, want one naming line 1", err)
	}
}
