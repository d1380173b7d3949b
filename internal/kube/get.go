package kube

import (
	"context"

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
