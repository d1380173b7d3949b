// Package runtimeclass finds the host RuntimeClass of a tenant's pod: it
// reads what translate.RuntimeClassOf decides from, the tenant's class in
// the virtual cluster and the allowed classes on the host. The webhook
// uses it at a pod's creation, the reflector when it makes a host pod again.
package runtimeclass

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// HostClass returns the host RuntimeClass of virtual's host pod: nil when
// the pod names none. It reads nothing when the pod names no class or an
// allowed class's name; pods naming another are few, so host and virtual
// are live readers, not caches kept for every pod.
//
// A refusal is a field error naming spec.runtimeClassName; a failed read is
// an error.
func HostClass(ctx context.Context, host, virtual client.Reader, allowed []string, pod *corev1.Pod) (*string, *field.Error, error) {
	requested := pod.Spec.RuntimeClassName
	if requested == nil || !translate.NeedsRuntimeClassHandler(*requested, allowed) {
		return requested, nil, nil
	}
	path := field.NewPath("spec", "runtimeClassName")
	tenant := &nodev1.RuntimeClass{}
	if err := virtual.Get(ctx, client.ObjectKey{Name: *requested}, tenant); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, field.NotFound(path, *requested), nil
		}
		return nil, nil, fmt.Errorf("reading the pod's RuntimeClass %s: %w", *requested, err)
	}
	var offered []translate.HostRuntimeClass
	for _, name := range allowed {
		class := &nodev1.RuntimeClass{}
		err := host.Get(ctx, client.ObjectKey{Name: name}, class)
		switch {
		case apierrors.IsNotFound(err):
			continue // allowed, but this host has no such class.
		case err != nil:
			return nil, nil, fmt.Errorf("reading the host's RuntimeClass %s: %w", name, err)
		}
		offered = append(offered, translate.HostRuntimeClass{Name: name, Handler: class.Handler})
	}
	chosen, refusal := translate.RuntimeClassOf(path, *requested, tenant.Handler, offered)
	if refusal != nil {
		return nil, refusal, nil
	}
	return &chosen, nil, nil
}
