// Package metricsauth is how the webhook and the reflector serve their
// metrics: over TLS, and only to a caller the host apiserver authenticates
// (TokenReview of its bearer token) and authorizes for GET /metrics
// (SubjectAccessReview), with controller-runtime's secure serving. The
// metrics name host addresses, copy use and refusals of one virtual
// cluster: no tenant pod sharing the network may read them (issue 20,
// class 7). There is no plain-HTTP mode.
package metricsauth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// CertFile and KeyFile are the names the serving certificate and key have
// in a certificate folder (a kubernetes.io/tls Secret's keys).
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// ReaderPath and ReaderVerb are what a scraper must be allowed on the host:
// a ClusterRole rule `nonResourceURLs: ["/metrics"], verbs: ["get"]`.
const (
	ReaderPath = "/metrics"
	ReaderVerb = "get"
)

// Options are a manager's metrics server options. bindAddress "0"
// disables the server. certDir holds tls.crt and tls.key, re-read when
// they change; empty, the server makes a self-signed certificate at start,
// as kube-controller-manager does for its own metrics.
//
// The manager's host configuration makes the TokenReviews and
// SubjectAccessReviews, so podbridge's host identity needs `create` on
// both (manifests/host/base/rbac.yaml). Answers are cached (a minute for
// an identity, five minutes for an allow, 30 seconds for a deny).
func Options(bindAddress, certDir string) metricsserver.Options {
	return metricsserver.Options{
		BindAddress:    bindAddress,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		CertDir:        certDir,
		CertName:       CertFile,
		KeyName:        KeyFile,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			// HTTP/1.1 only, as kubebuilder's scaffold does by default: a
			// scrape needs nothing more, and HTTP/2's stream resets
			// (CVE-2023-44487, CVE-2023-39325) are then out of reach of
			// callers that never authenticate.
			c.NextProtos = []string{"http/1.1"}
		}},
	}
}

// CheckCertDir reports a certificate folder that lacks the certificate or
// its key. controller-runtime would otherwise fall back to a self-signed
// certificate without a word, and a scraper that verifies the one the
// platform mounted would fail without saying why.
func CheckCertDir(certDir string) error {
	if certDir == "" {
		return nil
	}
	var errs []error
	for _, name := range []string{CertFile, KeyFile} {
		if _, err := os.Stat(filepath.Join(certDir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metrics certificate folder %s: %w", certDir, err)
	}
	return nil
}
