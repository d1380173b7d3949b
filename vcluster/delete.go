package vcluster

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/translate"
)

// kind is a host list kind delete looks through.
type kind struct {
	gvk        schema.GroupVersionKind
	namespaced bool
}

func listKind(group, k string, namespaced bool) kind {
	return kind{gvk: schema.GroupVersionKind{Group: group, Version: "v1", Kind: k + "List"}, namespaced: namespaced}
}

// tenantKinds are what podbridge makes on the host for a virtual
// cluster's tenants, labelled podbridge.io/vcluster NAME and managed by
// podbridge: host pods, Services, EndpointSlices, NetworkPolicies (its
// isolation policy too), claims, ConfigMap and Secret copies and token
// Secrets.
var tenantKinds = []kind{
	listKind("", "Pod", true), listKind("", "Service", true),
	listKind("discovery.k8s.io", "EndpointSlice", true), listKind("networking.k8s.io", "NetworkPolicy", true),
	listKind("", "PersistentVolumeClaim", true), listKind("", "ConfigMap", true), listKind("", "Secret", true),
}

// packageKinds are the package's kinds (labelled with the instance), and
// what the host's controllers make for them with their labels: the
// control-plane pod, its claim, the StatefulSet's revisions, the
// Service's EndpointSlices.
var packageKinds = []kind{
	listKind("apps", "StatefulSet", true), listKind("", "Pod", true),
	listKind("policy", "PodDisruptionBudget", true), listKind("", "Service", true),
	listKind("networking.k8s.io", "NetworkPolicy", true), listKind("", "ConfigMap", true),
	listKind("", "Secret", true), listKind("", "ServiceAccount", true),
	listKind("rbac.authorization.k8s.io", "Role", true), listKind("rbac.authorization.k8s.io", "RoleBinding", true),
	listKind("", "PersistentVolumeClaim", true),
	// The StatefulSet's revisions and the Service's EndpointSlices, which
	// a host's garbage collector would take after them, but not before
	// delete looks at the namespace (and a test bed's host runs none).
	listKind("apps", "ControllerRevision", true), listKind("discovery.k8s.io", "EndpointSlice", true),
	listKind("rbac.authorization.k8s.io", "ClusterRole", false), listKind("rbac.authorization.k8s.io", "ClusterRoleBinding", false),
}

// Remains lists what of virtual cluster name is on the host: the package's
// objects, its tenants' host objects and podbridge's Secrets marked as its
// own, as "Kind namespace/name".
func Remains(ctx context.Context, c client.Reader, name, namespace string) ([]string, error) {
	objects, err := remains(ctx, c, name, namespace)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, obj := range objects {
		out = append(out, describe(obj))
	}
	sort.Strings(out)
	return out, nil
}

