package kube

import (
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// RememberingMapper is a MapperProvider for controller-runtime's manager
// and cluster options: controller-runtime's dynamic REST mapper, which
// remembers each mapping it found for one kind at one version.
//
// A cache restricted to namespaces (cache.Options.DefaultNamespaces) asks
// whether the kind is namespaced on every Get and List, and the dynamic
// mapper builds that answer anew from its discovery data each time: 5 to
// 10 % of a restarted reflector's CPU at 10,000 pods. A kind's mapping at
// a given version does not change while the apiserver serves it, and
// controller-runtime's own client already keeps the resource it found for
// each kind for the life of the process; this keeps the rest of the
// mapping the same way. Failures are not remembered, so a kind served
// later is still found.
func RememberingMapper(cfg *rest.Config, httpClient *http.Client) (meta.RESTMapper, error) {
	dynamic, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return &rememberingMapper{RESTMapper: dynamic, found: map[schema.GroupVersionKind]*meta.RESTMapping{}}, nil
}

type rememberingMapper struct {
	meta.RESTMapper

	mu    sync.RWMutex
	found map[schema.GroupVersionKind]*meta.RESTMapping // mappings asked for at exactly one version
}

// RESTMapping answers a question for one version from memory, and any
// other from the dynamic mapper.
func (m *rememberingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if len(versions) != 1 {
		return m.RESTMapper.RESTMapping(gk, versions...)
	}
	gvk := gk.WithVersion(versions[0])
	m.mu.RLock()
	mapping, ok := m.found[gvk]
	m.mu.RUnlock()
	if !ok {
		var err error
		if mapping, err = m.RESTMapper.RESTMapping(gk, versions...); err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.found[gvk] = mapping
		m.mu.Unlock()
	}
	answer := *mapping // each caller gets its own, as from the dynamic mapper.
	return &answer, nil
}
