package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

var claimResource = schema.GroupResource{Resource: "persistentvolumeclaims"}

// claimMutator carries a virtual PersistentVolumeClaim to the host inside
// the tenant's request: a create makes the host claim, so a claim the host
// refuses (quota, an unknown class) is refused to the tenant at once; an
// update carries a resize or a label change to the host claim first. It
// serves creates at translate.WebhookPathClaim and updates at
// translate.WebhookPathClaimUpdate, each path only its own kind.
//
// What reaches the host is decided here from the object in the request,
// through the gate (policy.Gate.CheckClaim); the reflector checks the
// stored object again (the tenant's own webhooks run after podbridge's).
type claimMutator struct {
	Host    client.Client
	Virtual client.Client
	Config  translate.Config
	Gate    policy.Gate
	// HostTimeout bounds every host call, well inside the webhook timeout.
	HostTimeout time.Duration
	NewSyncID   func() string
	NameSuffix  func() string
	// Storage admits each host claim's request within the cap on the
	// storage host claims request together.
	Storage *caps.HostStorage
	// Update says this handler serves updates (else creates).
	Update bool
}

var _ admission.Handler = &claimMutator{}

// Handle admits a claim create or update by writing the host first.
func (m *claimMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return counted(m.handle(ctx, req))
}

func (m *claimMutator) handle(ctx context.Context, req admission.Request) admission.Response {
	op, path := admissionv1.Create, translate.WebhookPathClaim
	if m.Update {
		op, path = admissionv1.Update, translate.WebhookPathClaimUpdate
	}
	if req.UID == "" || req.Resource.Resource != "persistentvolumeclaims" || req.Kind.Kind != "PersistentVolumeClaim" || req.SubResource != "" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("not a PersistentVolumeClaim admission request (uid %q, resource %q, subresource %q, kind %q)", req.UID, req.Resource.Resource, req.SubResource, req.Kind.Kind))
	}
	if req.Operation != op {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("podbridge's %s serves PersistentVolumeClaim %s only, not %s: the webhook configuration that sent it here is not as podbridge registers it", path, op, req.Operation))
	}
	claim := &corev1.PersistentVolumeClaim{}
	if err := decoder.DecodeRaw(req.Object, claim); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding PersistentVolumeClaim: %w", err))
	}
	if claim.Namespace == "" {
		claim.Namespace = req.Namespace
	}
	if m.Update {
		old := &corev1.PersistentVolumeClaim{}
		if err := decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding old PersistentVolumeClaim: %w", err))
		}
		return m.update(ctx, req, old, claim)
	}
	return m.create(ctx, req, claim)
}

