package webhook

import (
	"context"
	"fmt"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// ensureDependencies puts on the host the copies of the virtual ConfigMaps
// and Secrets the host pod references, so it can start at once. A
// referenced object that does not exist is skipped: as in any cluster, the
// pod then waits for it (the reflector copies it when it appears). Token
// Secrets are the reflector's: tokens are bound to the virtual pod, which
// does not exist yet, and the host pod waits for them behind
// translate.GateVirtualPod.
//
// Every copy to write is read first and admitted against the caps all
// together, so a pod refused for a cap leaves nothing half-made on the host.
func (m *PodMutator) ensureDependencies(ctx context.Context, virtual *corev1.Pod, deps *translate.Dependencies) error {
	var writes []client.Object
	for _, ref := range deps.ConfigMaps {
		obj, err := m.copyToWrite(ctx, "ConfigMap", virtual.Namespace, ref, &corev1.ConfigMap{}, func(src client.Object) client.Object {
			return translate.HostConfigMap(src.(*corev1.ConfigMap), m.Config)
		})
		if err != nil {
			return err
		}
		if obj != nil {
			writes = append(writes, obj)
		}
	}
	for _, ref := range deps.Secrets {
		obj, err := m.copyToWrite(ctx, "Secret", virtual.Namespace, ref, &corev1.Secret{}, func(src client.Object) client.Object {
			return translate.HostSecret(src.(*corev1.Secret), m.Config)
		})
		if err != nil {
			return err
		}
		if obj != nil {
			writes = append(writes, obj)
		}
	}
	release, err := m.Budget.Reserve(ctx, writes...)
	if err != nil {
		return err
	}
	for _, obj := range writes {
		_, err, _ := m.inflight.Do("write/"+kindOf(obj)+"/"+obj.GetName()+"/"+obj.GetAnnotations()[translate.AnnotationSourceResourceVersion], func() (any, error) {
			return nil, m.ensureHostCopy(ctx, obj)
		})
		if err != nil {
			release()
			return err
		}
	}
	return nil
}

// copyToWrite returns the host copy of one referenced object, or nil when
// the copy is current or the object does not exist. Admissions that need
// the same object at once (the first pods of a namespace all read
// kube-root-ca.crt) share one read.
func (m *PodMutator) copyToWrite(ctx context.Context, kind, namespace string, ref translate.Reference, src client.Object, hostCopy func(client.Object) client.Object) (client.Object, error) {
	if m.copyCurrent(ctx, kind, namespace, ref) {
		return nil, nil
	}
	read, err, _ := m.inflight.Do("read/"+kind+"/"+ref.HostName, func() (any, error) {
		found, err := m.readVirtual(ctx, namespace, ref.Name, src)
		if err != nil || !found {
			return nil, err
		}
		return hostCopy(src), nil
	})
	if err != nil || read == nil {
		return nil, err
	}
	// Shared between admissions: each gets its own to write.
	return read.(client.Object).DeepCopyObject().(client.Object), nil
}

// copyCurrent reports whether this process put the copy of ref on the host
// at the resourceVersion the cache of originals holds now: then nothing
// needs reading or writing. A cache that lags an update at most delays
// that update's copy, which the reflector makes as soon as it sees it.
func (m *PodMutator) copyCurrent(ctx context.Context, kind, namespace string, ref translate.Reference) bool {
	if m.Originals == nil || !m.Originals.Synced() {
		return false
	}
	meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind}}
	if err := m.Originals.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, meta); err != nil {
		return false
	}
	return m.copies.has(kind, ref.HostName, meta.ResourceVersion)
}

func (m *PodMutator) readVirtual(ctx context.Context, namespace, name string, obj client.Object) (bool, error) {
	err := m.Virtual.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading virtual %T %s/%s: %w", obj, namespace, name, err)
	}
	return true, nil
}

// ensureHostCopy creates obj on the host, or brings an existing copy's
// content in line. Another virtual cluster's object of the same name is
// never touched. A copy of a source version this process already put on
// the host is not written again: most pods share their ConfigMaps (every
// pod reads kube-root-ca.crt), and the reflector keeps copies current.
func (m *PodMutator) ensureHostCopy(ctx context.Context, obj client.Object) error {
	version := obj.GetAnnotations()[translate.AnnotationSourceResourceVersion]
	kind := kindOf(obj)
	if m.copies.has(kind, obj.GetName(), version) {
		return nil
	}
	err := m.Host.Create(ctx, obj, client.FieldOwner(FieldManager))
	switch {
	case err == nil:
		m.copies.put(kind, obj.GetName(), version)
		return nil
	case !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("creating host %T %s: %w", obj, obj.GetName(), err)
	}
	existing := obj.DeepCopyObject().(client.Object)
	if err := m.Host.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		return fmt.Errorf("reading host %T %s: %w", obj, obj.GetName(), err)
	}
	if existing.GetLabels()[translate.LabelVCluster] != m.Config.VCluster || existing.GetLabels()[translate.LabelManagedBy] != translate.ManagedByValue {
		return apierrors.NewConflict(podResource, obj.GetName(), fmt.Errorf("host object %s is not this virtual cluster's copy", obj.GetName()))
	}
	if !translate.SameCopy(existing, obj) {
		obj.SetResourceVersion(existing.GetResourceVersion())
		labels := maps.Clone(existing.GetLabels())
		maps.Copy(labels, obj.GetLabels())
		obj.SetLabels(labels)
		if err := m.Host.Update(ctx, obj, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("updating host %T %s: %w", obj, obj.GetName(), err)
		}
	}
	m.copies.put(kind, obj.GetName(), version)
	return nil
}

func kindOf(obj client.Object) string {
	if _, ok := obj.(*corev1.Secret); ok {
		return "Secret"
	}
	return "ConfigMap"
}

// copiesSeen remembers the source version of the host copies this process
// last wrote or found current. A copy the reflector removed meanwhile (no
// pod used it) is not re-created here; the reflector re-creates it as soon
// as the new pod uses it. Bounded: cleared when it reaches maxCopiesSeen.
type copiesSeen struct {
	mu       sync.Mutex
	versions map[string]string
}

const maxCopiesSeen = 4096

func (c *copiesSeen) has(kind, hostName, version string) bool {
	if version == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.versions[kind+"/"+hostName] == version
}

func (c *copiesSeen) put(kind, hostName, version string) {
	if version == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.versions == nil || len(c.versions) >= maxCopiesSeen {
		c.versions = map[string]string{}
	}
	c.versions[kind+"/"+hostName] = version
}
