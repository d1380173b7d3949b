package vcluster

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/ownership"
)

// hostObject is a host object a virtual cluster owns by name.
type hostObject struct {
	gvk             schema.GroupVersionKind
	namespace, name string
}

func (h hostObject) String() string {
	if h.namespace == "" {
		return h.gvk.Kind + " " + h.name
	}
	return h.gvk.Kind + " " + h.namespace + "/" + h.name
}

// ownedNames are the host objects virtual cluster o owns by name: the
// package's objects (objects, rendered for o) and what its control plane
// makes beside them, named from the rendered StatefulSet: its pod and
// claims, and the Secrets its pod template names (the init container's
// kubeconfig, podbridge's self-managed certificates).
func ownedNames(objects []*unstructured.Unstructured) []hostObject {
	var out []hostObject
	for _, obj := range objects {
		out = append(out, hostObject{obj.GroupVersionKind(), obj.GetNamespace(), obj.GetName()})
		if obj.GetKind() != "StatefulSet" {
			continue
		}
		pod := obj.GetName() + "-0"
		out = append(out, hostObject{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, obj.GetNamespace(), pod})
		templates, _, _ := unstructured.NestedSlice(obj.Object, "spec", "volumeClaimTemplates")
		for _, t := range templates {
			name, _, _ := unstructured.NestedString(t.(map[string]any), "metadata", "name")
			out = append(out, hostObject{schema.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"}, obj.GetNamespace(), name + "-" + pod})
		}
		annotations, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "template", "metadata", "annotations")
		for _, key := range sortedKeys(annotations) {
			if strings.HasPrefix(key, "podbridge.io/") && strings.HasSuffix(key, "-secret") {
				out = append(out, hostObject{schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, obj.GetNamespace(), annotations[key]})
			}
		}
	}
	return out
}

// checkNoTakeover refuses to create virtual cluster name when a host
// object it would own by name exists and is not its own: server-side
// apply with forced ownership would rewrite it, the StatefulSet would
// adopt a claim of that name, and `podbridge delete` would then remove
// what was never the cluster's. Its own objects (a second create) carry
// its instance label (and, cluster-scoped, its namespace's) or podbridge's
// mark naming it (the Secrets its control plane makes).
func checkNoTakeover(ctx context.Context, c client.Reader, name, namespace string, owned []hostObject) error {
	var taken []string
	for _, h := range owned {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(h.gvk)
		err := c.Get(ctx, types.NamespacedName{Namespace: h.namespace, Name: h.name}, meta)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("looking for an existing %s: %w", h, err)
		}
		if why := notOwn(meta, name, namespace); why != "" {
			taken = append(taken, fmt.Sprintf("%s (%s)", h, why))
		}
	}
	if len(taken) > 0 {
		return fmt.Errorf("NAME %s: host objects of that name exist and are not virtual cluster %s's, and podbridge create takes over none: %s; pick another NAME or namespace, or remove them",
			name, name, strings.Join(taken, "; "))
	}
	return nil
}

// notOwn says why an existing object is not virtual cluster name's, or
// nothing when it is: podbridge's mark, when the object has one, decides
// (the webhook's serving-certificate Secret carries no other); otherwise
// the instance label does, and for a cluster-scoped object the namespace
// label too.
func notOwn(obj metav1.Object, name, namespace string) string {
	if owner, marked := obj.GetAnnotations()[ownership.Annotation]; marked {
		if owner != name {
			return fmt.Sprintf("marked %s=%q", ownership.Annotation, owner)
		}
		return ""
	}
	labels := obj.GetLabels()
	switch {
	case labels[LabelInstance] != name || (labels[LabelPartOf] != PartOfValue && labels[LabelName] != NameValue):
		return fmt.Sprintf("labels %s=%q, %s=%q", LabelInstance, labels[LabelInstance], LabelPartOf, labels[LabelPartOf])
	case obj.GetNamespace() == "" && labels[LabelNamespace] != namespace:
		return fmt.Sprintf("of host namespace %q", labels[LabelNamespace])
	}
	return ""
}
