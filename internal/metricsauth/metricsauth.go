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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
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
		FilterProvider: filter,
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

// filter authenticates every scrape with a TokenReview and authorizes it
// with a SubjectAccessReview on the host, as controller-runtime's
// filters.WithAuthenticationAndAuthorization does, with its cache times.
// Unlike that filter it answers a token the host does not accept as
// kube-apiserver does, 401, where that one answers 500 and logs an error
// with a stack for each such request (controller-runtime#2781): any caller
// that reaches the port could fill the log.
func filter(config *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	reviews, err := authenticationv1.NewForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	accessReviews, err := authorizationv1.NewForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("metrics authorization: %w", err)
	}
	// kube-apiserver's retry of its authentication and authorization webhooks.
	backoff := &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                 time.Minute,
		TokenAccessReviewClient:  reviews,
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: accessReviews,
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authorization: %w", err)
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			res, ok, err := authn.AuthenticateRequest(req)
			if err != nil || !ok {
				log.V(4).Info("Metrics request not authenticated", "error", err)
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			user := res.User.GetName()
			decision, reason, err := authz.Authorize(req.Context(), authorizer.AttributesRecord{User: res.User, Verb: strings.ToLower(req.Method), Path: req.URL.Path})
			switch {
			case err != nil:
				log.Error(err, "Authorizing a metrics request", "user", user)
				http.Error(w, "Authorization for user "+user+" failed", http.StatusInternalServerError)
			case decision != authorizer.DecisionAllow:
				log.V(4).Info("Metrics request forbidden", "user", user, "reason", reason)
				http.Error(w, "Authorization denied for user "+user, http.StatusForbidden)
			default:
				next.ServeHTTP(w, req)
			}
		}), nil
	}, nil
}
