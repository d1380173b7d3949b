package reflector

import (
	"context"
	"fmt"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// indexScope is which lists read an index: those that name a namespace
// (client.InNamespace), or those that never do.
type indexScope bool

const (
	inNamespace      indexScope = true
	acrossNamespaces indexScope = false
)

// allNamespacesKey prefixes the values of an index read across namespaces.
const allNamespacesKey = "__all_namespaces"

// indexField indexes obj's cache by field for client.MatchingFields, as
// the cache's IndexField does, but files each value under the one key
// scope's lists read. IndexField files every value of a namespaced object
// twice, once in its namespace and once across namespaces, and most of the
// reflector's values are unique to one pod: each is a set of its own, so
// the second copy doubled what the host pod indexes keep, to 1.5 KB per
// pod (BenchmarkHostPodIndexMemory).
//
// The keys are controller-runtime's cache reader's ("field:" + field, and
// "<namespace>/<value>" or "__all_namespaces/<value>"): if the reader
// stopped reading them, every reflector list by field would fail or come
// back empty, and with it every integration test that reflects a pod.
func indexField(ctx context.Context, informers cache.Informers, obj client.Object, field string, scope indexScope, extract client.IndexerFunc) error {
	informer, err := informers.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("indexing by %s: %w", field, err)
	}
	err = informer.AddIndexers(toolscache.Indexers{"field:" + field: func(raw any) ([]string, error) {
		o, ok := raw.(client.Object)
		if !ok {
			return nil, fmt.Errorf("indexing by %s: %T is not an object", field, raw)
		}
		prefix := allNamespacesKey
		if scope == inNamespace && o.GetNamespace() != "" {
			prefix = o.GetNamespace()
		}
		values := extract(o)
		keys := make([]string, len(values))
		for i, v := range values {
			keys[i] = prefix + "/" + v
		}
		return keys, nil
	}})
	if err != nil {
		return fmt.Errorf("indexing by %s: %w", field, err)
	}
	return nil
}