func (m *claimMutator) create(ctx context.Context, req admission.Request, claim *corev1.PersistentVolumeClaim) admission.Response {
	nameGenerated, hadAnnotations := claim.Name == "", len(claim.Annotations) > 0
	if nameGenerated {
		if claim.GenerateName == "" {
			return invalidClaim(claim, field.Required(field.NewPath("metadata", "name"), "name or generateName is required"))
		}
		claim.Name = GenerateName(claim.GenerateName, m.NameSuffix())
	}
	mode := writeModeOf(req)
	log := logf.FromContext(ctx).WithValues("claim", claim.Namespace+"/"+claim.Name, "dryRun", mode == dryRun)
	syncID, reinvoked := claim.Annotations[translate.AnnotationSyncID]
	if !reinvoked {
		syncID = m.NewSyncID()
	}
	host, errs := translate.HostClaim(claim, m.Config, syncID)
	if len(errs) > 0 {
		return invalidClaim(claim, errs...)
	}
	hostCtx, cancel := context.WithTimeout(ctx, m.HostTimeout)
	defer cancel()
	var current *corev1.PersistentVolumeClaim
	if reinvoked {
		// Only podbridge sets sync IDs: one that names no host claim of
		// this very claim is forged, and nothing is written for it.
		existing, err := m.hostClaim(hostCtx, host.Name)
		if err != nil {
			return hostClaimError(err, claim, host.Name)
		}
		if existing == nil || existing.Annotations[translate.AnnotationSyncID] != syncID || existing.Annotations[translate.AnnotationVCluster] != m.Config.VCluster {
			return hostClaimError(apierrors.NewForbidden(claimResource, claim.Name, fmt.Errorf("annotation %s is set by podbridge only", translate.AnnotationSyncID)), claim, host.Name)
		}
		current = existing
	}
	if errs := m.Gate.CheckClaim(claim, current, host); len(errs) > 0 {
		log.Info("Refused PersistentVolumeClaim: the host-side gate", "errors", errs.ToAggregate().Error())
		return invalidClaim(claim, errs...)
	}
	if current == nil {
		host.Annotations[annotationAdmissionUID] = string(req.UID)
		if refused := m.writeWithinCap(log, claim, host, mode, func() error { return m.createHostClaim(hostCtx, host, mode) }); refused != nil {
			return *refused
		}
		log.V(1).Info("Created host PersistentVolumeClaim", "hostClaim", host.Name, "syncID", syncID)
	}
	var patch []jsonpatch.JsonPatchOperation
	if nameGenerated {
		patch = append(patch, jsonpatch.NewOperation("add", "/metadata/name", claim.Name))
	}
	return admission.Patched("", append(patch, addKeys("annotations", hadAnnotations, map[string]string{
		translate.AnnotationSyncID:   syncID,
		translate.AnnotationHostName: host.Name,
	})...)...)
}

// update carries an update of a virtual claim to its host claim before the
// virtual one is stored: the resource requests (a resize) and the labels;
// every other spec field stays as the host claim was made.
func (m *claimMutator) update(ctx context.Context, req admission.Request, old, claim *corev1.PersistentVolumeClaim) admission.Response {
	mode := writeModeOf(req)
	log := logf.FromContext(ctx).WithValues("claim", claim.Namespace+"/"+claim.Name, "dryRun", mode == dryRun)
	// podbridge's keys stay as it set them: a different value is refused,
	// a dropped one (kubectl replace of the tenant's manifest) put back.
	meta := field.NewPath("metadata", "annotations")
	restore := map[string]string{}
	for _, key := range []string{translate.AnnotationSyncID, translate.AnnotationHostName} {
		switch value, set := claim.Annotations[key]; {
		case !set && old.Annotations[key] != "":
			restore[key] = old.Annotations[key]
		case set && value != old.Annotations[key]:
			return invalidClaim(claim, field.Forbidden(meta.Key(key), "set by podbridge only"))
		}
	}
	var patch []jsonpatch.JsonPatchOperation
	if len(restore) > 0 {
		patch = addKeys("annotations", len(claim.Annotations) > 0, restore)
	}
	syncID := old.Annotations[translate.AnnotationSyncID]
	if syncID == "" || claim.DeletionTimestamp != nil {
		// Stored while podbridge's registration was away (it has no host
		// claim: podbridge writes nothing for it), or on its way out (the
		// protection controller removing its finalizer).
		return admission.Patched("", patch...)
	}
	desired, errs := translate.HostClaim(claim, m.Config, syncID)
	if len(errs) > 0 {
		return invalidClaim(claim, errs...)
	}
	hostCtx, cancel := context.WithTimeout(ctx, m.HostTimeout)
	defer cancel()
	name := desired.Name
	current, err := m.hostClaim(hostCtx, name)
	if err != nil {
		return hostClaimError(err, claim, name)
	}
	if current == nil {
		// Its host claim is gone: the reflector carries that deletion to
		// the virtual claim; an update cannot bring it back.
		return hostClaimError(apierrors.NewNotFound(claimResource, claim.Name), claim, name)
	}
	if current.Annotations[translate.AnnotationSyncID] != syncID || current.Annotations[translate.AnnotationVCluster] != m.Config.VCluster {
		return hostClaimError(apierrors.NewConflict(claimResource, claim.Name, errors.New("its host claim name is taken by another claim in the host namespace")), claim, name)
	}
	if errs := m.Gate.CheckClaim(claim, current, desired); len(errs) > 0 {
		log.Info("Refused PersistentVolumeClaim update: the host-side gate", "errors", errs.ToAggregate().Error())
		return invalidClaim(claim, errs...)
	}
	if translate.SameHostClaim(desired, current) {
		return admission.Patched("", patch...)
	}
	opts := []client.UpdateOption{client.FieldOwner(FieldManager)}
	if mode == dryRun {
		opts = append(opts, client.DryRunAll)
	}
	write := func() error {
		// The host's controllers write the claim too (binding, resize
		// status): read again and write once more on a conflict.
		first := true
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if !first {
				if current, err = m.hostClaim(hostCtx, name); err != nil {
					return err
				}
				if current == nil {
					return apierrors.NewNotFound(claimResource, claim.Name)
				}
			}
			first = false
			return m.Host.Update(hostCtx, translate.OverHostClaim(desired, current), opts...)
		})
	}
	if refused := m.writeWithinCap(log, claim, desired, mode, write); refused != nil {
		return *refused
	}
	log.V(1).Info("Updated host PersistentVolumeClaim", "hostClaim", name)
	return admission.Patched("", patch...)
}

