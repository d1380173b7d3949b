package reflector

import (
	"context"
	"fmt"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// pairDeps are the clients, settings and clock of a reconciler that keeps
// each virtual object of a kind and the one host object the webhook made
// for it (Services, PersistentVolumeClaims, NetworkPolicies). Host objects
// are read from a cache of this virtual cluster's host objects (Host),
// virtual ones from the virtual cluster's cache (Virtual); HostReader and
// VirtualReader read live, to confirm what a lagging cache shows.
type pairDeps struct {
	Host          client.Client
	HostReader    client.Reader
	Virtual       client.Client
	VirtualReader client.Reader
	Recorder      events.EventRecorder
	Config        translate.Config
	Gate          policy.Gate
	GracePeriod   time.Duration
	Clock         clock.PassiveClock
}

// objectPairs is the part such a reconciler does the same for every kind:
// its watches and full pass, and the gather step of a reconcile (the pair
// of one key). Each kind embeds it and keeps its own decision and writes.
type objectPairs[T any, PT interface {
	*T
	client.Object
}] struct {
	pairDeps
	// kinds names the kind in list errors ("Services"); lower-cased, it
	// names the controller.
	kinds string
	// newList makes an empty list of the kind.
	newList func() client.ObjectList
	// hostName is the name the webhook gives the host object of a virtual
	// one (translate.HostServiceName and the like).
	hostName func(name, namespace, vcluster string) string
	// get reads one object of the kind: nil when there is none.
	get func(ctx context.Context, c client.Reader, key types.NamespacedName) (PT, error)
}

// newObjectPairs makes the shared part of a kind's reconciler on deps.
func newObjectPairs[T any, PT interface {
	*T
	client.Object
}](deps pairDeps, kinds string, newList func() client.ObjectList, hostName func(name, namespace, vcluster string) string,
	get func(context.Context, client.Reader, types.NamespacedName) (PT, error)) objectPairs[T, PT] {
	return objectPairs[T, PT]{pairDeps: deps, kinds: kinds, newList: newList, hostName: hostName, get: get}
}

// controller starts the builder of the kind's controller: events of either
// object enqueue the virtual key (virtualKeyOfHost for a host object), and
// a full pass enqueues every key keys lists once both caches of the kind,
// and those of alsoSynced, have synced. The caller adds any further watch
// and completes it.
func (p *objectPairs[T, PT]) controller(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration,
	keys func(context.Context) ([]reconcile.Request, error), alsoSynced ...watched) *builder.Builder {
	name := strings.ToLower(p.kinds)
	kinds := append([]watched{{mgr.GetCache(), PT(new(T))}, {virtual.GetCache(), PT(new(T))}}, alsoSynced...)
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(virtual.GetCache(), PT(new(T)), &handler.TypedEnqueueRequestForObject[PT]{})).
		WatchesRawSource(source.Kind(mgr.GetCache(), PT(new(T)), handler.TypedEnqueueRequestsFromMapFunc(virtualKeyOfHost[PT]))).
		WatchesRawSource(fullPass(name, resync, synced(kinds...), keys))
}

// pairKeys lists the key of every pair either cache knows, for the full
// pass: each host object's in the host namespace (virtualKeyOf) and each
// virtual object's.
func (p *objectPairs[T, PT]) pairKeys(ctx context.Context) ([]reconcile.Request, error) {
	hosts := p.newList()
	if err := p.Host.List(ctx, hosts, client.InNamespace(p.Config.HostNamespace)); err != nil {
		return nil, fmt.Errorf("listing host %s: %w", p.kinds, err)
	}
	virtuals := p.newList()
	if err := p.Virtual.List(ctx, virtuals); err != nil {
		return nil, fmt.Errorf("listing virtual %s: %w", p.kinds, err)
	}
	keys := make([]reconcile.Request, 0, apimeta.LenList(hosts)+apimeta.LenList(virtuals))
	err := apimeta.EachListItem(hosts, func(o runtime.Object) error {
		keys = append(keys, reconcile.Request{NamespacedName: virtualKeyOf(o.(client.Object))})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing host %s: %w", p.kinds, err)
	}
	err = apimeta.EachListItem(virtuals, func(o runtime.Object) error {
		keys = append(keys, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing virtual %s: %w", p.kinds, err)
	}
	return keys, nil
}

// gather reads the pair of one key: the stored virtual object (nil: none)
// and the host object of the name the webhook gives it (nil: none, or not
// this virtual cluster's). A key with no namespace is a host object's own
// name (virtualKeyOf of a host object that names no virtual one).
func (p *objectPairs[T, PT]) gather(ctx context.Context, key types.NamespacedName) (virtual, host PT, err error) {
	if virtual, err = p.get(ctx, p.Virtual, key); err != nil {
		return nil, nil, err
	}
	hostKey := client.ObjectKey{Namespace: p.Config.HostNamespace, Name: key.Name}
	if key.Namespace != "" {
		hostKey.Name = p.hostName(key.Name, key.Namespace, p.Config.VCluster)
	}
	if host, err = p.get(ctx, p.Host, hostKey); err != nil {
		return nil, nil, err
	}
	if host != nil && host.GetLabels()[translate.LabelVCluster] != p.Config.VCluster {
		host = nil // not this virtual cluster's (the cache holds only ours).
	}
	return virtual, host, nil
}
