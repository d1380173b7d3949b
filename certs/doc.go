// Package certs provides the webhook server's serving certificate and the CA
// bundle the virtual apiserver uses to verify it.
//
// The virtual cluster's MutatingWebhookConfiguration lives outside the
// cluster where cert-manager's cainjector runs, so podbridge injects the CA
// itself (see webhook.Register).
package certs
