package promscrape

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// podbridge serves its metrics only to callers the host apiserver
// authenticates and authorizes for GET /metrics (internal/metricsauth). A
// scraper of the test bed is what a platform's Prometheus is: a host
// ServiceAccount bound to a ClusterRole with that one rule, presenting a
// token of it.

// ScraperName names the test bed's scraper: its ServiceAccount, and the
// ClusterRole and ClusterRoleBinding that let it read /metrics.
const ScraperName = "podbridge-metrics-scraper"

// tokenLifetime outlasts any run of the bench or the fault tests: the
// client asks for no second token.
const tokenLifetime = 24 * time.Hour

// ReaderRule is the one permission a scraper needs on the host, as the
// manifests' ClusterRole podbridge-metrics-reader grants it.
var ReaderRule = rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}

// ScraperClient makes, with admin (a host administrator's configuration),
// the test bed's scraper in namespace (its ServiceAccount, a ClusterRole
// with ReaderRule and the binding, each kept if it exists) and returns a
// client that scrapes podbridge's metrics as it, trusting serving
// certificates that chain to the PEM bundle ca (the test bed gives
// podbridge one with --metrics-cert-dir, as a platform would).
func ScraperClient(ctx context.Context, admin *rest.Config, namespace string, ca []byte) (*http.Client, error) {
	tlsConfig, err := Trusting(ca)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, fmt.Errorf("the metrics scraper's client: %w", err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ScraperName}, Rules: []rbacv1.PolicyRule{ReaderRule}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating the metrics scraper's ClusterRole: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ScraperName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ScraperName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: ScraperName}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("binding the metrics scraper's ClusterRole: %w", err)
	}
	token, err := ServiceAccountToken(ctx, admin, namespace, ScraperName)
	if err != nil {
		return nil, err
	}
	return BearerClient(token, tlsConfig), nil
}

// Trusting is a TLS configuration that trusts only the CAs of the PEM
// bundle ca.
func Trusting(ca []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no CA certificate in the metrics CA bundle")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// ServiceAccountToken makes the ServiceAccount name in namespace unless it
// exists, and returns a token of it (TokenRequest) that the host apiserver
// accepts in a TokenReview.
func ServiceAccountToken(ctx context.Context, admin *rest.Config, namespace, name string) (string, error) {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return "", fmt.Errorf("the token client: %w", err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating ServiceAccount %s/%s: %w", namespace, name, err)
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(tokenLifetime / time.Second))}}
	got, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token of ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return got.Status.Token, nil
}

// BearerClient is a client that presents token on every request, over TLS
// configured by tlsConfig.
func BearerClient(token string, tlsConfig *tls.Config) *http.Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsConfig
	return &http.Client{Transport: bearer{token: token, base: base}}
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // a RoundTripper must not change the caller's request.
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(req)
}
