// Package staticpolicy renders the admission policies podbridge has the
// virtual kube-apiserver load from files at start (manifest-based
// admission control, beta and on by default since Kubernetes 1.37), for
// what podbridge must hold whatever the tenant does: the tenant is
// cluster-admin of the virtual cluster and can delete any policy or
// webhook registered through its API, but not these, which it can neither
// see nor change.
//
// They keep the virtual apiserver from dialing addresses a tenant writes.
// The apiserver dials a Node's address for logs, exec, attach,
// port-forward and nodes/proxy, an Endpoints address for services/proxy
// and a pod's status IP for pods/proxy; wherever it runs, that is a
// request from inside the platform's network. So every Node's address and
// kubelet port must be podbridge's kubelet API (the one endpoint that
// serves only the tenant's own host pods), and the proxy subresources,
// whose URL also picks the scheme and port, are refused.
//
// The package is pure: it renders objects and YAML, nothing more.
package staticpolicy
