// Package kubeletproxy serves the kubelet API of podbridge's virtual nodes:
// the virtual apiserver dials it for logs, exec, attach and port-forward,
// and podbridge carries each request, with its own host identity, to the
// host pod of the stored virtual pod named, for the containers of that
// pod's own spec only.
//
// Its one concern is that mapping and its confinement: whatever the path
// names, the only host object ever touched is the host pod the stored
// virtual pod maps to in this virtual cluster's host namespace.
package kubeletproxy
