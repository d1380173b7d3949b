package webhook

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// objectRequests is the one kind of admission request a handler of a
// namespaced kind other than pods serves (Services, NetworkPolicies,
// PersistentVolumeClaims): an
// operation on the object itself, at one path. As for pods
// (podRequests), every other request is refused with a 400 naming the
// path and what it serves.
type objectRequests struct {
	path      string
	resource  string // "services"
	kind      string // "Service"
	operation admissionv1.Operation
}

// serves returns ok when req is of kind k, and otherwise the refusal.
func (k objectRequests) serves(req admission.Request) (_ admission.Response, ok bool) {
	if req.UID == "" || req.Resource.Resource != k.resource || req.Kind.Kind != k.kind || req.SubResource != "" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("not a %s admission request (uid %q, resource %q, subresource %q, kind %q)", k.kind, req.UID, req.Resource.Resource, req.SubResource, req.Kind.Kind)), false
	}
	if req.Operation != k.operation {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("podbridge's %s serves %s %s only, not %s: the webhook configuration that sent it here is not as podbridge registers it", k.path, k.kind, k.operation, req.Operation)), false
	}
	return admission.Response{}, true
}

// decodeObjects answers a request to a handler of kind k: the object it
// carries (in the request's namespace when it names none) and, for an
// update, the object as stored before; or the refusal to give, when the
// request is not of kind k or does not decode.
func decodeObjects[T any, PT interface {
	*T
	client.Object
}](k objectRequests, req admission.Request) (obj, old PT, refused *admission.Response) {
	if resp, ok := k.serves(req); !ok {
		return nil, nil, &resp
	}
	obj = PT(new(T))
	if err := decoder.DecodeRaw(req.Object, obj); err != nil {
		resp := admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding %s: %w", k.kind, err))
		return nil, nil, &resp
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(req.Namespace)
	}
	if k.operation == admissionv1.Update {
		old = PT(new(T))
		if err := decoder.DecodeRaw(req.OldObject, old); err != nil {
			resp := admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding old %s: %w", k.kind, err))
			return nil, nil, &resp
		}
	}
	return obj, old, nil
}

// hostObjects writes one kind of host object that a tenant's namespaced
// object has (a Service's host Service, a NetworkPolicy's host
// NetworkPolicy, a claim's host claim) inside the tenant's request:
// created within the cap on them, found again by a retried or reinvoked
// admission, a stale one of the same name (its admission failed after
// podbridge said yes) replaced, and updated over what the host holds.
// Claims use only its reads, checks and update: their cap is on requested
// storage, and their create differs (claimMutator.createHostClaim).
type hostObjects[T any, PT interface {
	*T
	client.Object
}] struct {
	Host, Virtual client.Client
	Config        translate.Config
	Resource      schema.GroupResource
	// Kind names the tenant's kind in answers ("Service").
	Kind string
	// Cap admits each new host object within the cap on them
	// (createWithinCap); nil for claims.
	Cap *caps.HostObjects
}

// get reads host object name; nil when there is none.
func (h hostObjects[T, PT]) get(ctx context.Context, name string) (PT, error) {
	obj, err := kube.GetOrNil[T, PT](ctx, h.Host, client.ObjectKey{Namespace: h.Config.HostNamespace, Name: name})
	if err != nil {
		return nil, fmt.Errorf("reading host %s %s: %w", h.Kind, name, err)
	}
	return obj, nil
}

// ours reports whether host is this virtual cluster's host object of the
// pair syncID.
func (h hostObjects[T, PT]) ours(host PT, syncID string) bool {
	return host.GetAnnotations()[translate.AnnotationSyncID] == syncID && host.GetAnnotations()[translate.AnnotationVCluster] == h.Config.VCluster
}

// reinvoked answers an admission of an object that carries a sync ID
// already: the host object of that very pair, or a refusal. Only podbridge
// sets sync IDs: one that names no host object of this object is forged,
// and nothing is written for it.
func (h hostObjects[T, PT]) reinvoked(ctx context.Context, virtualName, hostName, syncID string) (PT, error) {
	existing, err := h.get(ctx, hostName)
	if err != nil {
		return nil, err
	}
	if existing == nil || !h.ours(existing, syncID) {
		return nil, apierrors.NewForbidden(h.Resource, virtualName, fmt.Errorf("annotation %s is set by podbridge only", translate.AnnotationSyncID))
	}
	return existing, nil
}

// current reads the host object of the pair syncID for an update: nil when
// there is none, a conflict when its name is another object's.
func (h hostObjects[T, PT]) current(ctx context.Context, virtualName, hostName, syncID string) (PT, error) {
	current, err := h.get(ctx, hostName)
	if err != nil || current == nil {
		return nil, err
	}
	if !h.ours(current, syncID) {
		return nil, apierrors.NewConflict(h.Resource, virtualName, fmt.Errorf("its host %s name is taken by another %s in the host namespace", h.Kind, h.Kind))
	}
	return current, nil
}

