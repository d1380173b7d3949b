package webhook

import (
	"context"
	"fmt"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
)

// originalsCache holds the metadata (no content) of the virtual cluster's
// ConfigMaps and Secrets: its size follows their number, not the number of
// pods. It answers only once synced; before that the webhook reads live.
type originalsCache struct {
	cache.Cache
	synced atomic.Bool
}

var originalKinds = []string{"ConfigMap", "Secret"}

// newOriginalsCache builds the cache on the virtual cluster; Start runs it.
func newOriginalsCache(ctx context.Context, virtual *rest.Config) (*originalsCache, error) {
	byObject := map[client.Object]cache.ByObject{}
	for _, kind := range originalKinds {
		byObject[originalMetadata(kind)] = cache.ByObject{Transform: cache.TransformStripManagedFields()}
	}
	c, err := cache.New(virtual, cache.Options{Scheme: kube.Scheme, ByObject: byObject})
	if err != nil {
		return nil, fmt.Errorf("creating the cache of virtual ConfigMaps and Secrets: %w", err)
	}
	for _, kind := range originalKinds {
		// Registered now, so Get never starts (and waits for) an informer.
		if _, err := c.GetInformer(ctx, originalMetadata(kind), cache.BlockUntilSynced(false)); err != nil {
			return nil, fmt.Errorf("watching virtual %ss: %w", kind, err)
		}
	}
	return &originalsCache{Cache: c}, nil
}

// Start runs the cache until ctx is done (a manager.Runnable).
func (o *originalsCache) Start(ctx context.Context) error {
	errs := make(chan error, 1)
	go func() { errs <- o.Cache.Start(ctx) }()
	if o.WaitForCacheSync(ctx) {
		o.synced.Store(true)
	}
	return <-errs
}

// Synced reports whether the cache has listed everything once.
func (o *originalsCache) Synced() bool { return o.synced.Load() }

func originalMetadata(kind string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind}}
}
