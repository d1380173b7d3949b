// Package virtual holds the virtual side of podbridge's manifests (base/:
// the MutatingWebhookConfiguration for GitOps users and the grants of the
// user "podbridge" in the virtual cluster), and embeds the grants for a
// virtual cluster's control-plane pod, whose bootstrap step applies them
// (package vcluster).
package virtual

import _ "embed"

// RBAC is base/rbac.yaml: the ClusterRole podbridge and its
// ClusterRoleBinding to the user podbridge.
//
//go:embed base/rbac.yaml
var RBAC []byte
