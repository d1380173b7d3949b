package translate

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestRuntimeClassOf(t *testing.T) {
	gvisor := HostRuntimeClass{Name: "gvisor", Handler: "runsc"}
	kata := HostRuntimeClass{Name: "kata", Handler: "kata"}
	kataSmall := HostRuntimeClass{Name: "kata-small", Handler: "kata"}
	path := field.NewPath("spec", "runtimeClassName")
	for _, tc := range []struct {
		name, class, handler string
		allowed              []HostRuntimeClass
		want                 string
		refusal              []string // what the refusal's message names
	}{
		{name: "an allowed class by name", class: "gvisor", handler: "runc", allowed: []HostRuntimeClass{gvisor}, want: "gvisor"},
		{name: "the tenant's own class by its handler", class: "sandboxed", handler: "runsc", allowed: []HostRuntimeClass{gvisor, kata}, want: "gvisor"},
		{name: "a handler no allowed class has", class: "privileged", handler: "runc", allowed: []HostRuntimeClass{gvisor, kata},
			refusal: []string{"spec.runtimeClassName", `"privileged"`, `handler "runc"`, "--allowed-runtime-classes", "gvisor (handler runsc), kata (handler kata)"}},
		{name: "nothing allowed", class: "sandboxed", handler: "runsc",
			refusal: []string{"--allowed-runtime-classes", "allowed: none"}},
		{name: "a handler of two allowed classes", class: "vm", handler: "kata", allowed: []HostRuntimeClass{kataSmall, kata},
			refusal: []string{`handler "kata"`, "kata, kata-small", "name one of them"}},
		{name: "one of two by name", class: "kata-small", handler: "kata", allowed: []HostRuntimeClass{kata, kataSmall}, want: "kata-small"},
		// The tenant's class named like a host class the platform does not
		// allow reaches only an allowed one, by handler.
		{name: "named like an unallowed host class", class: "runc-privileged", handler: "runsc", allowed: []HostRuntimeClass{gvisor}, want: "gvisor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, refusal := RuntimeClassOf(path, tc.class, tc.handler, tc.allowed)
			if tc.refusal == nil {
				if refusal != nil || got != tc.want {
					t.Fatalf("RuntimeClassOf = %q, %v; want %q", got, refusal, tc.want)
				}
				return
			}
			if refusal == nil {
				t.Fatalf("RuntimeClassOf = %q, want a refusal", got)
			}
			for _, want := range tc.refusal {
				if !strings.Contains(refusal.Error(), want) {
					t.Errorf("refusal %q does not name %q", refusal.Error(), want)
				}
			}
		})
	}
}
