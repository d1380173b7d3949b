package translate

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestHostName(t *testing.T) {
	long := strings.Repeat("a", 60)
	tests := []struct {
		name, namespace, vcluster string
		want                      string // "" when the hashed form is expected
	}{
		{"web", "default", "dev", "web-x-default-x-dev"},
		{"web-7d4b9c-abcde", "team-a", "prod", "web-7d4b9c-abcde-x-team-a-x-prod"},
		{long, "default", "dev", ""},
		{"a-x", "b", "dev", ""},   // would read as name "a", namespace "x-b"
		{"a", "x-b", "dev", ""},   // the other reading
		{"a-x-b", "c", "dev", ""}, // contains the separator
		{"web.v1", "default", "dev", "web.v1-x-default-x-dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.namespace, func(t *testing.T) {
			got := HostName(tt.name, tt.namespace, tt.vcluster)
			if tt.want != "" && got != tt.want {
				t.Errorf("HostName = %q, want %q", got, tt.want)
			}
			if tt.want == "" && strings.Count(got, separator) == 2 && strings.HasSuffix(got, separator+tt.vcluster) {
				t.Errorf("HostName = %q, want the hashed form", got)
			}
			if errs := validation.IsDNS1123Label(strings.ReplaceAll(got, ".", "-")); len(errs) > 0 {
				t.Errorf("HostName = %q is not a valid pod name of label length: %v", got, errs)
			}
			if again := HostName(tt.name, tt.namespace, tt.vcluster); again != got {
				t.Errorf("HostName is not deterministic: %q then %q", got, again)
			}
		})
	}
}

func TestHostNameDistinguishesSeparatorLookalikes(t *testing.T) {
	pairs := [][2][3]string{
		{{"a-x", "b", "dev"}, {"a", "x-b", "dev"}},
		{{"a-x-b", "c", "dev"}, {"a", "b-x-c", "dev"}},
		{{strings.Repeat("n", 50), "ns1", "dev"}, {strings.Repeat("n", 50), "ns2", "dev"}},
	}
	for _, p := range pairs {
		a, b := HostName(p[0][0], p[0][1], p[0][2]), HostName(p[1][0], p[1][1], p[1][2])
		if a == b {
			t.Errorf("%v and %v both map to %q", p[0], p[1], a)
		}
	}
}

func TestHostname(t *testing.T) {
	tests := map[string]string{
		"web":                          "web",
		"web.v1":                       "web-v1",
		strings.Repeat("a", 70):        strings.Repeat("a", 63),
		strings.Repeat("a", 62) + "-b": strings.Repeat("a", 62),
	}
	for in, want := range tests {
		if got := Hostname(in); got != want {
			t.Errorf("Hostname(%q) = %q, want %q", in, got, want)
		}
		if errs := validation.IsDNS1123Label(Hostname(in)); len(errs) > 0 {
			t.Errorf("Hostname(%q) = %q is not a DNS label: %v", in, Hostname(in), errs)
		}
	}
}
