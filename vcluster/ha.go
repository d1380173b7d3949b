package vcluster

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/podbridge/podbridge/manifests/virtualcluster"
)

// The options of a virtual cluster's package beyond the base: the store
// (kine on a claim, or a platform's etcd and then several replicas) and
// who makes the control plane's certificates (podbridge's init, or
// cert-manager). Each is a kustomize component of
// manifests/virtualcluster/components.

// Stores and certificate issuers Options names.
const (
	StoreKine           = "kine"
	StoreEtcd           = "etcd"
	IssuerSelfManaged   = "self-managed"
	IssuerCertManager   = "cert-manager"
	defaultEtcdReplicas = 3
	// DefaultEtcdClientSecret is the host Secret of the etcd client
	// certificate (ca.crt, tls.crt, tls.key) when Options names none.
	DefaultEtcdClientSecret = "etcd-client"
)

// PKISecret is the prefix of the host Secrets holding the virtual cluster's
// shared CAs and service-account key (components/shared-pki):
// PKISecret(name)+"-ca", "-client-ca", "-service-account", and with
// cert-manager "-apiserver".
func PKISecret(name string) string { return name + "-pki" }

// certManagerKinds are the cert-manager component's kinds, which delete
// looks through too; a host without cert-manager has no such kind.
var certManagerKinds = []kind{listKind("cert-manager.io", "Certificate", true), listKind("cert-manager.io", "Issuer", true)}

// EtcdOptions name the platform's etcd (Store etcd).
type EtcdOptions struct {
	// Servers are its client URLs, https://ADDRESS:PORT.
	Servers []string
	// ClientSecret is the host Secret in the virtual cluster's namespace
	// with the client certificate: ca.crt, tls.crt, tls.key.
	ClientSecret string
	// Egress are the ranges the servers' addresses are in, when Servers
	// name hosts by DNS name: the control-plane pod's egress policy
	// allows addresses, not names.
	Egress []netip.Prefix
}

func (o *Options) store() string {
	if o.Store == "" {
		return StoreKine
	}
	return o.Store
}

func (o *Options) issuer() string {
	if o.Certificates == "" {
		return IssuerSelfManaged
	}
	return o.Certificates
}

func (o *Options) replicas() int {
	switch {
	case o.Replicas > 0:
		return o.Replicas
	case o.store() == StoreEtcd:
		return defaultEtcdReplicas
	default:
		return 1
	}
}

// validateOptions checks the store, replica and certificate options.
func (o *Options) validateOptions() field.ErrorList {
	var errs field.ErrorList
	switch o.store() {
	case StoreKine:
		if o.Replicas > 1 {
			errs = append(errs, field.Invalid(field.NewPath("--replicas"), o.Replicas, "kine's SQLite has one writer: more than one replica needs --store=etcd"))
		}
		if len(o.Etcd.Servers) > 0 || o.Etcd.ClientSecret != "" || len(o.Etcd.Egress) > 0 {
			errs = append(errs, field.Invalid(field.NewPath("--store"), o.Store, "the --etcd-* flags need --store=etcd"))
		}
	case StoreEtcd:
		errs = append(errs, o.validateEtcd()...)
	default:
		errs = append(errs, field.NotSupported(field.NewPath("--store"), o.Store, []string{StoreKine, StoreEtcd}))
	}
	if o.Replicas < 0 {
		errs = append(errs, field.Invalid(field.NewPath("--replicas"), o.Replicas, "must be 1 or more"))
	}
	if i := o.issuer(); i != IssuerSelfManaged && i != IssuerCertManager {
		errs = append(errs, field.NotSupported(field.NewPath("--certificates"), i, []string{IssuerSelfManaged, IssuerCertManager}))
	}
	return errs
}