func describe(obj *unstructured.Unstructured) string {
	if obj.GetNamespace() == "" {
		return obj.GetKind() + " " + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()
}

func remains(ctx context.Context, c client.Reader, name, namespace string) ([]*unstructured.Unstructured, error) {
	seen := map[string]bool{}
	var out []*unstructured.Unstructured
	add := func(items []unstructured.Unstructured, keep func(*unstructured.Unstructured) bool) {
		for i := range items {
			obj := &items[i]
			key := obj.GetKind() + "/" + obj.GetNamespace() + "/" + obj.GetName()
			if seen[key] || (keep != nil && !keep(obj)) {
				continue
			}
			seen[key] = true
			out = append(out, obj)
		}
	}
	list := func(k kind, opts ...client.ListOption) ([]unstructured.Unstructured, error) {
		var l unstructured.UnstructuredList
		l.SetGroupVersionKind(k.gvk)
		if k.namespaced {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := c.List(ctx, &l, opts...); err != nil {
			return nil, fmt.Errorf("listing %s: %w", strings.TrimSuffix(k.gvk.Kind, "List"), err)
		}
		for i := range l.Items {
			l.Items[i].SetKind(strings.TrimSuffix(k.gvk.Kind, "List"))
		}
		return l.Items, nil
	}
	// The package's objects carry part-of; the pod and the claim the
	// StatefulSet makes carry its templates' labels, the instance label
	// among them but not part-of (kustomize puts labels without selectors
	// on no template).
	for _, labels := range []client.MatchingLabels{{LabelPartOf: PartOfValue, LabelInstance: name}, {LabelName: NameValue, LabelInstance: name}} {
		for _, k := range append(slices.Clone(packageKinds), certManagerKinds...) {
			items, err := list(k, labels)
			if meta.IsNoMatchError(err) {
				continue // a kind the host does not serve (cert-manager's) has no object.
			}
			if err != nil {
				return nil, err
			}
			add(items, func(obj *unstructured.Unstructured) bool {
				// Cluster-scoped objects of a virtual cluster of the same name
				// elsewhere are not this one's.
				return obj.GetNamespace() != "" || obj.GetLabels()[LabelNamespace] == namespace
			})
		}
	}
	for _, k := range tenantKinds {
		items, err := list(k, client.MatchingLabels{translate.LabelVCluster: name, translate.LabelManagedBy: translate.ManagedByValue})
		if err != nil {
			return nil, err
		}
		add(items, nil)
	}
	// podbridge's self-managed certificate Secrets carry its mark only.
	secrets, err := list(listKind("", "Secret", true))
	if err != nil {
		return nil, err
	}
	add(secrets, func(obj *unstructured.Unstructured) bool { return obj.GetAnnotations()[ownership.Annotation] == name })
	return out, nil
}

// Delete removes virtual cluster name from host namespace namespace: its
// control plane first (so nothing makes host objects meanwhile), then its
// tenants' host objects and podbridge's Secrets, then the rest of the
// package, and waits until none of it is left. It needs no garbage
// collector on the host: everything is deleted by name.
func Delete(ctx context.Context, c client.Client, name, namespace string, log io.Writer) error {
	objects, err := remains(ctx, c, name, namespace)
	if err != nil {
		return err
	}
	if len(objects) == 0 {
		return fmt.Errorf("no virtual cluster %s in host namespace %s: nothing of it is on the host", name, namespace)
	}
	// The control plane, and its pod without waiting for a garbage
	// collector (background propagation: orphaning would wait for one to
	// take its finalizer off).
	for _, obj := range objects {
		if obj.GetKind() == "StatefulSet" {
			if err := deleteObject(ctx, c, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
				return err
			}
		}
	}
	// Its pod, when it is labelled as this cluster's (an object of that
	// name that is not stays), by UID: a pod of the same name made since
	// is not waited for.
	for _, pod := range objects {
		if pod.GetKind() != "Pod" || pod.GetName() != ControlPlane(name)+"-0" {
			continue
		}
		uid := pod.GetUID()
		if err := deleteObject(ctx, c, pod, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsConflict(err) {
			return err
		}
		err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			var now metav1.PartialObjectMetadata
			now.SetGroupVersionKind(pod.GroupVersionKind())
			err := c.Get(ctx, client.ObjectKeyFromObject(pod), &now)
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return err == nil && now.UID != uid, err
		})
		if err != nil {
			return fmt.Errorf("waiting for control-plane pod %s/%s to go: %w", namespace, pod.GetName(), err)
		}
	}
	say(log, "control plane of %s stopped\n", name)
	// Tenants' objects by the thousand: one collection delete per kind,
	// by the same selector Remains uses; the loop below deletes what is
	// left one by one (kinds that serve no collection delete too).
	for _, k := range tenantKinds {
		var obj unstructured.Unstructured
		obj.SetGroupVersionKind(k.gvk.GroupVersion().WithKind(strings.TrimSuffix(k.gvk.Kind, "List")))
		err := c.DeleteAllOf(ctx, &obj, client.InNamespace(namespace), client.MatchingLabels{translate.LabelVCluster: name, translate.LabelManagedBy: translate.ManagedByValue})
		if err != nil && !apierrors.IsMethodNotSupported(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting virtual cluster %s's %s: %w", name, obj.GetKind(), err)
		}
	}
	var last []*unstructured.Unstructured
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		if last, err = remains(ctx, c, name, namespace); err != nil {
			return false, err
		}
		for _, obj := range last {
			if obj.GetDeletionTimestamp() != nil {
				continue
			}
			if err := deleteObject(ctx, c, obj); err != nil {
				return false, err
			}
		}
		return len(last) == 0, nil
	})
	if err != nil {
		var left []string
		for _, obj := range last {
			left = append(left, describe(obj))
		}
		return fmt.Errorf("deleting virtual cluster %s: %w; left: %s", name, err, strings.Join(left, ", "))
	}
	say(log, "virtual cluster %s deleted from host namespace %s\n", name, namespace)
	return nil
}

func deleteObject(ctx context.Context, c client.Client, obj *unstructured.Unstructured, opts ...client.DeleteOption) error {
	if err := c.Delete(ctx, obj, opts...); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", describe(obj), err)
	}
	return nil
}
