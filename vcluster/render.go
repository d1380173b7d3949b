// Package vcluster puts virtual clusters on a host cluster: it renders the
// kustomize package manifests/virtualcluster for one virtual cluster
// (Render), applies, waits for, connects to, lists and deletes them (the
// `podbridge create`, `connect`, `list` and `delete` commands), and
// prepares the control-plane pod's certificates and kubeconfigs (Init, its
// init container).
package vcluster

import (
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/render"
	"github.com/podbridge/podbridge/manifests/virtualcluster"
	"github.com/podbridge/podbridge/translate"
)

// Labels on every object of a virtual cluster's package.
const (
	LabelPartOf   = "app.kubernetes.io/part-of"
	PartOfValue   = "podbridge-vcluster"
	LabelInstance = "app.kubernetes.io/instance"
	// LabelName is on the package's objects and on its templates (the
	// control-plane pod and its claim, which carry no part-of label).
	LabelName = "app.kubernetes.io/name"
	NameValue = "podbridge-vcluster"
	// LabelNamespace is on the cluster-scoped objects: the host namespace
	// of the virtual cluster they belong to.
	LabelNamespace = "podbridge.io/vcluster-namespace"
)

// APIServerService is the Service in front of virtual cluster name's
// apiserver (the package's namePrefix is name-, as for the names below).
func APIServerService(name string) string { return name + "-apiserver" }

// KubeconfigSecret is the host Secret holding the virtual cluster's admin
// kubeconfig (key KubeconfigKey).
func KubeconfigSecret(name string) string { return name + "-kubeconfig" }

// ControlPlane is the StatefulSet (and the prefix of its pod and claim).
func ControlPlane(name string) string { return name + "-control-plane" }

// ConfigMapName is the ConfigMap of the per-cluster values.
func ConfigMapName(name string) string { return name + "-config" }

// KubeconfigKey is the key of the kubeconfig in KubeconfigSecret.
const KubeconfigKey = "kubeconfig"

// Options are what differs between virtual clusters.
type Options struct {
	// Name and Namespace place the virtual cluster on the host.
	Name, Namespace string
	// ServiceCIDR is the host's Service range.
	ServiceCIDR netip.Prefix
	// APIServerIP is the ClusterIP of the Service in front of the virtual
	// apiserver; DNSIP the free address the tenant's kube-dns Service gets.
	APIServerIP, DNSIP netip.Addr
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string
	// HostAPIServer are the addresses and port the host apiserver serves
	// pods at (its default/kubernetes EndpointSlice's): the control-plane
	// pod's egress allows them.
	HostAPIServer []netip.AddrPort
	// Images replace the package's images: the base's name (podbridge,
	// kube-apiserver, kube-controller-manager, kine) to a reference.
	Images map[string]string
	// Patches are strategic-merge patches of the package's objects, by
	// their names before the prefix (e.g. the StatefulSet control-plane's
	// nodeSelector and tolerations).
	Patches []string
	// PodbridgeFlags are appended to the webhook's and the reflector's
	// arguments (the placement and allow-list flags a platform sets).
	PodbridgeFlags []string
	// Store is StoreKine (empty: one replica, SQLite on a claim) or
	// StoreEtcd (the platform's etcd, Etcd; then several replicas).
	Store string
	Etcd  EtcdOptions
	// Replicas of the control plane (0: 1 with kine, 3 with etcd).
	Replicas int
	// Certificates is IssuerSelfManaged (empty) or IssuerCertManager.
	Certificates string
}

// imageNames are the package's images, by the names the base gives them.
var imageNames = map[string]string{
	"podbridge": "ghcr.io/podbridge/podbridge", "kube-apiserver": "ghcr.io/podbridge/kube-apiserver",
	"kube-controller-manager": "ghcr.io/podbridge/kube-controller-manager", "kine": "ghcr.io/podbridge/kine",
}