func (o *Options) validateEtcd() field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("--etcd-servers")
	if len(o.Etcd.Servers) == 0 {
		errs = append(errs, field.Required(p, "the etcd's client URLs (https://ADDRESS:PORT)"))
	}
	for i, s := range o.Etcd.Servers {
		host, _, err := etcdServer(s)
		if err != nil {
			errs = append(errs, field.Invalid(p.Index(i), s, err.Error()))
			continue
		}
		if _, err := netip.ParseAddr(host); err != nil && len(o.Etcd.Egress) == 0 {
			errs = append(errs, field.Required(field.NewPath("--etcd-egress"), fmt.Sprintf("%s names its host by name: give the range its addresses are in (the control-plane pod's egress policy allows addresses, not names)", s)))
		}
	}
	if o.Etcd.ClientSecret != "" {
		if msgs := validation.IsDNS1123Subdomain(o.Etcd.ClientSecret); len(msgs) > 0 {
			errs = append(errs, field.Invalid(field.NewPath("--etcd-client-secret"), o.Etcd.ClientSecret, strings.Join(msgs, "; ")))
		}
	}
	for i, e := range o.Etcd.Egress {
		if !e.IsValid() {
			errs = append(errs, field.Invalid(field.NewPath("--etcd-egress").Index(i), e.String(), "must be a CIDR"))
		}
	}
	return errs
}

// etcdServer splits an etcd client URL into its host and port; only
// https with a port, and nothing else, is one: the apiserver presents the
// client certificate, and a path or a comma would change what it dials.
func etcdServer(s string) (string, uint16, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", 0, err
	}
	if u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" || strings.ContainsAny(s, ", \t\n") {
		return "", 0, fmt.Errorf("must be https://HOST:PORT")
	}
	host, portText, err := net.SplitHostPort(u.Host)
	if err != nil {
		return "", 0, fmt.Errorf("must be https://HOST:PORT: %w", err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("port %q: must be 1 to 65535", portText)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
			return "", 0, fmt.Errorf("host %q: %s", host, strings.Join(msgs, "; "))
		}
	}
	return host, uint16(port), nil
}

// components are the package's components o adds to the base, in the
// order they must be listed (shared-pki before those that test for it).
func (o *Options) components() []string {
	var out []string
	if o.store() == StoreEtcd || o.issuer() == IssuerCertManager {
		out = append(out, "shared-pki")
	}
	if o.store() == StoreEtcd {
		out = append(out, "etcd")
	}
	if o.issuer() == IssuerCertManager {
		out = append(out, "cert-manager")
	}
	return out
}

// writeComponents copies the embedded components into fSys under /pkg.
func writeComponents(fSys filesys.FileSystem) error {
	return fs.WalkDir(virtualcluster.Components, "components", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := virtualcluster.Components.ReadFile(p)
		if err != nil {
			return err
		}
		return fSys.WriteFile(path.Join("/pkg", p), data)
	})
}

