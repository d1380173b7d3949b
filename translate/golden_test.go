package translate

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.output.yaml from the current translation")

var goldenConfig = Config{
	VCluster:           "vc1",
	HostNamespace:      "host-ns",
	HostServiceAccount: "workload",
	APIServerHost:      "10.96.0.10",
	APIServerPort:      6443,
	DNSNameserver:      "10.96.0.53",
	NodeSelector:       map[string]string{"pool": "tenants"},
	Tolerations:        []corev1.Toleration{{Key: "tenants", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
	PriorityClasses:    []string{"tenant-high"},
	HostAnnotations:    []string{"example.com/allowed"},
	HostsImage:         "registry.example/podbridge-hosts:1",
}

// TestHostPodGolden translates each testdata/NAME.input.yaml (a virtual pod
// as the webhook sees it) and compares the host pod and its dependencies
// with NAME.output.yaml, or the refusal with NAME.error.txt (one error a line).
func TestHostPodGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, input := range inputs {
		base := strings.TrimSuffix(input, ".input.yaml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			raw, err := os.ReadFile(input)
			if err != nil {
				t.Fatal(err)
			}
			virtual := &corev1.Pod{}
			if err := yaml.UnmarshalStrict(raw, virtual); err != nil {
				t.Fatalf("decoding %s: %v", input, err)
			}
			host, deps, errs := HostPod(virtual, goldenConfig, "00000000-0000-0000-0000-000000000001")
			var got []byte
			outFile := base + ".output.yaml"
			if len(errs) > 0 {
				outFile = base + ".error.txt"
				for _, e := range errs {
					got = append(got, e.Error()+"\n"...)
				}
			} else {
				got = marshalGolden(t, host, deps)
				// The reflector finds a running pod's dependencies with
				// PodDependencies: it must name what the webhook created.
				if again := PodDependencies(virtual, goldenConfig); !reflect.DeepEqual(again, deps) {
					t.Errorf("PodDependencies = %+v, HostPod's dependencies %+v", again, deps)
				}
			}
			if *update {
				if err := os.WriteFile(outFile, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outFile)
			if err != nil {
				t.Fatalf("reading %s (run go test ./translate -update to create it): %v", outFile, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("translation of %s differs from %s (run with -update if intended):\n--- got\n%s\n--- want\n%s", input, outFile, got, want)
			}
		})
	}
}

func marshalGolden(t *testing.T, host *corev1.Pod, deps *Dependencies) []byte {
	t.Helper()
	pod, err := yaml.Marshal(host)
	if err != nil {
		t.Fatal(err)
	}
	d, err := yaml.Marshal(deps)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(pod, "---\n# dependencies\n"...), d...)
}
