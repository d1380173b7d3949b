package reflector

import (
	"context"
	"fmt"
	"maps"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// BenchmarkCachedPodMemory reports the heap each pod cache keeps per pod
// (B/pod): the bench's pod as the two apiservers stored it once Ready
// (testdata, read off `make run`), made distinct per pod where every pod
// differs (name, UID, sync ID, virtual pod, token Secret, IP, container
// ID), decoded from protobuf as the informers decode it and passed through
// the cache's transform. Deterministic, where the bench's resident memory
// moves with the collector's timing.
func BenchmarkCachedPodMemory(b *testing.B) {
	const pods = 2000
	for _, c := range []struct {
		name      string
		file      string
		transform toolscache.TransformFunc
	}{
		{"host", "testdata/cached-host-pod.yaml", hostPodTransform},
		{"virtual", "testdata/cached-virtual-pod.yaml", virtualPodTransform},
	} {
		b.Run(c.name, func(b *testing.B) {
			encoded := distinctPods(b, c.file, pods)
			decoder := serializer.NewCodecFactory(kube.Scheme).UniversalDeserializer()
			held := make([]any, pods)
			var perPod float64
			for b.Loop() {
				clear(held)
				before := heapInUse()
				for i, raw := range encoded {
					obj, _, err := decoder.Decode(raw, nil, nil)
					if err != nil {
						b.Fatal(err)
					}
					if held[i], err = c.transform(obj); err != nil {
						b.Fatal(err)
					}
				}
				perPod = float64(heapInUse()-before) / pods
			}
			runtime.KeepAlive(held)
			b.ReportMetric(perPod, "B/pod")
		})
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// distinctPods encodes n variants of the pod in file as the apiserver
// sends them (protobuf), each with what differs from pod to pod.
func distinctPods(tb testing.TB, file string, n int) [][]byte {
	tb.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		tb.Fatalf("%s: %v", file, err)
	}
	encoder := protobuf.NewSerializer(kube.Scheme, kube.Scheme)
	out := make([][]byte, n)
	for i := range out {
		p := pod.DeepCopy()
		p.Name = fmt.Sprintf("%s-%05d", p.Name, i)
		p.UID = types.UID(fmt.Sprintf("%s-%05d", p.UID[:len(p.UID)-6], i))
		p.ResourceVersion = fmt.Sprint(100000 + i)
		if _, ok := p.Annotations[translate.AnnotationSyncID]; ok {
			p.Annotations[translate.AnnotationSyncID] = fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
		}
		if name, ok := p.Annotations[translate.AnnotationName]; ok { // the virtual pod a host pod runs
			p.Annotations[translate.AnnotationName] = fmt.Sprintf("%s-%05d", name, i)
		}
		for _, v := range p.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					s.Secret.Name = fmt.Sprintf("%s%05d", s.Secret.Name[:len(s.Secret.Name)-5], i)
				}
			}
		}
		ip := fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)
		p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		for j := range p.Status.ContainerStatuses {
			cs := &p.Status.ContainerStatuses[j]
			cs.ContainerID = "containerd://" + strings.Repeat(fmt.Sprintf("%08x", i), 8)
		}
		var buf strings.Builder
		if err := encoder.Encode(p, &buf); err != nil {
			tb.Fatal(err)
		}
		out[i] = []byte(buf.String())
	}
	return out
}

// BenchmarkSharePod is what sharing adds to each pod event the caches
// take, against decoding the event's pod (the informer's own work).
func BenchmarkSharePod(b *testing.B) {
	const pods = 2000
	encoded := distinctPods(b, "testdata/cached-host-pod.yaml", pods)
	decoder := serializer.NewCodecFactory(kube.Scheme).UniversalDeserializer()
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, _, err := decoder.Decode(encoded[i%pods], nil, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("share", func(b *testing.B) {
		decoded := decodedPods(b, "testdata/cached-host-pod.yaml", pods)
		m := newPartMemory(maxSharedParts)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			m.sharePod(decoded[i%pods])
		}
	})
}

// BenchmarkHostPodIndexMemory reports the heap the host pod cache's
// indexes keep per pod (B/pod), as the reflector registers them, over the
// same pods as BenchmarkCachedPodMemory: the cache with its indexes
// against the cache with the namespace index alone, which every
// controller-runtime cache has.
func BenchmarkHostPodIndexMemory(b *testing.B) {
	const pods = 2000
	registered := &capturedIndexers{}
	ctx := context.Background()
	for _, index := range []func() error{
		func() error { return indexHostPods(ctx, registered) },
		func() error { return indexHostPodsByNode(ctx, registered) },
		func() error { return indexEndpointSlices(ctx, registered, &capturedIndexers{}) },
	} {
		if err := index(); err != nil {
			b.Fatal(err)
		}
	}
	withIndexes := registered.of(&corev1.Pod{})
	withIndexes[toolscache.NamespaceIndex] = toolscache.MetaNamespaceIndexFunc
	decoded := decodedPods(b, "testdata/cached-host-pod.yaml", pods)
	var perPod float64
	for b.Loop() {
		cacheBytes := func(indexers toolscache.Indexers) uint64 {
			before := heapInUse()
			store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, indexers)
			for _, pod := range decoded {
				if err := store.Add(pod); err != nil {
					b.Fatal(err)
				}
			}
			used := heapInUse() - before
			runtime.KeepAlive(store)
			return used
		}
		namespaceOnly := cacheBytes(toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
		perPod = float64(int64(cacheBytes(withIndexes))-int64(namespaceOnly)) / pods
	}
	b.ReportMetric(perPod, "B/pod")
}

// capturedIndexers is a cache's informers reduced to the indexers
// registered on them, by kind.
type capturedIndexers struct {
	cache.Informers
	byKind map[reflect.Type]toolscache.Indexers
}

func (c *capturedIndexers) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	return capturedInformer{into: c.of(obj)}, nil
}

// of is the indexers registered for obj's kind.
func (c *capturedIndexers) of(obj client.Object) toolscache.Indexers {
	if c.byKind == nil {
		c.byKind = map[reflect.Type]toolscache.Indexers{}
	}
	kind := reflect.TypeOf(obj)
	if c.byKind[kind] == nil {
		c.byKind[kind] = toolscache.Indexers{}
	}
	return c.byKind[kind]
}

type capturedInformer struct {
	cache.Informer
	into toolscache.Indexers
}

func (i capturedInformer) AddIndexers(indexers toolscache.Indexers) error {
	maps.Copy(i.into, indexers)
	return nil
}