// Validate says what is wrong with o, naming each field by its flag.
func (o *Options) Validate() error {
	var errs field.ErrorList
	if msgs := validation.IsDNS1123Label(o.Name); len(msgs) > 0 {
		errs = append(errs, field.Invalid(field.NewPath("NAME"), o.Name, strings.Join(msgs, "; ")))
	} else if len(o.Name) > 40 {
		// The longest name the package derives, name-control-plane-0 on
		// the claim data-name-control-plane-0, must stay a label.
		errs = append(errs, field.TooLong(field.NewPath("NAME"), o.Name, 40))
	} else if msg := reservedName(o.Name); msg != "" {
		errs = append(errs, field.Invalid(field.NewPath("NAME"), o.Name, msg))
	}
	if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, field.Invalid(field.NewPath("--namespace"), o.Namespace, strings.Join(msgs, "; ")))
	}
	if o.Name != "" && o.Namespace != "" {
		if len(certs.ClientCommonNameFor(o.Namespace, o.Name)) > 64 {
			errs = append(errs, field.Invalid(field.NewPath("NAME"), o.Name, "with the namespace, too long for the webhook client certificate's common name (64 bytes)"))
		}
	}
	if !o.ServiceCIDR.IsValid() {
		errs = append(errs, field.Required(field.NewPath("--service-cidr"), "the host's Service range"))
	}
	for flag, addr := range map[string]netip.Addr{"apiserver-service-ip": o.APIServerIP, "--dns-ip": o.DNSIP} {
		switch {
		case !addr.IsValid():
			errs = append(errs, field.Required(field.NewPath(flag), "an address of the host's Service range"))
		case o.ServiceCIDR.IsValid() && !o.ServiceCIDR.Contains(addr):
			errs = append(errs, field.Invalid(field.NewPath(flag), addr.String(), "not in the host's Service range "+o.ServiceCIDR.String()))
		}
	}
	if o.APIServerIP.IsValid() && o.APIServerIP == o.DNSIP {
		errs = append(errs, field.Duplicate(field.NewPath("--dns-ip"), o.DNSIP.String()))
	}
	if o.ClusterDomain != "" {
		if msgs := validation.IsDNS1123Subdomain(o.ClusterDomain); len(msgs) > 0 {
			errs = append(errs, field.Invalid(field.NewPath("--cluster-domain"), o.ClusterDomain, strings.Join(msgs, "; ")))
		}
	}
	if len(o.HostAPIServer) == 0 {
		errs = append(errs, field.Required(field.NewPath("host apiserver endpoints"), "the host's default/kubernetes EndpointSlice names no address"))
	}
	for i, ap := range o.HostAPIServer {
		if !ap.IsValid() || ap.Port() == 0 {
			errs = append(errs, field.Invalid(field.NewPath("host apiserver endpoints").Index(i), ap.String(), "must be an address and a port"))
		}
	}
	for name, ref := range o.Images {
		p := field.NewPath("--image").Key(name)
		if _, ok := imageNames[name]; !ok {
			errs = append(errs, field.NotSupported(p, name, sortedKeys(imageNames)))
		} else if ref == "" || strings.ContainsAny(ref, " \t\n") {
			errs = append(errs, field.Invalid(p, ref, "must be an image reference"))
		}
	}
	for i, flag := range o.PodbridgeFlags {
		if !strings.HasPrefix(flag, "--") || strings.ContainsAny(flag, "\n") {
			errs = append(errs, field.Invalid(field.NewPath("--podbridge-flag").Index(i), flag, "must be one --flag=value"))
		}
	}
	errs = append(errs, o.validateOptions()...)
	return errs.ToAggregate()
}

// reservedName says why name cannot be a virtual cluster's, which shares
// its host namespace with other virtual clusters and podbridges: the
// package's objects are named name-SUFFIX, and must never carry a name
// podbridge gives another host object there.
//   - podbridge and podbridge-*: podbridge's own host objects are named so
//     (podbridge-isolation-CLUSTER, podbridge-token-*, the Secrets of a
//     podbridge of manifests/host: podbridge-webhook-tls...), and a
//     cluster alpha's isolation policy podbridge-isolation-alpha would be
//     the NetworkPolicy control-plane of a cluster podbridge-isolation;
//   - -x- inside, or x- or -x at an end: tenants' host objects are named
//     NAME-x-NAMESPACE-x-CLUSTER (translate.HostName), so a cluster
//     a-x-b-x-c's Service a-x-b-x-c-apiserver would be the host Service of
//     Service a in namespace b of a cluster c-apiserver.
func reservedName(name string) string {
	switch {
	case name == "podbridge" || strings.HasPrefix(name, "podbridge-"):
		return "podbridge and podbridge-* are the names of podbridge's own host objects"
	case strings.Contains(name, "-x-") || strings.HasPrefix(name, "x-") || strings.HasSuffix(name, "-x"):
		return "must not contain -x-, start with x- or end with -x: the host names of tenants' objects join their parts with -x-, and could then name this cluster's"
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Render renders the package for o: the base with namePrefix o.Name-,
// namespace o.Namespace, the per-cluster values, the NetworkPolicy
// control-plane-tenants and o's images, patches and flags.
func Render(o Options) ([]*unstructured.Unstructured, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	fSys := filesys.MakeFsInMemory()
	err := fs.WalkDir(virtualcluster.Base, "base", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := virtualcluster.Base.ReadFile(p)
		if err != nil {
			return err
		}
		return fSys.WriteFile(path.Join("/pkg", p), data)
	})
	if err == nil {
		err = writeComponents(fSys)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the embedded package: %w", err)
	}
	policy, err := tenantsPolicy(o)
	if err != nil {
		return nil, err
	}
	if err := fSys.WriteFile("/pkg/instance/control-plane-tenants.yaml", policy); err != nil {
		return nil, err
	}
	k := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"namespace":  o.Namespace,
		"namePrefix": o.Name + "-",
		"labels": []any{
			map[string]any{"pairs": map[string]any{LabelInstance: o.Name}, "includeSelectors": true},
			map[string]any{"pairs": map[string]any{LabelPartOf: PartOfValue}, "includeSelectors": false},
		},
		"resources": []any{"../base", "control-plane-tenants.yaml"},
	}
	var components []any
	for _, c := range o.components() {
		components = append(components, "../components/"+c)
	}
	if components != nil {
		k["components"] = components
	}
	patches := []any{
		jsonPatch("ConfigMap", "config", []map[string]any{
			{"op": "replace", "path": "/data/vcluster-name", "value": o.Name},
			{"op": "replace", "path": "/data/apiserver-service-ip", "value": o.APIServerIP.String()},
			{"op": "replace", "path": "/data/dns-service-ip", "value": o.DNSIP.String()},
			{"op": "replace", "path": "/data/service-cidr", "value": o.ServiceCIDR.String()},
			{"op": "replace", "path": "/data/cluster-domain", "value": o.ClusterDomain},
		}),
		jsonPatch("ServiceAccount", "workloads", []map[string]any{
			{"op": "replace", "path": "/metadata/annotations/podbridge.io~1owner", "value": o.Name},
		}),
		jsonPatch("Service", "apiserver", []map[string]any{
			{"op": "add", "path": "/spec/clusterIP", "value": o.APIServerIP.String()},
		}),
	}
	if len(o.PodbridgeFlags) > 0 {
		var ops []map[string]any
		for _, container := range []int{podbridgeContainers[0], podbridgeContainers[1]} {
			for _, flag := range o.PodbridgeFlags {
				ops = append(ops, map[string]any{"op": "add", "path": fmt.Sprintf("/spec/template/spec/containers/%d/args/-", container), "value": flag})
			}
		}
		patches = append(patches, jsonPatch("StatefulSet", "control-plane", ops))
	}
	patches = append(patches, o.optionPatches()...)
	for _, p := range o.Patches {
		patches = append(patches, map[string]any{"patch": p})
	}
	k["patches"] = patches
	var images []any
	for _, name := range sortedKeys(o.Images) {
		image := map[string]any{"name": imageNames[name]}
		newName, tag, digest := splitReference(o.Images[name])
		image["newName"] = newName
		if tag != "" {
			image["newTag"] = tag
		}
		if digest != "" {
			image["digest"] = digest
		}
		images = append(images, image)
	}
	if images != nil {
		k["images"] = images
	}
	data, err := yaml.Marshal(k)
	if err != nil {
		return nil, err
	}
	if err := fSys.WriteFile("/pkg/instance/kustomization.yaml", data); err != nil {
		return nil, err
	}
	objects, err := render.KustomizationIn(fSys, "/pkg/instance")
	if err != nil {
		return nil, err
	}
	for _, obj := range objects {
		if obj.GetNamespace() == "" && !slices.Contains([]string{"Namespace"}, obj.GetKind()) {
			labels := obj.GetLabels()
			labels[LabelNamespace] = o.Namespace
			obj.SetLabels(labels)
		}
	}
	return objects, nil
}

