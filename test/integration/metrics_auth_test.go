package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/testbed/promscrape"
	"github.com/podbridge/podbridge/webhook"
)

// Names of this test's host objects.
const (
	metricsVCluster       = "metrics-auth"
	metricsReader         = "metrics-auth-reader"
	metricsStranger       = "metrics-auth-stranger"
	metricsHeldLease      = "metrics-auth-held"
	metricsReaderRole     = "podbridge-metrics-reader" // the manifests' ClusterRole
	metricsServingCertTTL = time.Hour
)

// podbridge's metrics name host addresses, copy use and refusals of one
// virtual cluster, so a tenant pod that reaches the port must read nothing
// (issue 20, class 7). The webhook and the reflector, running as the
// manifests' host ServiceAccount with the manifests' RBAC, serve metrics
// over TLS and ask the host apiserver about every scrape: a request
// without a token or with a token the host does not know is refused 401,
// a host identity the platform did not bind to podbridge-metrics-reader
// is refused 403, one it bound reads the metrics; plain HTTP reads
// nothing.
func TestMetricsNeedAHostIdentityAllowedToReadThem(t *testing.T) {
	ctx := context.Background()
	ns := env.Options.Translate.HostNamespace
	applyRBAC(t, "testdata/host-rbac", hostClient)
	asPodbridge := rest.CopyConfig(env.Host.Config)
	asPodbridge.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":podbridge", Groups: []string{"system:serviceaccounts", "system:authenticated"}}

	readerToken, err := promscrape.ServiceAccountToken(ctx, env.Host.Config, ns, metricsReader)
	if err != nil {
		t.Fatal(err)
	}
	strangerToken, err := promscrape.ServiceAccountToken(ctx, env.Host.Config, ns, metricsStranger)
	if err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: metricsReader},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: metricsReader}},
	}
	if err := hostClient.Create(ctx, binding); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, obj := range []client.Object{
			binding,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: metricsReader}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: metricsStranger}},
		} {
			if err := hostClient.Delete(context.Background(), obj); client.IgnoreNotFound(err) != nil {
				t.Errorf("removing %T %s: %v", obj, obj.GetName(), err)
			}
		}
	})
	// RBAC reaches the host's authorizer through its informers: wait until
	// it answers as the grants say, so podbridge's first reviews (whose
	// answers it caches) see them.
	waitAllowed(t, "system:serviceaccount:"+ns+":podbridge", authorizationv1.ResourceAttributes{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"}, nil)
	waitAllowed(t, "system:serviceaccount:"+ns+":podbridge", authorizationv1.ResourceAttributes{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"}, nil)
	waitAllowed(t, "system:serviceaccount:"+ns+":"+metricsReader, authorizationv1.ResourceAttributes{}, &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"})

	serving, err := certs.NewSelfSigned([]string{"127.0.0.1"}, time.Now(), metricsServingCertTTL)
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if err := serving.WriteDir(certDir); err != nil {
		t.Fatal(err)
	}
	trust, err := promscrape.Trusting(serving.CA)
	if err != nil {
		t.Fatal(err)
	}

	for _, component := range []string{"webhook", "reflector"} {
		t.Run(component, func(t *testing.T) {
			port := freeTestPort(t)
			address := "127.0.0.1:" + strconv.Itoa(port)
			startMetricsComponent(t, component, asPodbridge, address, certDir)
			url := "https://" + address + "/metrics"
			var plain error
			eventually(t, time.Minute, component+" to serve its metrics port", func(ctx context.Context) (bool, string) {
				_, _, err := getMetrics(ctx, url, "", trust)
				if errors.Is(err, http.ErrSchemeMismatch) {
					plain = err
					return true, ""
				}
				return err == nil, fmt.Sprint(err)
			})
			if plain != nil {
				t.Fatalf("the metrics are served over plain HTTP: %v", plain)
			}

			for _, tc := range []struct {
				name, token string
				want        []int
			}{
				{"no token", "", []int{http.StatusUnauthorized}},
				{"a token the host does not know", "not-a-token", []int{http.StatusUnauthorized}},
				{"a host identity without podbridge-metrics-reader", strangerToken, []int{http.StatusForbidden}},
				{"a host identity bound to podbridge-metrics-reader", readerToken, []int{http.StatusOK}},
			} {
				status, body, err := getMetrics(ctx, url, tc.token, trust)
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					continue
				}
				if !slices.Contains(tc.want, status) {
					t.Errorf("%s: status %d, want %v", tc.name, status, tc.want)
				}
				hasMetrics := strings.Contains(body, "# TYPE podbridge_")
				if hasMetrics != (status == http.StatusOK) {
					t.Errorf("%s: status %d, podbridge's metrics in the body: %t", tc.name, status, hasMetrics)
				}
			}

			// Plain HTTP to the same port reads nothing.
			status, body, err := getPlain(ctx, "http://"+address+"/metrics")
			if err == nil && (status == http.StatusOK || strings.Contains(body, "# TYPE")) {
				t.Errorf("plain HTTP: status %d with metrics in the body", status)
			}
		})
	}
}

// startMetricsComponent runs component (webhook or reflector) for a
// virtual cluster of its own, as host identity hostCfg, serving metrics
// at address with the certificate in certDir, until the test ends. The
// reflector waits for a Lease someone else holds, so its controllers never
// act on the shared clusters; its metrics server does not wait.
func startMetricsComponent(t *testing.T, component string, hostCfg *rest.Config, address, certDir string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tc := env.Options.Translate
	tc.VCluster = metricsVCluster
	tc = ownAccount(t, tc)
	var mgr manager.Manager
	var err error
	switch component {
	case "webhook":
		port := freeTestPort(t)
		tlsSecret, clientSecret := metricsVCluster+"-webhook-tls", metricsVCluster+"-client-tls"
		t.Cleanup(func() {
			for _, name := range []string{tlsSecret, clientSecret} {
				secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tc.HostNamespace, Name: name}}
				if err := hostClient.Delete(context.Background(), secret); client.IgnoreNotFound(err) != nil {
					t.Errorf("removing Secret %s: %v", name, err)
				}
			}
		})
		mgr, err = webhook.New(ctx, webhook.Options{
			Host: hostCfg, Virtual: env.Virtual.Config, Translate: tc, PodSecurityLevel: "baseline",
			HostTimeout: 5 * time.Second, BindAddress: "127.0.0.1", Port: port, Limits: caps.Defaults(),
			Certs: certs.Options{
				Mode: certs.ModeSelfManaged, SecretName: tlsSecret, ClientSecretName: clientSecret,
				CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"},
			},
			MetricsBindAddress: address, MetricsCertDir: certDir, HealthProbeBindAddress: "0",
			// No URL: it only keeps the CA bundle of a configuration of
			// this name, which nobody applies.
			Registration: webhook.Registration{Name: metricsVCluster, TimeoutSeconds: 10},
		})
	case "reflector":
		holdLease(t, tc.HostNamespace, metricsHeldLease)
		mgr, err = reflector.NewManager(reflector.Options{
			Host: hostCfg, Virtual: env.Virtual.Config, Translate: tc, OrphanGracePeriod: orphanGrace,
			MaxConcurrentReconciles: 1, Limits: caps.Defaults(),
			LeaderElection: true, LeaderElectionID: metricsHeldLease,
			MetricsBindAddress: address, MetricsCertDir: certDir, HealthProbeBindAddress: "0",
			SkipControllerNameValidation: true,
		})
	default:
		t.Fatalf("unknown component %s", component)
	}
	if err != nil {
		cancel()
		t.Fatalf("starting the %s: %v", component, err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the %s: %v", component, err)
		}
	})
}

