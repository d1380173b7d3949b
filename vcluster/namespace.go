package vcluster

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// AnnotationCreatedFor marks a host namespace `podbridge create` made;
// its value is the virtual cluster it was made for. Only a namespace with
// this mark is ever deleted by `podbridge delete` (ReleaseNamespace).
const AnnotationCreatedFor = "podbridge.io/namespace-created-for"

// ReleaseNamespace deletes host namespace namespace after a virtual
// cluster's delete, as vCluster deletes the namespace its create made:
// only when `podbridge create` made it (AnnotationCreatedFor) and nothing
// is left in it but what every namespace holds (the ServiceAccount
// default, the ConfigMap kube-root-ca.crt, events, and EndpointSlices and
// Endpoints of Services that are gone, which the garbage collector
// removes). It looks through every namespaced resource the host serves,
// custom ones too, and keeps the namespace when it cannot list one (or
// discovery fails: an aggregated API down). It says which and why, and
// reports whether it deleted it.
func ReleaseNamespace(ctx context.Context, host *rest.Config, namespace string, log io.Writer) (bool, error) {
	set, err := kubernetes.NewForConfig(host)
	if err != nil {
		return false, err
	}
	ns, err := set.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading host namespace %s: %w", namespace, err)
	}
	if ns.DeletionTimestamp != nil {
		return false, nil
	}
	madeFor, made := ns.Annotations[AnnotationCreatedFor]
	if !made {
		say(log, "kept host namespace %s: podbridge create did not make it\n", namespace)
		return false, nil
	}
	// Listing Endpoints draws a deprecation warning the user cannot act on.
	quiet := rest.CopyConfig(host)
	quiet.WarningHandler = rest.NoWarnings{}
	md, err := metadata.NewForConfig(quiet)
	if err != nil {
		return false, err
	}
	left, err := namespaceContents(ctx, set.Discovery(), md, namespace)
	if err != nil {
		// An aggregated API that does not answer, a resource the user may
		// not list: the cluster is deleted all the same; the namespace
		// stays, and the user hears why.
		say(log, "kept host namespace %s (podbridge create made it for %s): cannot tell what is in it: %v\n", namespace, madeFor, err)
		return false, nil
	}
	if len(left) > 0 {
		shown := left[:min(len(left), 5)]
		more := ""
		if len(left) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(left)-len(shown))
		}
		say(log, "kept host namespace %s (podbridge create made it for %s): it holds %s%s\n", namespace, madeFor, strings.Join(shown, ", "), more)
		return false, nil
	}
	// The UID: a namespace of that name made again since is not this one.
	if err := set.CoreV1().Namespaces().Delete(ctx, namespace, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &ns.UID}}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting host namespace %s: %w", namespace, err)
	}
	say(log, "deleted host namespace %s: podbridge create made it (for %s) and nothing else is in it\n", namespace, madeFor)
	return true, nil
}

// namespaceContents lists what is in namespace as "Kind name", but for
// what every namespace holds (see ReleaseNamespace) and objects being
// deleted.
func namespaceContents(ctx context.Context, disc discovery.DiscoveryInterface, md metadata.Interface, namespace string) ([]string, error) {
	lists, err := disc.ServerPreferredNamespacedResources()
	if err != nil {
		return nil, fmt.Errorf("discovering the host's resources: %w", err)
	}
	type item struct {
		gr     schema.GroupResource
		kind   string
		object metav1.PartialObjectMetadata
	}
	var items []item
	services := map[string]bool{}
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			return nil, err
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			if r.Name == "events" && (gv.Group == "" || gv.Group == "events.k8s.io") {
				continue
			}
			l, err := md.Resource(gv.WithResource(r.Name)).Namespace(namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, fmt.Errorf("listing %s: %w", schema.GroupResource{Group: gv.Group, Resource: r.Name}, err)
			}
			for _, obj := range l.Items {
				items = append(items, item{schema.GroupResource{Group: gv.Group, Resource: r.Name}, r.Kind, obj})
				if gv.Group == "" && r.Name == "services" && obj.DeletionTimestamp == nil {
					services[obj.Name] = true
				}
			}
		}
	}
	var out []string
	for _, it := range items {
		if it.object.DeletionTimestamp != nil || everyNamespaceHolds(it.gr, &it.object, services) {
			continue
		}
		out = append(out, it.kind+" "+it.object.Name)
	}
	sort.Strings(out)
	return out, nil
}

// endpointSliceControllers are the managers of the EndpointSlices the
// host makes for its Services (a slice someone wrote by hand counts).
var endpointSliceControllers = map[string]bool{"endpointslice-controller.k8s.io": true, "endpointslicemirroring-controller.k8s.io": true}

// everyNamespaceHolds says whether obj is something every namespace holds,
// or garbage of a Service that is gone.
func everyNamespaceHolds(gr schema.GroupResource, obj *metav1.PartialObjectMetadata, services map[string]bool) bool {
	switch gr {
	case schema.GroupResource{Resource: "configmaps"}:
		return obj.Name == "kube-root-ca.crt"
	case schema.GroupResource{Resource: "serviceaccounts"}:
		return obj.Name == "default"
	case schema.GroupResource{Resource: "endpoints"}:
		return obj.Labels["endpoints.kubernetes.io/managed-by"] == "endpoint-controller" && !services[obj.Name]
	case schema.GroupResource{Group: discoveryv1.GroupName, Resource: "endpointslices"}:
		service, ok := obj.Labels[discoveryv1.LabelServiceName]
		return ok && endpointSliceControllers[obj.Labels[discoveryv1.LabelManagedBy]] && !services[service]
	}
	return false
}
