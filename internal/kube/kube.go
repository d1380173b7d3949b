// Package kube loads client configurations for the host and virtual clusters
// and holds what podbridge's clients share: the scheme, a REST mapper that
// remembers what it found, and small read helpers.
package kube

import (
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Scheme knows the Kubernetes and cert-manager types podbridge reads and writes.
var Scheme = runtime.NewScheme()

func init() {
	// cert-manager's types: the webhook reads its Certificate's readiness.
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme} {
		if err := add(Scheme); err != nil {
			panic(err)
		}
	}
}

// Limits are client-side rate limits. client-go's default of 5 QPS would
// make the synchronous webhook a bottleneck; the apiservers' own priority
// and fairness protects them instead.
type Limits struct {
	QPS   float32
	Burst int
}

// DefaultLimits suit a webhook or reflector serving thousands of pods.
var DefaultLimits = Limits{QPS: 1000, Burst: 2000}

// Load reads a kubeconfig file (in-cluster configuration when path is "")
// and applies limits and a user agent naming the component.
func Load(path string, limits Limits, userAgent string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", path, err)
	}
	return WithLimits(cfg, limits, userAgent), nil
}

// WithLimits returns a copy of cfg with limits and user agent applied, and
// without gzip: podbridge runs next to both apiservers, where compressing
// every response (watch streams are gzipped per event) costs both sides
// CPU and saves no time.
func WithLimits(cfg *rest.Config, limits Limits, userAgent string) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = limits.QPS, limits.Burst
	cfg.UserAgent = userAgent
	cfg.DisableCompression = true
	return cfg
}
