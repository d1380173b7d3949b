// Package hostcopy writes the host copies of virtual ConfigMaps and
// Secrets. The webhook writes the copies a pod needs before its host pod is
// made; the reflector writes the copies that follow their originals. Both
// use this one writer, so both apply the caps, never touch an object that
// is not this virtual cluster's copy, and write only what podbridge's
// translation makes of the stored virtual original: nothing a request or a
// host object carries decides what is written.
package hostcopy

import (
	"context"
	"fmt"
	"maps"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/translate"
)

// Writer creates or updates host copies. Its zero value is not usable:
// Host, FieldManager and Config are required.
type Writer struct {
	// Host writes copies in the host namespace.
	Host client.Client
	// Reader reads an existing copy whole when a create finds one; nil
	// reads with Host. The reflector's Host reads from a cache that holds
	// only the metadata of copies, so it passes a live reader.
	Reader client.Reader
	// FieldManager names the writes: translate.FieldManagerWebhook or
	// translate.FieldManagerReflector.
	FieldManager string
	// Config names the host namespace and the virtual cluster.
	Config translate.Config
	// Budget admits copies within the caps on their number and bytes; nil
	// admits every copy.
	Budget *caps.Budget

	// inflight joins concurrent writes of the same copy of the same
	// version: the first pods of a namespace all need kube-root-ca.crt.
	inflight singleflight.Group
}

// Copy is one host copy to write.
type Copy struct {
	// Original is the virtual ConfigMap or Secret as stored, read from the
	// virtual cluster by the caller; the copy written is translate's
	// HostConfigMap or HostSecret of it. Write neither changes it nor keeps
	// it, so callers may share it.
	Original client.Object
	// Current is the host copy as the caller last saw it (its metadata
	// suffices), or nil when the caller saw none: then the copy is created,
	// or, if one exists already, read and brought in line.
	Current client.Object
}

// Result says what Write did to one copy.
type Result int

const (
	// Unchanged means the copy on the host was current already.
	Unchanged Result = iota
	// Created means the copy was created.
	Created
	// Updated means an existing copy was brought in line with its original.
	Updated
)

// Write admits copies against the caps all together, or refuses them all
// with a *caps.LimitError before writing any, then writes each in turn and
// returns what it did to each, in order. A copy is created, or updated in
// place: the host object of its name must be this virtual cluster's copy
// (its labels say so), else Write returns a Conflict and leaves it alone.
// An update keeps the copy's labels that podbridge does not set. On an
// error, the caps reservation is given back and the error, wrapping the
// host's (apierrors' Is functions see through it), is returned.
func (w *Writer) Write(ctx context.Context, copies ...Copy) ([]Result, error) {
	wants := make([]client.Object, len(copies))
	for i, c := range copies {
		want, err := hostCopy(c.Original, w.Config)
		if err != nil {
			return nil, err
		}
		wants[i] = want
	}
	release, err := w.Budget.Reserve(ctx, wants...)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(copies))
	for i, want := range wants {
		key := kindOf(want) + "/" + want.GetName() + "/" + want.GetAnnotations()[translate.AnnotationSourceResourceVersion]
		current := copies[i].Current
		result, err, _ := w.inflight.Do(key, func() (any, error) { return w.createOrUpdate(ctx, want, current) })
		if err != nil {
			release()
			return nil, err
		}
		results[i] = result.(Result)
	}
	return results, nil
}

func (w *Writer) createOrUpdate(ctx context.Context, want, current client.Object) (Result, error) {
	kind := kindOf(want)
	if current == nil {
		err := w.Host.Create(ctx, want.DeepCopyObject().(client.Object), client.FieldOwner(w.FieldManager))
		switch {
		case err == nil:
			return Created, nil
		case !apierrors.IsAlreadyExists(err):
			return Unchanged, fmt.Errorf("creating host %s %s: %w", kind, want.GetName(), err)
		}
		existing := newObject(kind)
		if err := w.reader().Get(ctx, client.ObjectKeyFromObject(want), existing); err != nil {
			return Unchanged, fmt.Errorf("reading host %s %s: %w", kind, want.GetName(), err)
		}
		if w.ours(existing) && translate.SameCopy(existing, want) {
			return Unchanged, nil
		}
		current = existing
	}
	if !w.ours(current) {
		return Unchanged, apierrors.NewConflict(resourceOf(kind), want.GetName(), fmt.Errorf("host %s %s is not this virtual cluster's copy", kind, want.GetName()))
	}
	update := want.DeepCopyObject().(client.Object)
	update.SetResourceVersion(current.GetResourceVersion())
	labels := maps.Clone(current.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, want.GetLabels())
	update.SetLabels(labels)
	if err := w.Host.Update(ctx, update, client.FieldOwner(w.FieldManager)); err != nil {
		return Unchanged, fmt.Errorf("updating host %s %s: %w", kind, want.GetName(), err)
	}
	return Updated, nil
}

// ours reports whether a host object is a copy of this virtual cluster's.
func (w *Writer) ours(obj client.Object) bool {
	return obj.GetLabels()[translate.LabelVCluster] == w.Config.VCluster && obj.GetLabels()[translate.LabelManagedBy] == translate.ManagedByValue
}

func (w *Writer) reader() client.Reader {
	if w.Reader != nil {
		return w.Reader
	}
	return w.Host
}

// hostCopy is what podbridge writes for original.
func hostCopy(original client.Object, cfg translate.Config) (client.Object, error) {
	switch o := original.(type) {
	case *corev1.ConfigMap:
		return translate.HostConfigMap(o, cfg), nil
	case *corev1.Secret:
		return translate.HostSecret(o, cfg), nil
	}
	return nil, fmt.Errorf("host copies are made of ConfigMaps and Secrets, not %T", original)
}

func kindOf(obj client.Object) string {
	if _, ok := obj.(*corev1.Secret); ok {
		return "Secret"
	}
	return "ConfigMap"
}

func newObject(kind string) client.Object {
	if kind == "Secret" {
		return &corev1.Secret{}
	}
	return &corev1.ConfigMap{}
}

func resourceOf(kind string) schema.GroupResource {
	if kind == "Secret" {
		return corev1.Resource("secrets")
	}
	return corev1.Resource("configmaps")
}
