package kube

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// countingMapper counts the questions that reach it.
type countingMapper struct {
	meta.RESTMapper
	asked int
}

func (c *countingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	c.asked++
	return c.RESTMapper.RESTMapping(gk, versions...)
}

func TestRememberingMapperAsksOncePerKindAndVersion(t *testing.T) {
	pod := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	node := schema.GroupVersionKind{Version: "v1", Kind: "Node"}
	known := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Version: "v1"}})
	known.Add(pod, meta.RESTScopeNamespace)
	known.Add(node, meta.RESTScopeRoot)
	dynamic := &countingMapper{RESTMapper: known}
	m := &rememberingMapper{RESTMapper: dynamic, found: map[schema.GroupVersionKind]*meta.RESTMapping{}}

	steps := []struct {
		gk        schema.GroupKind
		versions  []string
		wantScope meta.RESTScopeName // "" for an error
		wantAsked int                // questions the dynamic mapper has had after this one
	}{
		{pod.GroupKind(), []string{"v1"}, meta.RESTScopeNameNamespace, 1},
		{pod.GroupKind(), []string{"v1"}, meta.RESTScopeNameNamespace, 1},
		{node.GroupKind(), []string{"v1"}, meta.RESTScopeNameRoot, 2},
		{node.GroupKind(), []string{"v1"}, meta.RESTScopeNameRoot, 2},
		// Not served: asked every time, so a kind served later is found.
		{schema.GroupKind{Group: "example.com", Kind: "Widget"}, []string{"v1"}, "", 3},
		{schema.GroupKind{Group: "example.com", Kind: "Widget"}, []string{"v1"}, "", 4},
		// Any version, or several: the dynamic mapper's to answer.
		{pod.GroupKind(), nil, meta.RESTScopeNameNamespace, 5},
		{pod.GroupKind(), []string{"v2", "v1"}, meta.RESTScopeNameNamespace, 6},
	}
	for i, s := range steps {
		mapping, err := m.RESTMapping(s.gk, s.versions...)
		switch {
		case s.wantScope == "" && err == nil:
			t.Errorf("step %d: %v %v mapped to %v, want an error", i, s.gk, s.versions, mapping.Resource)
		case s.wantScope != "" && err != nil:
			t.Errorf("step %d: %v %v: %v", i, s.gk, s.versions, err)
		case s.wantScope != "" && mapping.Scope.Name() != s.wantScope:
			t.Errorf("step %d: %v %v scope %s, want %s", i, s.gk, s.versions, mapping.Scope.Name(), s.wantScope)
		}
		if dynamic.asked != s.wantAsked {
			t.Errorf("step %d: the dynamic mapper was asked %d times, want %d", i, dynamic.asked, s.wantAsked)
		}
	}

	// A caller that changes its answer changes no other caller's.
	first, _ := m.RESTMapping(pod.GroupKind(), "v1")
	first.Resource.Resource = "changed"
	if second, _ := m.RESTMapping(pod.GroupKind(), "v1"); second.Resource.Resource != "pods" {
		t.Errorf("a remembered mapping reads resource %q after a caller changed its copy, want pods", second.Resource.Resource)
	}
}
