// Package controlplane starts real local Kubernetes control planes from the
// binaries `make k8s-bins` builds: a host (etcd, kube-apiserver,
// kube-scheduler and kwok with fake nodes) and a virtual cluster (etcd,
// kube-apiserver, kube-controller-manager, no scheduler). `podbridge-dev`,
// the integration tests and the benchmark all stand on it.
package controlplane