// podbridgeContainers are the indexes of the webhook and the reflector in
// the StatefulSet's containers (checked by the package's tests).
var podbridgeContainers = [2]int{1, 2}

func jsonPatch(kind, name string, ops []map[string]any) map[string]any {
	data, err := yaml.Marshal(ops)
	if err != nil {
		panic(err) // maps of strings always encode
	}
	return map[string]any{"target": map[string]any{"kind": kind, "name": name}, "patch": string(data)}
}

// tenantsPolicy is the NetworkPolicy control-plane-tenants: ingress to the
// apiserver from this virtual cluster's tenant pods only; egress to the
// host apiserver's endpoints and to this virtual cluster's tenant pods.
func tenantsPolicy(o Options) ([]byte, error) {
	// matchExpressions: the instance label kustomize adds to matchLabels
	// (includeSelectors) must not reach the peers' selector.
	tenants := map[string]any{"podSelector": map[string]any{"matchExpressions": []any{
		map[string]any{"key": translate.LabelVCluster, "operator": "In", "values": []any{o.Name}},
		map[string]any{"key": translate.LabelManagedBy, "operator": "In", "values": []any{translate.ManagedByValue}},
	}}}
	var apiserver []any
	for _, ap := range o.HostAPIServer {
		apiserver = append(apiserver, map[string]any{
			"to":    []any{map[string]any{"ipBlock": map[string]any{"cidr": netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()).String()}}},
			"ports": []any{map[string]any{"port": int(ap.Port()), "protocol": "TCP"}},
		})
	}
	policy := map[string]any{
		"apiVersion": "networking.k8s.io/v1",
		"kind":       "NetworkPolicy",
		"metadata":   map[string]any{"name": "control-plane-tenants"},
		"spec": map[string]any{
			"podSelector": map[string]any{"matchLabels": map[string]any{
				"app.kubernetes.io/name": "podbridge-vcluster", "app.kubernetes.io/component": "control-plane",
			}},
			"policyTypes": []any{"Ingress", "Egress"},
			"ingress": []any{map[string]any{
				"from":  []any{tenants},
				"ports": []any{map[string]any{"port": "apiserver", "protocol": "TCP"}},
			}},
			"egress": append(append(apiserver, o.etcdEgress()...), map[string]any{"to": []any{tenants}}),
		},
	}
	return yaml.Marshal(policy)
}

// splitReference splits an image reference into name, tag and digest, as
// kustomize's images field takes them.
func splitReference(ref string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, digest
}
