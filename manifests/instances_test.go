package manifests

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/internal/render"
)

// Two podbridges in one host namespace, each the host base under a
// namePrefix of its own (as two overlays, or one overlay applied twice
// with different prefixes), share no name: no object (cluster-scoped ones
// included), and nothing their arguments, volumes, bindings and
// cert-manager objects refer to: Secrets (CAs, serving, client, the
// virtual kubeconfig), Services (webhook, kubelet API), ServiceAccounts
// (podbridge's, the host pods'), Certificates and Issuers. No Service,
// NetworkPolicy or PodDisruptionBudget of one selects the other's pods.
// Otherwise one podbridge would adopt the other's CAs, advertise the
// other's kubelet API, or run its tenant's pods as the other's account.
func TestTwoInstancesInOneNamespaceShareNoName(t *testing.T) {
	for _, component := range []string{"cert-manager", "self-managed"} {
		t.Run(component, func(t *testing.T) {
			fSys := manifestsInMemory(t)
			build := func(prefix string) []*unstructured.Unstructured {
				dir := "/instances/" + strings.TrimSuffix(prefix, "-")
				// What an overlay sets besides its prefix: the virtual
				// cluster's name and, in cert-manager mode, the serving
				// certificates' host names (whole names, which a prefix
				// cannot reach).
				kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: shared
namePrefix: %[1]s
resources:
- ../../manifests/host/base
components:
- ../../manifests/host/components/%[2]s
patches:
- target: {kind: ConfigMap, name: podbridge-config}
  patch: |-
    - {op: replace, path: /data/vcluster-name, value: %[3]s}
- target: {kind: ServiceAccount, name: podbridge-workloads}
  patch: |-
    - {op: replace, path: /metadata/annotations/podbridge.io~1owner, value: %[3]s}
`, prefix, component, strings.TrimSuffix(prefix, "-"))
				if component == "cert-manager" {
					kustomization += fmt.Sprintf(`- target: {kind: Certificate, name: podbridge-webhook}
  patch: |-
    - {op: replace, path: /spec/dnsNames/0, value: %[1]spodbridge-webhook.shared.svc}
- target: {kind: Certificate, name: podbridge-kubelet}
  patch: |-
    - {op: replace, path: /spec/dnsNames/0, value: %[1]spodbridge-kubelet.shared.svc}
`, prefix)
				}
				if err := fSys.MkdirAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := fSys.WriteFile(dir+"/kustomization.yaml", []byte(kustomization)); err != nil {
					t.Fatal(err)
				}
				objects, err := render.KustomizationIn(fSys, dir)
				if err != nil {
					t.Fatal(err)
				}
				return objects
			}
			one, two := build("one-"), build("two-")
			refsOne, refsTwo := references(t, "one-", one), references(t, "two-", two)
			for _, ref := range slices.Sorted(maps.Keys(refsOne)) {
				if refsTwo[ref] != "" {
					t.Errorf("both podbridges name %s: one in %s, two in %s", ref, refsOne[ref], refsTwo[ref])
				}
			}
			for _, o := range one {
				for _, p := range two {
					if o.GetKind() == p.GetKind() && o.GetName() == p.GetName() && o.GetNamespace() == p.GetNamespace() {
						t.Errorf("both podbridges make %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
					}
				}
			}
			noSelectorReaches(t, "one", one, "two", two)
			noSelectorReaches(t, "two", two, "one", one)
		})
	}
}

// The example overlays, in two host namespaces, make no cluster-scoped
// object of the same name: applying one would rewrite the other's (a
// ClusterRoleBinding then binds only the last namespace's podbridge).
func TestExampleOverlaysShareNoClusterScopedObject(t *testing.T) {
	seen := map[string]string{}
	for _, dir := range []string{"overlays/example", "overlays/example-self-managed"} {
		objects, err := render.Kustomization(dir)
		if err != nil {
			t.Fatal(err)
		}
		clusterScoped := 0
		for _, o := range objects {
			if o.GetNamespace() != "" {
				continue
			}
			clusterScoped++
			key := o.GetKind() + "/" + o.GetName()
			if seen[key] != "" {
				t.Errorf("%s and %s both make %s", seen[key], dir, key)
			}
			seen[key] = dir
		}
		if clusterScoped == 0 {
			t.Errorf("%s makes no cluster-scoped object: the test checks nothing", dir)
		}
	}
}

// Each host overlay's podbridge, run with the overlay's arguments, finds
// the objects its arguments name in its own build: the prefix reached
// every argument together with the object it names.
func TestOverlayArgumentsNameTheirOwnObjects(t *testing.T) {
	eachHostOverlay(t, func(t *testing.T, objects []*unstructured.Unstructured, prefix string) {
		references(t, prefix, objects)
		// cert-manager issues the virtual apiserver's client certificate
		// for the name the webhook accepts by default.
		var vcluster, namespace, commonName, accountOwner string
		for _, o := range objects {
			switch o.GetKind() + "/" + strings.TrimPrefix(o.GetName(), prefix) {
			case "ConfigMap/podbridge-config":
				vcluster, namespace = stringData(o.Object)["vcluster-name"], o.GetNamespace()
			case "Certificate/podbridge-webhook-client":
				commonName, _, _ = unstructured.NestedString(o.Object, "spec", "commonName")
			case "ServiceAccount/podbridge-workloads":
				accountOwner = o.GetAnnotations()[ownership.Annotation]
			}
		}
		if want := certs.ClientCommonNameFor(namespace, vcluster); commonName != "" && commonName != want {
			t.Errorf("the client Certificate is for %q; the webhook of virtual cluster %q in %q accepts %q", commonName, vcluster, namespace, want)
		}
		// The webhook runs host pods only as an account marked as its
		// virtual cluster's.
		if accountOwner != vcluster {
			t.Errorf("the host pods' account is marked %s=%q; the webhook of virtual cluster %q refuses it", ownership.Annotation, accountOwner, vcluster)
		}
	})
}

// nameFlags are podbridge's flags whose values name host objects, by kind;
// a Service is named by the first label of a host name.
var nameFlags = map[string]string{
	"host-service-account":      "ServiceAccount",
	"cert-secret":               "Secret",
	"client-ca-secret":          "Secret",
	"kubelet-cert-secret":       "Secret",
	"certificate-name":          "Certificate",
	"kubelet-certificate-name":  "Certificate",
	"register-url":              "Service",
	"cert-hosts":                "Service",
	"kubelet-advertise-address": "Service",
}

var envReference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// references returns every host object the build of one podbridge
// (namePrefix prefix) refers to, as "Kind/name" → where. It fails the
// test for an argument that names an object without the prefix, and for
// a Service, ServiceAccount, Certificate or Issuer referred to that the
// build does not make, or a Certificate argument whose Secret argument
// is not that Certificate's.
func references(t *testing.T, prefix string, objects []*unstructured.Unstructured) map[string]string {
	t.Helper()
	refs := map[string]string{}
	add := func(kind, name, where string) {
		if name != "" {
			refs[kind+"/"+name] = where
		}
	}
	made := map[string]*unstructured.Unstructured{}
	for _, o := range objects {
		made[o.GetKind()+"/"+o.GetName()] = o
	}
	for _, o := range objects {
		where := o.GetKind() + " " + o.GetName()
		switch o.GetKind() {
		case "Deployment":
			d := convert[appsv1.Deployment](t, o)
			spec := d.Spec.Template.Spec
			add("ServiceAccount", spec.ServiceAccountName, where+" serviceAccountName")
			for _, v := range spec.Volumes {
				if v.Secret != nil {
					add("Secret", v.Secret.SecretName, where+" volume "+v.Name)
				}
			}
			for _, c := range spec.Containers {
				flags := containerFlags(t, d, c)
				for flag, value := range flags {
					for _, word := range strings.FieldsFunc(value, func(r rune) bool { return strings.ContainsRune("=,/:.", r) }) {
						if strings.HasPrefix(word, "podbridge-") && !strings.HasPrefix(word, prefix) {
							t.Errorf("%s: --%s=%s names %q, which the namePrefix %q did not reach", where, flag, value, word, prefix)
						}
					}
					kind, ok := nameFlags[flag]
					if !ok {
						continue
					}
					name := value
					if kind == "Service" {
						name = strings.TrimPrefix(name, "https://")
						name, _, _ = strings.Cut(name, ".")
					}
					add(kind, name, where+" --"+flag)
				}
				// A Certificate's Secret is the one the same component reads.
				for certFlag, secretFlag := range map[string]string{"certificate-name": "cert-secret", "kubelet-certificate-name": "kubelet-cert-secret"} {
					if crt := made["Certificate/"+flags[certFlag]]; crt != nil {
						if secret, _, _ := unstructured.NestedString(crt.Object, "spec", "secretName"); secret != flags[secretFlag] {
							t.Errorf("%s: --%s=%s, but Certificate %s issues Secret %s", where, secretFlag, flags[secretFlag], flags[certFlag], secret)
						}
					}
				}
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
						add("ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name, where+" env "+e.Name)
					}
				}
			}
		case "Certificate":
			secret, _, _ := unstructured.NestedString(o.Object, "spec", "secretName")
			issuer, _, _ := unstructured.NestedString(o.Object, "spec", "issuerRef", "name")
			add("Secret", secret, where+" secretName")
			add("Issuer", issuer, where+" issuerRef")
			hosts, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "dnsNames")
			for _, h := range hosts {
				service, _, _ := strings.Cut(h, ".")
				add("Service", service, where+" dnsNames")
			}
		case "Issuer":
			secret, _, _ := unstructured.NestedString(o.Object, "spec", "ca", "secretName")
			add("Secret", secret, where+" ca.secretName")
		case "RoleBinding", "ClusterRoleBinding":
			b := convert[rbacv1.ClusterRoleBinding](t, o) // the same fields
			add(b.RoleRef.Kind, b.RoleRef.Name, where+" roleRef")
			for _, s := range b.Subjects {
				add(s.Kind, s.Name, where+" subject")
			}
		}
	}
	for ref, where := range refs {
		kind, _, _ := strings.Cut(ref, "/")
		switch kind {
		case "Service", "ServiceAccount", "Certificate", "Issuer", "ConfigMap", "Role", "ClusterRole":
			if made[ref] == nil {
				t.Errorf("%s refers to %s, which this podbridge's build does not make", where, ref)
			}
		}
	}
	return refs
}

// containerFlags returns c's arguments as flag → value, with $(VAR)
// expanded as the kubelet expands it from c's env: literal values, the
// pod's namespace, and its template's annotations (where the base keeps
// the names arguments refer to).
func containerFlags(t *testing.T, d *appsv1.Deployment, c corev1.Container) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			vars[e.Name] = d.Namespace
		case e.ValueFrom.FieldRef != nil && strings.HasPrefix(e.ValueFrom.FieldRef.FieldPath, "metadata.annotations['"):
			key := strings.TrimSuffix(strings.TrimPrefix(e.ValueFrom.FieldRef.FieldPath, "metadata.annotations['"), "']")
			value, ok := d.Spec.Template.Annotations[key]
			if !ok {
				t.Errorf("%s: env %s reads annotation %s, which the pod template lacks", d.Name, e.Name, key)
			}
			vars[e.Name] = value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			vars[e.Name] = "configmap-value" // the virtual cluster's name: no object's
		}
	}
	flags := map[string]string{}
	for _, arg := range c.Args {
		expanded := envReference.ReplaceAllStringFunc(arg, func(ref string) string {
			name := envReference.FindStringSubmatch(ref)[1]
			value, ok := vars[name]
			if !ok {
				t.Errorf("%s: argument %s refers to $(%s), which the container's env lacks", d.Name, arg, name)
			}
			return value
		})
		flag, value, ok := strings.Cut(strings.TrimLeft(expanded, "-"), "=")
		if ok && strings.HasPrefix(expanded, "-") {
			flags[flag] = value
		}
	}
	return flags
}

// noSelectorReaches fails when a Service, NetworkPolicy or
// PodDisruptionBudget of podbridge a selects a pod of podbridge b.
func noSelectorReaches(t *testing.T, a string, objectsA []*unstructured.Unstructured, b string, objectsB []*unstructured.Unstructured) {
	t.Helper()
	var pods []labels.Set
	for _, o := range objectsB {
		if o.GetKind() == "Deployment" {
			pods = append(pods, convert[appsv1.Deployment](t, o).Spec.Template.Labels)
		}
	}
	for _, o := range objectsA {
		var selector labels.Selector
		var err error
		switch o.GetKind() {
		case "Service":
			selector = labels.SelectorFromSet(convert[corev1.Service](t, o).Spec.Selector)
		case "NetworkPolicy":
			selector, err = metav1.LabelSelectorAsSelector(&convert[networkingv1.NetworkPolicy](t, o).Spec.PodSelector)
		case "PodDisruptionBudget":
			selector, err = metav1.LabelSelectorAsSelector(convert[policyv1.PodDisruptionBudget](t, o).Spec.Selector)
		default:
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, pod := range pods {
			if selector.Matches(pod) {
				t.Errorf("%s's %s %s selects a pod of %s's (labels %v)", a, o.GetKind(), o.GetName(), b, pod)
			}
		}
	}
}

// manifestsInMemory copies this folder's host manifests into an in-memory
// file system under /manifests/host, where a test writes overlays beside
// them (kustomize refuses absolute paths to a base).
func manifestsInMemory(t *testing.T) filesys.FileSystem {
	t.Helper()
	fSys := filesys.MakeFsInMemory()
	err := filepath.WalkDir("host", func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		target := "/manifests/" + filepath.ToSlash(path)
		if err := fSys.MkdirAll(filepath.Dir(target)); err != nil {
			return err
		}
		return fSys.WriteFile(target, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return fSys
}
