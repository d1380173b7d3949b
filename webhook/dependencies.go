package webhook

import (
	"context"
	"fmt"
	"maps"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// ensureDependencies puts on the host what the host pod needs to start at
// once: copies of the virtual ConfigMaps and Secrets it references, and
// Secrets with tokens from the virtual apiserver for its projected
// service-account tokens. A referenced object that does not exist is
// skipped: as in any cluster, the pod then waits for it.
func (m *PodMutator) ensureDependencies(ctx context.Context, virtual *corev1.Pod, deps *translate.Dependencies) error {
	for _, ref := range deps.ConfigMaps {
		src := &corev1.ConfigMap{}
		err := m.copyToHost(ctx, virtual.Namespace, ref, src, func() client.Object {
			return &corev1.ConfigMap{Data: src.Data, BinaryData: src.BinaryData, Immutable: src.Immutable}
		})
		if err != nil {
			return err
		}
	}
	for _, ref := range deps.Secrets {
		src := &corev1.Secret{}
		err := m.copyToHost(ctx, virtual.Namespace, ref, src, func() client.Object {
			return &corev1.Secret{Type: src.Type, Data: src.Data, Immutable: src.Immutable}
		})
		if err != nil {
			return err
		}
	}
	for _, tok := range deps.Tokens {
		if err := m.ensureToken(ctx, virtual, tok); err != nil {
			return err
		}
	}
	return nil
}

// copyToHost reads the virtual object ref names into src and, when it
// exists, puts the copy that content builds from it on the host.
func (m *PodMutator) copyToHost(ctx context.Context, namespace string, ref translate.Reference, src client.Object, content func() client.Object) error {
	found, err := m.readVirtual(ctx, namespace, ref.Name, src)
	if err != nil || !found {
		return err
	}
	return m.ensureHostCopy(ctx, content(), m.copyMeta(ref, namespace))
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

// copyMeta is the metadata of the host copy of a virtual object.
func (m *PodMutator) copyMeta(ref translate.Reference, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      ref.HostName,
		Namespace: m.Config.HostNamespace,
		Labels: map[string]string{
			translate.LabelManagedBy: translate.ManagedByValue,
			translate.LabelVCluster:  m.Config.VCluster,
			translate.LabelNamespace: namespace,
		},
		Annotations: map[string]string{
			translate.AnnotationName:      ref.Name,
			translate.AnnotationNamespace: namespace,
			translate.AnnotationVCluster:  m.Config.VCluster,
		},
	}
}

// ensureToken requests a token for the pod's virtual service account and
// keeps it in the host Secret the host pod mounts. The pod has no UID yet,
// so the token cannot be bound to it here; the reflector binds and
// refreshes it once the virtual pod exists.
func (m *PodMutator) ensureToken(ctx context.Context, virtual *corev1.Pod, tok translate.Token) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tok.ServiceAccount, Namespace: virtual.Namespace}}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &tok.ExpirationSeconds}}
	if tok.Audience != "" {
		req.Spec.Audiences = []string{tok.Audience}
	}
	if err := m.Virtual.SubResource("token").Create(ctx, sa, req); err != nil {
		return fmt.Errorf("requesting a token for service account %s/%s: %w", virtual.Namespace, tok.ServiceAccount, err)
	}
	meta := m.copyMeta(translate.Reference{Name: virtual.Name, HostName: tok.HostSecret}, virtual.Namespace)
	meta.Annotations[translate.AnnotationServiceAccount] = tok.ServiceAccount
	secret := &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{translate.TokenKey: []byte(req.Status.Token)}}
	return m.ensureHostCopy(ctx, secret, meta)
}

// ensureHostCopy creates obj with meta on the host, or brings an existing
// copy's content in line. Another virtual cluster's object of the same name
// is never touched.
func (m *PodMutator) ensureHostCopy(ctx context.Context, obj client.Object, meta metav1.ObjectMeta) error {
	meta.DeepCopyInto(objectMeta(obj))
	err := m.Host.Create(ctx, obj, client.FieldOwner(FieldManager))
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("creating host %T %s: %w", obj, meta.Name, err)
		}
		return nil
	}
	existing := obj.DeepCopyObject().(client.Object)
	if err := m.Host.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		return fmt.Errorf("reading host %T %s: %w", obj, meta.Name, err)
	}
	if existing.GetLabels()[translate.LabelVCluster] != m.Config.VCluster || existing.GetLabels()[translate.LabelManagedBy] != translate.ManagedByValue {
		return apierrors.NewConflict(podResource, meta.Name, fmt.Errorf("host object %s is not this virtual cluster's copy", meta.Name))
	}
	if sameContent(existing, obj) {
		return nil
	}
	obj.SetResourceVersion(existing.GetResourceVersion())
	labels := maps.Clone(existing.GetLabels())
	maps.Copy(labels, meta.Labels)
	obj.SetLabels(labels)
	if err := m.Host.Update(ctx, obj, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("updating host %T %s: %w", obj, meta.Name, err)
	}
	return nil
}

func objectMeta(obj client.Object) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.Secret:
		return &o.ObjectMeta
	default:
		panic(fmt.Sprintf("no host copies of %T", obj))
	}
}

func sameContent(a, b client.Object) bool {
	switch a := a.(type) {
	case *corev1.ConfigMap:
		b := b.(*corev1.ConfigMap)
		return apiequality.Semantic.DeepEqual(a.Data, b.Data) && apiequality.Semantic.DeepEqual(a.BinaryData, b.BinaryData)
	case *corev1.Secret:
		b := b.(*corev1.Secret)
		return a.Type == b.Type && apiequality.Semantic.DeepEqual(a.Data, b.Data)
	}
	return false
}
