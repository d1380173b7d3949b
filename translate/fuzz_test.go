package translate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// FuzzHostPod feeds arbitrary JSON through decode → translate, as the
// webhook does with whatever the virtual apiserver sends (mutating
// admission runs before validation). Translation must never panic, and a
// pod it accepts must stay inside the tenant's reach on the host.
func FuzzHostPod(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*.input.yaml")
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		if js, err := yaml.YAMLToJSON(raw); err == nil {
			f.Add(js)
		}
	}
	f.Add([]byte(`{"metadata":{"name":"x","namespace":"y"},"spec":{"hostNetwork":true,"hostPID":true,"containers":[{"name":"c","securityContext":{"privileged":true}}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		virtual := &corev1.Pod{}
		if err := json.Unmarshal(data, virtual); err != nil {
			return
		}
		host, deps, errs := HostPod(virtual, goldenConfig, "sync")
		if len(errs) > 0 {
			return
		}
		checkContained(t, virtual, host, deps)
	})
}

// checkContained asserts what keeps a translated pod inside the tenant's
// reach on the host, whatever the virtual pod asked for.
func checkContained(t *testing.T, virtual, host *corev1.Pod, deps *Dependencies) {
	t.Helper()
	s := &host.Spec
	switch {
	case host.Namespace != goldenConfig.HostNamespace:
		t.Fatalf("host pod in namespace %q", host.Namespace)
	case len(validation.IsDNS1123Label(strings.ReplaceAll(host.Name, ".", "-"))) > 0:
		t.Fatalf("host name %q is not a valid name of label length", host.Name)
	case s.HostNetwork || s.HostPID || s.HostIPC || s.NodeName != "":
		t.Fatalf("host pod escapes: hostNetwork=%v hostPID=%v hostIPC=%v nodeName=%q", s.HostNetwork, s.HostPID, s.HostIPC, s.NodeName)
	case s.ServiceAccountName != goldenConfig.HostServiceAccount || s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken:
		t.Fatalf("host pod runs as %q with automount %v", s.ServiceAccountName, s.AutomountServiceAccountToken)
	case host.Labels[LabelVCluster] != goldenConfig.VCluster || host.Labels[LabelNamespace] != virtual.Namespace || host.Labels[LabelManagedBy] != ManagedByValue:
		t.Fatalf("host pod labels %v do not mark it as the tenant's", host.Labels)
	case host.Annotations[AnnotationName] != virtual.Name || host.Annotations[AnnotationNamespace] != virtual.Namespace:
		t.Fatalf("host pod annotations %v do not name the virtual pod", host.Annotations)
	}
	// Tenant metadata never steers the host: every label and annotation is
	// podbridge's own, a translated tenant key, or an allow-listed annotation.
	for k, v := range host.Labels {
		if !IsTenantKey(k) && !IsReserved(k) && k != LabelManagedBy {
			t.Fatalf("host label %s=%q is neither podbridge's nor under a tenant host key", k, v)
		}
	}
	for k := range host.Annotations {
		if !IsTenantKey(k) && !IsReserved(k) && !contains(goldenConfig.HostAnnotations, k) {
			t.Fatalf("host annotation %s is neither podbridge's, allow-listed nor under a tenant host key", k)
		}
	}
	for k, v := range virtual.Labels {
		if got, ok := host.Labels[TenantKey(k)]; !ok || got != v {
			t.Fatalf("tenant label %s=%q reached the host as %q", k, v, got)
		}
	}
	for _, v := range s.Volumes {
		if v.HostPath != nil || v.NFS != nil || v.ISCSI != nil {
			t.Fatalf("host pod mounts %s from outside the pod", v.Name)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil {
					t.Fatalf("host pod projects a host service-account token in %s", v.Name)
				}
			}
		}
	}
	for _, r := range append(append([]Reference{}, deps.ConfigMaps...), deps.Secrets...) {
		if r.HostName != HostName(r.Name, virtual.Namespace, goldenConfig.VCluster) {
			t.Fatalf("dependency %s maps to %s, outside the tenant's names", r.Name, r.HostName)
		}
	}
}

// FuzzHostName checks that the host-name mapping never yields an invalid
// name and never maps two virtual pods to one host name.
func FuzzHostName(f *testing.F) {
	f.Add("web", "default", "a-x", "b")
	f.Add("a-x-b", "c", "a", "b-x-c")
	f.Add(strings.Repeat("n", 60), "ns", strings.Repeat("n", 60), "ns2")
	f.Fuzz(func(t *testing.T, name1, ns1, name2, ns2 string) {
		if !validName(name1) || !validName(name2) || !validNamespace(ns1) || !validNamespace(ns2) {
			return
		}
		h1, h2 := HostName(name1, ns1, "vc"), HostName(name2, ns2, "vc")
		if len(h1) > maxLabelLength || len(validation.IsDNS1123Subdomain(h1)) > 0 {
			t.Fatalf("HostName(%q, %q) = %q is not a valid host pod name", name1, ns1, h1)
		}
		if h1 == h2 && (name1 != name2 || ns1 != ns2) {
			t.Fatalf("%s/%s and %s/%s both map to %q", ns1, name1, ns2, name2, h1)
		}
	})
}

// FuzzTenantKey checks the key scheme: two distinct valid tenant keys never
// share a host key, and each gives a valid key of the same kind (a label
// key, or an annotation key, whose prefix may be upper case) in the
// tenant's key space, never one of podbridge's own.
func FuzzTenantKey(f *testing.F) {
	long := strings.Repeat("a", 240) + ".example"
	f.Add("app", "tenant.podbridge.io/app")
	f.Add("example.com/app", "example.com.tenant.podbridge.io/app")
	f.Add(long+"/x", long+"b/x")
	f.Add(strings.Repeat("b", 253)+"/n", "Example.COM/n")
	f.Add("x.hashed-tenant.podbridge.io/n", long[:233]+"/n")
	f.Fuzz(func(t *testing.T, k1, k2 string) {
		h1, h2 := TenantKey(k1), TenantKey(k2)
		for _, c := range []struct{ key, host string }{{k1, h1}, {k2, h2}} {
			switch {
			case isLabelKey(c.key) && !isLabelKey(c.host):
				t.Fatalf("label key %q maps to invalid label key %q: %v", c.key, c.host, validation.IsQualifiedName(c.host))
			case isAnnotationKey(c.key) && !isAnnotationKey(c.host):
				t.Fatalf("annotation key %q maps to invalid annotation key %q", c.key, c.host)
			case isAnnotationKey(c.key) && (!IsTenantKey(c.host) || IsReserved(c.host) || c.host == LabelManagedBy):
				t.Fatalf("key %q maps to %q, outside the tenant's key space", c.key, c.host)
			}
		}
		if k1 != k2 && h1 == h2 && isAnnotationKey(k1) && isAnnotationKey(k2) {
			t.Fatalf("%q and %q both map to %q", k1, k2, h1)
		}
	})
}

func isLabelKey(k string) bool      { return len(validation.IsQualifiedName(k)) == 0 }
func isAnnotationKey(k string) bool { return len(validation.IsQualifiedName(strings.ToLower(k))) == 0 }

func validName(s string) bool      { return len(validation.IsDNS1123Subdomain(s)) == 0 }
func validNamespace(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }
