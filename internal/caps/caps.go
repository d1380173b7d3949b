// Package caps bounds what one virtual cluster can make on the host: the
// number and total bytes of its ConfigMap and Secret copies, the token
// Secrets of one pod, and the size of an admission request. Use is derived
// from the host objects themselves (a cache of their metadata), so it is
// right after a restart and across processes; memory only holds the writes
// under way that the cache does not show yet.
package caps

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// Limits are the caps; zero or less means no cap.
type Limits struct {
	// MaxCopies is how many ConfigMap and Secret copies one virtual
	// cluster may have on the host.
	MaxCopies int
	// MaxCopyBytes is the total size of their data.
	MaxCopyBytes int64
	// MaxTokensPerPod is how many projected service-account tokens (each a
	// host Secret) one pod may mount.
	MaxTokensPerPod int
	// MaxRequestBytes is the largest admission request body the webhook reads.
	MaxRequestBytes int64
	// MaxHostPods is how many host pods one virtual cluster may have,
	// whether their virtual pods were stored or not.
	MaxHostPods int
	// MaxHostServices is how many host Services one virtual cluster may
	// have (each takes an address of the host's shared service range).
	MaxHostServices int
	// MaxHostNetworkPolicies is how many host NetworkPolicies one virtual
	// cluster may have (each is compiled into every node's dataplane).
	MaxHostNetworkPolicies int
	// MaxClaimStorage is how many bytes of storage the host claims of one
	// virtual cluster may request together.
	MaxClaimStorage int64
}

// Defaults are the caps the commands start with; see docs/deploying.md.
func Defaults() Limits {
	return Limits{MaxCopies: 2000, MaxCopyBytes: 256 << 20, MaxTokensPerPod: 16, MaxRequestBytes: 4 << 20, MaxHostPods: 10000, MaxHostServices: 1000, MaxHostNetworkPolicies: 200, MaxClaimStorage: 1 << 40}
}

// Flag names, which refusals quote so the tenant and the operator know
// which cap was met.
const (
	FlagMaxCopies       = "max-copies"
	FlagMaxCopyBytes    = "max-copy-bytes"
	FlagMaxTokensPerPod = "max-tokens-per-pod"
	FlagMaxRequestBytes = "max-request-bytes"
	FlagMaxHostPods     = "max-host-pods"
	FlagMaxHostServices = "max-host-services"
	// FlagMaxHostNetworkPolicies caps host NetworkPolicies.
	FlagMaxHostNetworkPolicies = "max-host-network-policies"
)

// LimitError says a write would exceed a cap.
type LimitError struct {
	// Flag names the cap; Object names the copies refused.
	Flag, Object string
	Limit, Use   int64
	// Adding is what the refused write would add.
	Adding int64
}

func (e *LimitError) Error() string {
	if e.Flag == FlagMaxClaimStorage {
		return storageLimitMessage(e)
	}
	what, unit := "copying to the host", "host copies"
	switch e.Flag {
	case FlagMaxCopyBytes:
		unit = "bytes of host copies"
	case FlagMaxHostPods:
		// Pods whose creates were refused after podbridge admitted them
		// count until collected: the use says so.
		what, unit = "creating it", "host pods (including those of recently refused creates, until collected)"
	case FlagMaxHostServices:
		what, unit = "creating it", "host Services (including those of recently refused creates, until collected)"
	case FlagMaxHostNetworkPolicies:
		what, unit = "creating it", "host NetworkPolicies (including those of recently refused creates, until collected)"
	}
	return fmt.Sprintf("%s: %s would exceed this virtual cluster's limit of %d %s (--%s; %d in use, %d more needed)",
		e.Object, what, e.Limit, unit, e.Flag, e.Use, e.Adding)
}

// Budget admits writes of host copies within the caps.
type Budget struct {
	// Reader lists the metadata of the virtual cluster's host ConfigMaps
	// and Secrets (a cache); token Secrets among them are not counted.
	Reader    client.Reader
	Namespace string
	VCluster  string
	Limits    Limits

	mu sync.Mutex
	// reserved are writes admitted but not yet seen in Reader, by kind/name.
	reserved map[string]reservation
}

type reservation struct {
	bytes   int64
	version string
	at      time.Time
}

type entry struct {
	bytes   int64
	version string
}

// reservationLifetime bounds how long an admitted write counts without
// the cache showing it: long enough for any cache to catch up.
const reservationLifetime = time.Minute