// holdLease makes a Lease held by someone else for an hour, so a
// reflector electing with it never leads.
func holdLease(t *testing.T, namespace, name string) {
	t.Helper()
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("metrics-auth-test"), LeaseDurationSeconds: ptr.To(int32(3600)),
			AcquireTime: &now, RenewTime: &now,
		},
	}
	if err := hostClient.Create(context.Background(), lease); err != nil {
		t.Fatalf("holding Lease %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := hostClient.Delete(context.Background(), lease); client.IgnoreNotFound(err) != nil {
			t.Errorf("removing Lease %s: %v", name, err)
		}
	})
}

// waitAllowed waits until the host apiserver allows user the resource or
// non-resource access.
func waitAllowed(t *testing.T, user string, resource authorizationv1.ResourceAttributes, nonResource *authorizationv1.NonResourceAttributes) {
	t.Helper()
	spec := authorizationv1.SubjectAccessReviewSpec{User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, NonResourceAttributes: nonResource}
	if nonResource == nil {
		spec.ResourceAttributes = &resource
	}
	eventually(t, 30*time.Second, user+" allowed "+fmt.Sprint(resource, nonResource), func(ctx context.Context) (bool, string) {
		review := &authorizationv1.SubjectAccessReview{Spec: spec}
		if err := hostClient.Create(ctx, review); err != nil {
			return false, err.Error()
		}
		return review.Status.Allowed, review.Status.Reason
	})
}

// getMetrics GETs url over TLS with trust, presenting token if set, and
// returns the status and body.
func getMetrics(ctx context.Context, url, token string, trust *tls.Config) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: trust}}
	if token != "" {
		c = promscrape.BearerClient(token, trust)
	}
	defer c.CloseIdleConnections()
	return httpGet(ctx, c, url)
}

// getPlain GETs url without TLS.
func getPlain(ctx context.Context, url string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	return httpGet(ctx, c, url)
}

func httpGet(ctx context.Context, c *http.Client, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, "", fmt.Errorf("reading %s: %w", url, err)
	}
	return resp.StatusCode, string(body), nil
}
