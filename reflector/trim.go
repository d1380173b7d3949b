package reflector

import (
	"crypto/sha256"
	"slices"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podbridge/podbridge/translate"
)

// The pod caches' transforms: managedFields trimmed to what the reflector
// reads of them, parts other pods repeat shared (share.go).
var (
	hostPodTransform    = podTransform(hostPodFields)
	virtualPodTransform = podTransform(virtualPodFields)
)

func podTransform(trim func(*metav1.ManagedFieldsEntry) bool) toolscache.TransformFunc {
	trimmed := trimManagedFields(trim)
	return func(obj any) (any, error) {
		obj, err := trimmed(obj)
		if pod, ok := obj.(*corev1.Pod); ok {
			sharedParts.sharePod(pod)
		}
		return obj, err
	}
}

// trimManagedFields is a cache transform that keeps of a pod's
// managedFields only what the reflector reads, as trim decides per entry
// (false drops it). Of the entries trim leaves as a status write's time
// alone (status, no fields), only the newest is kept: the readers
// (StatusChangedAt, lastStatusWrite) want the latest. The strings every
// entry repeats are shared. managedFields are often a third of a pod.
// Pods read from such a cache must go through forWrite before they are
// written back.
func trimManagedFields(trim func(*metav1.ManagedFieldsEntry) bool) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if pod, ok := obj.(*corev1.Pod); ok {
			pod.ManagedFields = trimEntries(pod.ManagedFields, trim)
		}
		return obj, nil
	}
}

// trimEntries returns the entries trim keeps, those that are only a status
// write's time reduced to the newest, in a new array: a slice of the
// decoded one would keep all of it for every cached pod.
func trimEntries(entries []metav1.ManagedFieldsEntry, trim func(*metav1.ManagedFieldsEntry) bool) []metav1.ManagedFieldsEntry {
	kept := entries[:0]
	newest := -1
	for _, e := range entries {
		if !trim(&e) {
			continue
		}
		if e.Subresource == "status" && e.FieldsV1 == nil {
			switch {
			case e.Time == nil:
				continue
			case newest >= 0 && !e.Time.After(kept[newest].Time.Time):
				continue
			case newest >= 0:
				kept[newest] = shared(e)
				continue
			}
			newest = len(kept)
		}
		kept = append(kept, shared(e))
	}
	if len(kept) == 0 {
		return nil
	}
	return slices.Clone(kept)
}

// shared returns e with the strings every pod's entries repeat (manager,
// API version, operation, fields type, subresource) shared with theirs.
func shared(e metav1.ManagedFieldsEntry) metav1.ManagedFieldsEntry {
	e.Manager = unique.Make(e.Manager).Value()
	e.APIVersion = unique.Make(e.APIVersion).Value()
	e.Operation = metav1.ManagedFieldsOperationType(unique.Make(string(e.Operation)).Value())
	e.FieldsType = unique.Make(e.FieldsType).Value()
	e.Subresource = unique.Make(e.Subresource).Value()
	return e
}

// hostPodFields keeps of the entries of podbridge's field managers the
// keys HostPodUpdate reads to know which are the tenant's, and the time of
// every status write, which StatusChangedAt reads.
func hostPodFields(e *metav1.ManagedFieldsEntry) bool {
	switch {
	case slices.Contains(podbridgeManagers, e.Manager):
		if e.FieldsV1 != nil && e.Subresource == "" {
			e.FieldsV1 = ownedKeys.cut(e.FieldsV1.GetRawBytes())
		}
		return true
	case e.Subresource == "status":
		e.FieldsV1 = nil
		return true
	}
	return false
}

// virtualPodFields keeps the time of the reflector's status writes, which
// lastStatusWrite reads.
func virtualPodFields(e *metav1.ManagedFieldsEntry) bool {
	e.FieldsV1 = nil
	return e.Manager == FieldManager && e.Subresource == "status"
}

// forWrite prepares a pod from a trimmed cache for an update: without
// managedFields the apiserver keeps the stored ones, where a trimmed list
// would replace them.
func forWrite(pod *corev1.Pod) *corev1.Pod {
	pod.ManagedFields = nil
	return pod
}

// ownedKeys remembers the cut of the trees it has seen. Every event of a
// host pod carries the webhook's create entry again: parsing it each time
// was 8% of the reflector's CPU at 200 status changes a second (pprof).
// Each pod's entry differs (its token volume's name, for one), but the
// cuts of one template's pods are the same bytes: the cache keeps one
// FieldsV1 per distinct cut, which every cached pod with that cut points
// to, and remembers trees by digest, not by their bytes (a heap profile at
// 1,000 pods had ~6 KiB per pod in the raw keys, the cuts and each pod's
// copy of its cut).
var ownedKeys = newFieldsCuts(maxFieldsCuts)

// maxFieldsCuts bounds the memory of fieldsCuts: it remembers the digests
// of at most twice this many trees (about 60 bytes each) and their distinct
// cuts. A generation holds more trees than the pods of a large virtual
// cluster (10,000 in the bench): with a bound below that, every event
// parsed its tree again once the memory had been cleared.
const maxFieldsCuts = 16384

// fieldsCuts remembers the cuts of trees it has seen (see generations).
type fieldsCuts struct {
	mu sync.Mutex
	// cuts maps a tree's SHA-256 to its cut; same holds each distinct cut
	// once, by its bytes.
	cuts generations[[sha256.Size]byte, *metav1.FieldsV1]
	same map[string]*metav1.FieldsV1
}

func newFieldsCuts(limit int) *fieldsCuts {
	return &fieldsCuts{cuts: newGenerations[[sha256.Size]byte, *metav1.FieldsV1](limit), same: map[string]*metav1.FieldsV1{}}
}

// cut returns the cut of raw, shared with every other tree of the same
// cut: callers must not change it (the cache's pods are read-only, and
// forWrite drops managedFields before a write).
func (f *fieldsCuts) cut(raw []byte) *metav1.FieldsV1 {
	key := sha256.Sum256(raw)
	f.mu.Lock()
	defer f.mu.Unlock()
	cut, ok := f.cuts.get(key)
	if !ok {
		cut = f.shared(translate.OwnedKeysFields(raw))
		f.cuts.put(key, cut)
	}
	return cut
}

// shared returns the one FieldsV1 of these cut bytes. The distinct cuts
// are few (one per pod template); should they pass the bound, sharing
// starts afresh, and cuts already handed out stay valid.
func (f *fieldsCuts) shared(bytes []byte) *metav1.FieldsV1 {
	if cut, ok := f.same[string(bytes)]; ok {
		return cut
	}
	if len(f.same) >= f.cuts.limit {
		clear(f.same)
	}
	cut := &metav1.FieldsV1{}
	cut.SetRawBytes(bytes)
	f.same[string(bytes)] = cut
	return cut
}
