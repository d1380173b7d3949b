// Package render builds podbridge's kustomize manifests in process, so
// tests can check and apply them without a kustomize binary.
package render

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Kustomization builds the kustomization in dir and returns its objects.
func Kustomization(dir string) ([]*unstructured.Unstructured, error) {
	return KustomizationIn(filesys.MakeFsOnDisk(), dir)
}

// KustomizationIn builds the kustomization in dir of fSys (an in-memory
// one holds overlays a test writes) and returns its objects.
func KustomizationIn(fSys filesys.FileSystem, dir string) ([]*unstructured.Unstructured, error) {
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fSys, dir)
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", dir, err)
	}
	var objects []*unstructured.Unstructured
	for _, r := range resources.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", r.CurId(), err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", r.CurId(), err)
		}
		objects = append(objects, obj)
	}
	return objects, nil
}
