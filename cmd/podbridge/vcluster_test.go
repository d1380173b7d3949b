package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseNamed(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		name, ns  string
		wantError string
	}{
		{args: []string{"team-a", "-n", "tenants"}, name: "team-a", ns: "tenants"},
		{args: []string{"-n", "tenants", "team-a"}, name: "team-a", ns: "tenants"},
		{args: []string{"--namespace=tenants", "team-a"}, name: "team-a", ns: "tenants"},
		{args: []string{"-n", "tenants"}, wantError: "NAME is required"},
		{args: []string{"team-a", "team-b"}, wantError: "unexpected arguments"},
		{args: []string{"team-a", "--bogus"}, wantError: "bogus"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var h hostFlags
			h.bind(fs)
			name, err := parseNamed(fs, tc.args)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error %v, want one with %q", err, tc.wantError)
				}
				return
			}
			if err != nil || name != tc.name || h.namespace != tc.ns {
				t.Errorf("name %q namespace %q (%v), want %q %q", name, h.namespace, err, tc.name, tc.ns)
			}
		})
	}
}

func TestParseImages(t *testing.T) {
	got, err := parseImages([]string{"kine=registry.example/kine:v1", "podbridge=registry.example/pb@sha256:abc"})
	if err != nil || got["kine"] != "registry.example/kine:v1" || got["podbridge"] != "registry.example/pb@sha256:abc" {
		t.Errorf("%v (%v)", got, err)
	}
	for _, bad := range []string{"kine", "=x", "kine="} {
		if _, err := parseImages([]string{bad}); err == nil || !strings.Contains(err.Error(), "--image") {
			t.Errorf("--image %q: %v, want an error naming --image", bad, err)
		}
	}
}

// The commands refuse a missing namespace by its flag, before any host call.
func TestVClusterCommandsNeedANamespace(t *testing.T) {
	for name, run := range map[string]func([]string) error{
		"create":  func(a []string) error { return runCreate(t.Context(), a) },
		"connect": func(a []string) error { return runConnect(t.Context(), a) },
		"delete":  func(a []string) error { return runDelete(t.Context(), a) },
	} {
		if err := run([]string{"team-a"}); err == nil || !strings.Contains(err.Error(), "--namespace") {
			t.Errorf("%s without -n: %v, want an error naming --namespace", name, err)
		}
	}
	if err := runVClusterInit(t.Context(), []string{"--vcluster-name=a"}); err == nil || !strings.Contains(err.Error(), "--host-namespace") {
		t.Errorf("vcluster-init without its required flags: %v", err)
	}
}