// writeWithinCap runs write, the create or update that leaves host as the
// host claim of the tenant's claim, within the cap on requested storage:
// the request is reserved first, and the reservation released when
// nothing was kept (an error, a dry run). A refusal is the answer to give
// the tenant.
func (m *claimMutator) writeWithinCap(log logr.Logger, claim, host *corev1.PersistentVolumeClaim, mode writeMode, write func() error) *admission.Response {
	release, limitErr := m.Storage.Reserve(host.Name, translate.RequestedStorage(host))
	if limitErr != nil {
		log.Info("Refused PersistentVolumeClaim: the cap on requested storage", "error", limitErr.Error())
		refused := invalidClaim(claim, field.Forbidden(field.NewPath("spec", "resources", "requests").Key(string(corev1.ResourceStorage)), limitErr.Error()))
		return &refused
	}
	err := write()
	if err != nil || mode == dryRun {
		release()
	}
	if err != nil {
		log.Info("Refused PersistentVolumeClaim: host claim not written", "hostClaim", host.Name, "error", err.Error())
		refused := hostClaimError(err, claim, host.Name)
		return &refused
	}
	return nil
}

// hostClaim reads host claim name; nil when there is none.
func (m *claimMutator) hostClaim(ctx context.Context, name string) (*corev1.PersistentVolumeClaim, error) {
	c, err := kube.GetOrNil[corev1.PersistentVolumeClaim](ctx, m.Host, client.ObjectKey{Namespace: m.Config.HostNamespace, Name: name})
	if err != nil {
		return nil, fmt.Errorf("reading host PersistentVolumeClaim %s: %w", name, err)
	}
	return c, nil
}

