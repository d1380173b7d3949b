package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// GetOrNil reads the object at key into a new T: nil, and no error, when
// there is none, as the pairs podbridge keeps may lack either side.
func GetOrNil[T any, PT interface {
	*T
	client.Object
}](ctx context.Context, c client.Reader, key client.ObjectKey) (PT, error) {
	obj := PT(new(T))
	if err := c.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return obj, nil
}

// NamespaceLabels reads the labels of every namespace c knows, by name.
func NamespaceLabels(ctx context.Context, c client.Reader) (map[string]map[string]string, error) {
	list := &corev1.NamespaceList{}
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	out := make(map[string]map[string]string, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Name] = list.Items[i].Labels
	}
	return out, nil
}