// Reserve admits writing the host copies objs (made by translate's
// HostConfigMap and HostSecret) all together, or refuses them all with a
// *LimitError before anything is written. A copy that replaces an
// existing one counts the difference in bytes; a write that shrinks or
// keeps the size is always admitted. release gives the reservation back
// when the writes failed.
func (b *Budget) Reserve(ctx context.Context, objs ...client.Object) (release func(), err error) {
	if b == nil || len(objs) == 0 {
		return func() {}, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	use, err := b.use(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for key, r := range b.reserved {
		if cur, ok := use[key]; (ok && cur.version == r.version) || now.Sub(r.at) > reservationLifetime {
			delete(b.reserved, key)
			continue
		}
		use[key] = entry{bytes: r.bytes, version: r.version}
	}
	count, total := int64(len(use)), int64(0)
	for _, e := range use {
		total += e.bytes
	}
	publish(count, total)
	added := map[string]reservation{}
	var newCopies, grown []client.Object
	var grow int64
	for _, obj := range objs {
		key := kindOf(obj) + "/" + obj.GetName()
		if _, twice := added[key]; twice {
			continue
		}
		size := translate.CopySize(obj)
		old, exists := use[key]
		if !exists {
			newCopies = append(newCopies, obj)
		}
		if g := size - old.bytes; g > 0 {
			grow += g
			grown = append(grown, obj)
		}
		added[key] = reservation{bytes: size, version: obj.GetAnnotations()[translate.AnnotationSourceResourceVersion], at: now}
	}
	if n := int64(len(newCopies)); n > 0 && b.Limits.MaxCopies > 0 && count+n > int64(b.Limits.MaxCopies) {
		return nil, b.refuse(&LimitError{Flag: FlagMaxCopies, Object: describe(newCopies), Limit: int64(b.Limits.MaxCopies), Use: count, Adding: n})
	}
	if grow > 0 && b.Limits.MaxCopyBytes > 0 && total+grow > b.Limits.MaxCopyBytes {
		return nil, b.refuse(&LimitError{Flag: FlagMaxCopyBytes, Object: describe(grown), Limit: b.Limits.MaxCopyBytes, Use: total, Adding: grow})
	}
	if b.reserved == nil {
		b.reserved = map[string]reservation{}
	}
	for key, r := range added {
		b.reserved[key] = r
	}
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for key, r := range added {
			if b.reserved[key] == r {
				delete(b.reserved, key)
			}
		}
	}, nil
}

func (b *Budget) refuse(err *LimitError) error {
	refusals.WithLabelValues(err.Flag).Inc()
	return err
}

// use lists the copies on the host now: kind/name to size and source.
func (b *Budget) use(ctx context.Context) (map[string]entry, error) {
	selector := labels.SelectorFromSet(labels.Set{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: b.VCluster})
	use := map[string]entry{}
	for _, kind := range []string{"ConfigMap", "Secret"} {
		list := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind + "List"}}
		if err := b.Reader.List(ctx, list, client.InNamespace(b.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
			return nil, fmt.Errorf("listing host %s copies: %w", kind, err)
		}
		for i := range list.Items {
			if e, ok := copyEntry(&list.Items[i]); ok {
				use[kind+"/"+list.Items[i].Name] = e
			}
		}
	}
	return use, nil
}

// copyEntry is what the budget counts of a host ConfigMap or Secret of
// the virtual cluster: nothing for a token Secret or an object that names
// no virtual original.
func copyEntry(obj metav1.Object) (entry, bool) {
	a := obj.GetAnnotations()
	if translate.IsTokenSecret(obj) || a[translate.AnnotationName] == "" {
		return entry{}, false
	}
	size, _ := strconv.ParseInt(a[translate.AnnotationCopyBytes], 10, 64)
	return entry{bytes: size, version: a[translate.AnnotationSourceResourceVersion]}, true
}

// budgetAnnotations are the annotations copyEntry reads of a copy.
var budgetAnnotations = []string{translate.AnnotationName, translate.AnnotationCopyBytes, translate.AnnotationSourceResourceVersion}

// BudgetFields is a cache transform for the metadata of host copies that
// keeps what a Budget reads of them: their names, the labels its list
// selects on and the annotations copyEntry reads; of a token Secret, which
// it never counts, only its name. Every pod has a token
// Secret, so without it a webhook's cache grew by each one's whole
// metadata (a heap profile at 1,000 pods: ObjectMeta the largest entry).
func BudgetFields(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	keep := metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
	if translate.IsTokenSecret(m) {
		// Never counted: without labels, not even listed (960 bytes each
		// with them, a map costing more than its few entries).
		return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: keep}, nil
	}
	for _, key := range []string{translate.LabelManagedBy, translate.LabelVCluster} {
		if v, ok := m.Labels[key]; ok {
			if keep.Labels == nil {
				keep.Labels = map[string]string{}
			}
			keep.Labels[key] = v
		}
	}
	for _, key := range budgetAnnotations {
		if v, ok := m.Annotations[key]; ok {
			if keep.Annotations == nil {
				keep.Annotations = map[string]string{}
			}
			keep.Annotations[key] = v
		}
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: keep}, nil
}

func kindOf(obj client.Object) string {
	if _, ok := obj.(*corev1.Secret); ok {
		return "Secret"
	}
	return "ConfigMap"
}

// describe names the first of objs and counts the others.
func describe(objs []client.Object) string {
	first := fmt.Sprintf("%s %q", kindOf(objs[0]), objs[0].GetAnnotations()[translate.AnnotationName])
	if len(objs) > 1 {
		return fmt.Sprintf("%s and %d more", first, len(objs)-1)
	}
	return first
}
