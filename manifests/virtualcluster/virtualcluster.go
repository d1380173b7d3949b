// Package virtualcluster holds the kustomize package that puts one
// virtual cluster on a host (base/: its control-plane pod, host RBAC,
// Services, NetworkPolicies; components/: the options etcd, shared-pki
// and cert-manager) and the tenant DNS server installed into it
// (dns/coredns.yaml), embedded for `podbridge create` (package vcluster),
// which renders them with kustomize's Go API, and for the test bed, which
// installs the same DNS server.
package virtualcluster

import "embed"

// Base is the base/ folder: kustomization.yaml and the files it names.
//
//go:embed base
var Base embed.FS

// Components is the components/ folder: kustomize components a virtual
// cluster adds to the base (shared-pki, etcd, cert-manager).
//
//go:embed components
var Components embed.FS

// CoreDNS is the tenant's DNS server as manifests in the virtual cluster:
// a ServiceAccount, its RBAC, the Corefile, a Deployment and the kube-dns
// Service.
//
//go:embed dns/coredns.yaml
var CoreDNS []byte
