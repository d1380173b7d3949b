package reflector

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Pods of one template repeat most of what they hold: a Deployment's
// replicas differ in their names, their token volume, their addresses and
// their status. The pod caches point the parts that pods repeat at one
// copy, remembered by the digest of its encoding: labels, owner (a
// ReplicaSet's pods name the same), node selector, tolerations, affinity,
// DNS settings, each container's environment, and the sources of projected
// volumes. For the bench's pod that takes a cached host pod from 7.2 to
// 5.3 KB, and a virtual pod from 5.8 to 4.8 KB (BenchmarkCachedPodMemory).
//
// Cached pods are read-only (see NewManager): every reader already writes
// only copies, so pointing many pods at one part changes nothing they see.
// The informers decode protobuf, whose decoding of equal encodings is
// equal (nil and empty alike), so the part a pod points at is the one it
// was decoded with, field for field.

// maxSharedParts bounds what sharedParts remembers: twice this many digests
// and the parts they name, which stay alive until forgotten, so at most
// 32 MiB of parts of pods already gone (with maxSharedPartBytes). A
// virtual cluster's pods repeat few distinct parts, a handful per
// template; parts that are each pod's own (a StatefulSet's labels name
// its pod) only pass through.
const maxSharedParts = 4096

// maxSharedPartBytes: parts with a longer encoding are rare and kept per
// pod, so a pod's huge environment is never held beyond the pod's life.
const maxSharedPartBytes = 4096

// sharedParts is the one memory of both pod caches.
var sharedParts = newPartMemory(maxSharedParts)

// partMemory remembers the parts it has seen, by kind and encoding.
type partMemory struct {
	mu    sync.Mutex
	parts generations[[sha256.Size]byte, any]
}

func newPartMemory(limit int) *partMemory {
	return &partMemory{parts: newGenerations[[sha256.Size]byte, any](limit)}
}

// sharePod points pod's repeated parts at the copies remembered, and
// remembers those seen first. pod is freshly decoded, not yet cached. A
// projected token Secret is each pod's own and not looked at.
func (m *partMemory) sharePod(pod *corev1.Pod) {
	e := &partEncoder{m: m, buf: make([]byte, 0, 1024)}
	pod.Labels = shareMap(e, "labels", pod.Labels)
	pod.OwnerReferences = shareSlice(e, "ownerReferences", pod.OwnerReferences)
	spec := &pod.Spec
	spec.NodeSelector = shareMap(e, "nodeSelector", spec.NodeSelector)
	spec.Tolerations = shareSlice(e, "tolerations", spec.Tolerations)
	spec.Affinity = sharePointer(e, "affinity", spec.Affinity)
	spec.DNSConfig = sharePointer(e, "dnsConfig", spec.DNSConfig)
	for _, containers := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range containers {
			containers[i].Env = shareSlice(e, "env", containers[i].Env)
		}
	}
	for i := range spec.Volumes {
		if p := spec.Volumes[i].Projected; p != nil {
			for j := range p.Sources {
				s := &p.Sources[j]
				s.ConfigMap = sharePointer(e, "configMapProjection", s.ConfigMap)
				s.DownwardAPI = sharePointer(e, "downwardAPIProjection", s.DownwardAPI)
				s.ServiceAccountToken = sharePointer(e, "serviceAccountTokenProjection", s.ServiceAccountToken)
			}
		}
	}
}

// partEncoder encodes one pod's parts in turn, in one buffer: a part's key
// is the digest of its kind and its protobuf encoding.
type partEncoder struct {
	m   *partMemory
	buf []byte
}

// begin starts the encoding of a part of kind.
func (e *partEncoder) begin(kind string) {
	e.buf = append(append(e.buf[:0], kind...), 0)
}

// add appends one value's encoding, length first. It reports false, and
// encodes nothing, when the part would pass maxSharedPartBytes: such a
// part is kept per pod, and a tenant's huge environment is not encoded at
// every event of its pods.
func (e *partEncoder) add(v marshaler) bool {
	n := v.Size()
	if len(e.buf)+n > maxSharedPartBytes {
		return false
	}
	e.buf = binary.AppendUvarint(e.buf, uint64(n))
	e.buf = slices.Grow(e.buf, n)
	if _, err := v.MarshalToSizedBuffer(e.buf[len(e.buf) : len(e.buf)+n]); err != nil {
		return false
	}
	e.buf = e.buf[:len(e.buf)+n]
	return true
}

// addString appends s, length first.
func (e *partEncoder) addString(s string) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// share is remembered for a part of type T. Each kind names one Go type,
// so a part remembered as another type cannot come back; if it did, the
// pod would keep its own.
func share[T any](e *partEncoder, part T) T {
	if shared, ok := e.remembered(part).(T); ok {
		return shared
	}
	return part
}

// remembered returns the part remembered under what was encoded since
// begin, or part, remembered.
func (e *partEncoder) remembered(part any) any {
	if len(e.buf) > maxSharedPartBytes {
		return part
	}
	key := sha256.Sum256(e.buf)
	m := e.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if seen, ok := m.parts.get(key); ok {
		return seen
	}
	m.parts.put(key, part)
	return part
}

// marshaler is the protobuf encoding every API type has.
type marshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

func sharePointer[T any, P interface {
	*T
	marshaler
}](e *partEncoder, kind string, part P) P {
	if part == nil {
		return nil
	}
	e.begin(kind)
	if !e.add(part) {
		return part
	}
	return share(e, part)
}

func shareSlice[T any, P interface {
	*T
	marshaler
}](e *partEncoder, kind string, part []T) []T {
	if len(part) == 0 {
		return part
	}
	e.begin(kind)
	for i := range part {
		if !e.add(P(&part[i])) {
			return part
		}
	}
	return share(e, part)
}

func shareMap(e *partEncoder, kind string, part map[string]string) map[string]string {
	if len(part) == 0 {
		return part
	}
	e.begin(kind)
	for _, k := range slices.Sorted(maps.Keys(part)) {
		e.addString(k)
		e.addString(part[k])
	}
	return share(e, part)
}
