package webhook

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/hostcopy"
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
// together (hostcopy.Writer.Write), so a pod refused for a cap leaves
// nothing half-made on the host.
func (m *podMutator) ensureDependencies(ctx context.Context, virtual *corev1.Pod, deps *translate.Dependencies) error {
	var copies []hostcopy.Copy
	var written []seenCopy
	for _, k := range []struct {
		kind string
		refs []translate.Reference
		new  func() client.Object
	}{
		{"ConfigMap", deps.ConfigMaps, func() client.Object { return &corev1.ConfigMap{} }},
		{"Secret", deps.Secrets, func() client.Object { return &corev1.Secret{} }},
	} {
		for _, ref := range k.refs {
			original, err := m.originalToCopy(ctx, k.kind, virtual.Namespace, ref, k.new)
			if err != nil {
				return err
			}
			if original != nil {
				copies = append(copies, hostcopy.Copy{Original: original})
				written = append(written, seenCopy{k.kind, ref.HostName, original.GetResourceVersion()})
			}
		}
	}
	if _, err := m.Copies.Write(ctx, copies...); err != nil {
		return err
	}
	for _, c := range written {
		m.copies.put(c.kind, c.hostName, c.version)
	}
	return nil
}

// seenCopy is a host copy by kind, name and the source version it holds.
type seenCopy struct{ kind, hostName, version string }

// originalToCopy returns the stored virtual original of one referenced
// object, or nil when its copy is current or it does not exist.
// Admissions that need the same object at once (the first pods of a
// namespace all read kube-root-ca.crt) share one read, and the object it
// returns: the writer only reads it.
func (m *podMutator) originalToCopy(ctx context.Context, kind, namespace string, ref translate.Reference, newObject func() client.Object) (client.Object, error) {
	if m.copyCurrent(ctx, kind, namespace, ref) {
		return nil, nil
	}
	read, err, _ := m.inflight.Do("read/"+kind+"/"+ref.HostName, func() (any, error) {
		src := newObject()
		found, err := m.readVirtual(ctx, namespace, ref.Name, src)
		if err != nil || !found {
			return nil, err
		}
		return src, nil
	})
	if err != nil || read == nil {
		return nil, err
	}
	original := read.(client.Object)
	// A copy of a source version this process already put on the host is
	// not written again: the reflector keeps copies current.
	if m.copies.has(kind, ref.HostName, original.GetResourceVersion()) {
		return nil, nil
	}
	return original, nil
}

// copyCurrent reports whether this process put the copy of ref on the host
// at the resourceVersion the cache of originals holds now: then nothing
// needs reading or writing. A cache that lags an update at most delays
// that update's copy, which the reflector makes as soon as it sees it.
func (m *podMutator) copyCurrent(ctx context.Context, kind, namespace string, ref translate.Reference) bool {
	if m.Originals == nil || !m.Originals.Synced() {
		return false
	}
	meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind}}
	if err := m.Originals.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, meta); err != nil {
		return false
	}
	return m.copies.has(kind, ref.HostName, meta.ResourceVersion)
}

func (m *podMutator) readVirtual(ctx context.Context, namespace, name string, obj client.Object) (bool, error) {
	err := m.Virtual.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading virtual %T %s/%s: %w", obj, namespace, name, err)
	}
	return true, nil
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