// createWithinCap creates host, the host object of the tenant's object
// virtualName, for admission request req within the cap: its name is
// reserved first, and the reservation released when nothing was kept (an
// error, a dry run). A refusal is the answer to give the tenant.
func (h hostObjects[T, PT]) createWithinCap(ctx context.Context, log logr.Logger, req admission.Request, virtualName string, host PT, mode writeMode) (PT, *admission.Response) {
	annotations := host.GetAnnotations()
	annotations[annotationAdmissionUID] = string(req.UID)
	host.SetAnnotations(annotations)
	release, limitErr := h.Cap.Reserve(host.GetName())
	if limitErr != nil {
		log.Info("Refused "+h.Kind+": the cap on host "+h.Kind+"s", "error", limitErr.Error())
		refused := deny(http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("%s %q is forbidden: %v", h.Resource.Resource, virtualName, limitErr))
		return nil, &refused
	}
	created, err := h.create(ctx, host, mode)
	if err != nil || mode == dryRun {
		release()
	}
	if err != nil {
		log.Info("Refused "+h.Kind+": host object not created", "hostName", host.GetName(), "error", err.Error())
		refused := h.hostError(err, virtualName, host.GetName())
		return nil, &refused
	}
	return created, nil
}

// create creates host (mode dryRun: asks the host to validate it without
// keeping anything) and returns the host object in place, or finds it made
// already by the same admission request (a retry) or pair. A host object
// of the same name whose tenant object is gone is stale and is replaced.
func (h hostObjects[T, PT]) create(ctx context.Context, host PT, mode writeMode) (PT, error) {
	created := host.DeepCopyObject().(PT)
	err := h.Host.Create(ctx, created, mode.createOptions()...)
	if !apierrors.IsAlreadyExists(err) {
		return created, err
	}
	virtualName := host.GetAnnotations()[translate.AnnotationName]
	existing, err := h.get(ctx, host.GetName())
	switch {
	case err != nil:
		return nil, err
	case existing == nil:
		created = host.DeepCopyObject().(PT)
		return created, h.Host.Create(ctx, created, mode.createOptions()...)
	case existing.GetAnnotations()[translate.AnnotationVCluster] != h.Config.VCluster:
		return nil, apierrors.NewConflict(h.Resource, virtualName, fmt.Errorf("its host %s name is taken in the host namespace", h.Kind))
	case existing.GetAnnotations()[translate.AnnotationSyncID] == host.GetAnnotations()[translate.AnnotationSyncID],
		existing.GetAnnotations()[annotationAdmissionUID] == host.GetAnnotations()[annotationAdmissionUID]:
		return existing, nil
	}
	live, err := h.virtualExists(ctx, existing)
	if err != nil {
		return nil, err
	}
	if live {
		return nil, apierrors.NewAlreadyExists(h.Resource, virtualName)
	}
	if mode == dryRun {
		return host.DeepCopyObject().(PT), nil // a real create would replace the stale object.
	}
	uid := existing.GetUID()
	if err := h.Host.Delete(ctx, existing, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("deleting stale host %s: %w", h.Kind, err)
	}
	created = host.DeepCopyObject().(PT)
	return created, h.Host.Create(ctx, created, mode.createOptions()...)
}

// virtualExists reports whether the tenant object host belongs to is
// stored with host's sync ID.
func (h hostObjects[T, PT]) virtualExists(ctx context.Context, host PT) (bool, error) {
	key := types.NamespacedName{Namespace: host.GetAnnotations()[translate.AnnotationNamespace], Name: host.GetAnnotations()[translate.AnnotationName]}
	virtual, err := kube.GetOrNil[T, PT](ctx, h.Virtual, key)
	if err != nil {
		return false, fmt.Errorf("reading virtual %s %s: %w", h.Kind, key, err)
	}
	return virtual != nil && translate.ClaimsObject(virtual, host), nil
}

// update writes over the host object name what over makes of current to
// hold desired, unless same says it holds it already, and returns the host
// object in place. The reflector may write it meanwhile: on a conflict it
// is read again and written once more.
func (h hostObjects[T, PT]) update(ctx context.Context, virtualName string, current, desired PT, mode writeMode, same func(desired, current PT) bool, over func(desired, current PT) PT) (PT, error) {
	opts := []client.UpdateOption{client.FieldOwner(FieldManager)}
	if mode == dryRun {
		opts = append(opts, client.DryRunAll)
	}
	var updated PT
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if updated != nil {
			var err error
			if current, err = h.get(ctx, current.GetName()); err != nil {
				return err
			}
			if current == nil {
				return apierrors.NewNotFound(h.Resource, virtualName)
			}
		}
		if same(desired, current) {
			updated = current
			return nil
		}
		updated = over(desired.DeepCopyObject().(PT), current)
		return h.Host.Update(ctx, updated, opts...)
	})
	return updated, err
}

// hostError answers a host error about host object hostName.
func (h hostObjects[T, PT]) hostError(err error, virtualName, hostName string) admission.Response {
	return hostErrorResponse(err, h.Kind, virtualName, hostName, "written")
}

// keepSyncKeys is the patch that keeps podbridge's keys on an updated
// object as it set them: a dropped one (kubectl replace of the tenant's
// manifest) is put back, a different value refused.
func keepSyncKeys(old, updated metav1.Object) ([]jsonpatch.JsonPatchOperation, *field.Error) {
	restore := map[string]string{}
	for _, key := range []string{translate.AnnotationSyncID, translate.AnnotationHostName} {
		switch value, set := updated.GetAnnotations()[key]; {
		case !set && old.GetAnnotations()[key] != "":
			restore[key] = old.GetAnnotations()[key]
		case set && value != old.GetAnnotations()[key]:
			return nil, field.Forbidden(field.NewPath("metadata", "annotations").Key(key), "set by podbridge only")
		}
	}
	if len(restore) == 0 {
		return nil, nil
	}
	return addKeys("annotations", len(updated.GetAnnotations()) > 0, restore), nil
}