// createHostClaim creates host (mode dryRun: asks the host to validate
// it), or finds it made already by the same admission request (a retry).
// A host claim of the same name whose virtual claim is gone is stale (its
// admission failed after podbridge said yes, or its virtual claim was
// deleted and the reflector has not collected it yet) and is deleted
// first; while the host keeps it (in use by a host pod), the create is
// refused as a conflict to retry.
func (m *claimMutator) createHostClaim(ctx context.Context, host *corev1.PersistentVolumeClaim, mode writeMode) error {
	err := m.Host.Create(ctx, host.DeepCopy(), mode.createOptions()...)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing, err := m.hostClaim(ctx, host.Name)
	switch {
	case err != nil:
		return err
	case existing == nil:
		return m.Host.Create(ctx, host.DeepCopy(), mode.createOptions()...)
	case existing.Annotations[translate.AnnotationVCluster] != m.Config.VCluster:
		return apierrors.NewConflict(claimResource, host.Annotations[translate.AnnotationName], errors.New("its host claim name is taken in the host namespace"))
	case existing.Annotations[annotationAdmissionUID] == host.Annotations[annotationAdmissionUID]:
		return nil
	}
	live, err := m.virtualClaimExists(ctx, existing)
	if err != nil {
		return err
	}
	if live {
		return apierrors.NewAlreadyExists(claimResource, host.Annotations[translate.AnnotationName])
	}
	if mode == dryRun {
		return nil // a real create would replace the stale claim.
	}
	if err := m.Host.Delete(ctx, existing, client.Preconditions{UID: &existing.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting stale host PersistentVolumeClaim: %w", err)
	}
	err = m.Host.Create(ctx, host.DeepCopy(), mode.createOptions()...)
	if apierrors.IsAlreadyExists(err) {
		return apierrors.NewConflict(claimResource, host.Annotations[translate.AnnotationName],
			errors.New("the host claim of an earlier claim of this name is still being deleted (a host pod may use it); retry later"))
	}
	return err
}

// virtualClaimExists reports whether the virtual claim host belongs to is
// stored with host's sync ID.
func (m *claimMutator) virtualClaimExists(ctx context.Context, host *corev1.PersistentVolumeClaim) (bool, error) {
	key := types.NamespacedName{Namespace: host.Annotations[translate.AnnotationNamespace], Name: host.Annotations[translate.AnnotationName]}
	virtual, err := kube.GetOrNil[corev1.PersistentVolumeClaim](ctx, m.Virtual, key)
	if err != nil {
		return false, fmt.Errorf("reading virtual PersistentVolumeClaim %s: %w", key, err)
	}
	return translate.ClaimsClaim(virtual, host), nil
}

// podClaimsOwned refuses a pod whose persistentVolumeClaim volume would
// mount a host claim that exists and is not the host claim of the pod's
// own claim (another object of the host namespace that happens to carry
// the name, a platform's claim): translation names only this namespace's
// host claims, but the name alone does not prove who made the object. A
// host claim that does not exist yet is no refusal: the pod waits for it.
func podClaimsOwned(ctx context.Context, host client.Reader, cfg translate.Config, virtual *corev1.Pod) (field.ErrorList, error) {
	var errs field.ErrorList
	for i, v := range virtual.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		name := translate.HostClaimName(v.PersistentVolumeClaim.ClaimName, virtual.Namespace, cfg.VCluster)
		existing, err := kube.GetOrNil[corev1.PersistentVolumeClaim](ctx, host, client.ObjectKey{Namespace: cfg.HostNamespace, Name: name})
		if err != nil {
			return nil, fmt.Errorf("reading host PersistentVolumeClaim %s: %w", name, err)
		}
		if existing == nil {
			continue
		}
		a := existing.Annotations
		if a[translate.AnnotationVCluster] != cfg.VCluster || a[translate.AnnotationNamespace] != virtual.Namespace || a[translate.AnnotationName] != v.PersistentVolumeClaim.ClaimName {
			errs = append(errs, field.Forbidden(field.NewPath("spec", "volumes").Index(i).Child("persistentVolumeClaim", "claimName"),
				"its host claim's name is taken in the host namespace by an object that is not this claim's"))
		}
	}
	return errs, nil
}

func invalidClaim(claim *corev1.PersistentVolumeClaim, errs ...*field.Error) admission.Response {
	return invalidObject("PersistentVolumeClaim", claim.Name, errs)
}

// hostClaimError answers a host error about a host claim.
func hostClaimError(err error, virtual *corev1.PersistentVolumeClaim, hostName string) admission.Response {
	return hostErrorResponse(err, "PersistentVolumeClaim", virtual.Name, hostName, "written")
}