// optionPatches fill in what the components leave to the overlay.
func (o *Options) optionPatches() []any {
	var patches []any
	if r := o.replicas(); r != 1 || o.store() == StoreEtcd {
		ops := []map[string]any{{"op": "replace", "path": "/spec/replicas", "value": r}}
		if r > 1 {
			// Replicas on different nodes when the host has them; a
			// preference, so a one-node host still runs them all.
			ops = append(ops, map[string]any{"op": "add", "path": "/spec/template/spec/affinity", "value": map[string]any{
				"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{
					"weight": 100,
					"podAffinityTerm": map[string]any{
						"topologyKey": "kubernetes.io/hostname",
						"labelSelector": map[string]any{"matchLabels": map[string]any{
							"app.kubernetes.io/name": "podbridge-vcluster", "app.kubernetes.io/component": "control-plane", LabelInstance: o.Name,
						}},
					},
				}}},
			}})
		}
		patches = append(patches, jsonPatch("StatefulSet", "control-plane", ops))
	}
	if o.store() == StoreEtcd {
		patches = append(patches,
			jsonPatch("ConfigMap", "config", []map[string]any{
				{"op": "replace", "path": "/data/etcd-servers", "value": strings.Join(o.Etcd.Servers, ",")},
			}),
		)
		if o.Etcd.ClientSecret != "" && o.Etcd.ClientSecret != DefaultEtcdClientSecret {
			patches = append(patches, map[string]any{"patch": fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: control-plane
spec:
  template:
    spec:
      volumes:
      - name: etcd-client
        secret:
          secretName: %s
`, o.Etcd.ClientSecret)})
		}
	}
	if o.issuer() == IssuerCertManager {
		svc := APIServerService(o.Name)
		patches = append(patches,
			jsonPatch("Certificate", "pki-apiserver", []map[string]any{
				{"op": "replace", "path": "/spec/dnsNames", "value": servingDNSNames(svc, o.Namespace, o.clusterDomain())},
				{"op": "replace", "path": "/spec/ipAddresses", "value": []string{"127.0.0.1", o.APIServerIP.String()}},
			}),
		)
		// The Secrets cert-manager writes carry the instance's labels, so
		// delete finds them.
		for _, cert := range []string{"pki-ca", "pki-client-ca", "pki-service-account", "pki-apiserver"} {
			patches = append(patches, jsonPatch("Certificate", cert, []map[string]any{
				{"op": "add", "path": "/spec/secretTemplate", "value": map[string]any{"labels": map[string]any{LabelInstance: o.Name, LabelPartOf: PartOfValue}}},
			}))
		}
	}
	return patches
}

func (o *Options) clusterDomain() string {
	if o.ClusterDomain == "" {
		return "cluster.local"
	}
	return o.ClusterDomain
}

// servingDNSNames are the names the apiserver's serving certificate must
// hold (its address and 127.0.0.1 besides): init's list for a certificate
// it issues, and the one it checks a cert-manager certificate against.
func servingDNSNames(service, namespace, clusterDomain string) []string {
	return []string{"localhost", service, service + "." + namespace, service + "." + namespace + ".svc",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain}
}

// etcdEgress are the control-plane pod's egress rules to the etcd: each
// server given by address, or the ranges of Egress, on the servers' ports.
func (o *Options) etcdEgress() []any {
	if o.store() != StoreEtcd {
		return nil
	}
	var rules []any
	ports := map[uint16]bool{}
	var portList []any
	for _, s := range o.Etcd.Servers {
		host, port, err := etcdServer(s)
		if err != nil {
			continue // Validate refused it.
		}
		if !ports[port] {
			ports[port] = true
			portList = append(portList, map[string]any{"port": int(port), "protocol": "TCP"})
		}
		if addr, err := netip.ParseAddr(host); err == nil {
			rules = append(rules, map[string]any{
				"to":    []any{map[string]any{"ipBlock": map[string]any{"cidr": netip.PrefixFrom(addr, addr.BitLen()).String()}}},
				"ports": []any{map[string]any{"port": int(port), "protocol": "TCP"}},
			})
		}
	}
	for _, e := range o.Etcd.Egress {
		rules = append(rules, map[string]any{
			"to":    []any{map[string]any{"ipBlock": map[string]any{"cidr": e.Masked().String()}}},
			"ports": portList,
		})
	}
	return rules
}

// ReadyControlPlanePod names a control-plane pod of virtual cluster name
// whose apiserver is ready and that is not being deleted, the lowest
// ordinal first; "" when there is none. Tenant host pods never carry the
// package's labels (podbridge puts tenants' labels under its own keys).
func ReadyControlPlanePod(ctx context.Context, c client.Reader, name, namespace string) (string, error) {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{
		LabelInstance: name, "app.kubernetes.io/name": "podbridge-vcluster", "app.kubernetes.io/component": "control-plane",
	}); err != nil {
		return "", fmt.Errorf("listing the control-plane pods of %s: %w", name, err)
	}
	var ready []string
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || !strings.HasPrefix(pod.Name, ControlPlane(name)+"-") {
			continue
		}
		// The apiserver is a sidecar: its status is among the init
		// containers'.
		for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
			if cs.Name == "kube-apiserver" && cs.Ready {
				ready = append(ready, pod.Name)
			}
		}
	}
	slices.SortFunc(ready, func(a, b string) int {
		return cmp.Compare(ordinal(a), ordinal(b))
	})
	if len(ready) == 0 {
		return "", nil
	}
	return ready[0], nil
}

// ordinal is a StatefulSet pod's ordinal (-1 for another name).
func ordinal(pod string) int {
	n, err := strconv.Atoi(pod[strings.LastIndex(pod, "-")+1:])
	if err != nil {
		return -1
	}
	return n
}
