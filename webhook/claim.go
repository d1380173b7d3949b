package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

var claimResource = schema.GroupResource{Resource: "persistentvolumeclaims"}

// Requests the claim paths serve.
var (
	claimCreates = objectRequests{path: translate.WebhookPathClaim, resource: "persistentvolumeclaims", kind: "PersistentVolumeClaim", operation: admissionv1.Create}
	claimUpdates = objectRequests{path: translate.WebhookPathClaimUpdate, resource: "persistentvolumeclaims", kind: "PersistentVolumeClaim", operation: admissionv1.Update}
)

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
	kind := claimCreates
	if m.Update {
		kind = claimUpdates
	}
	claim, old, refused := decodeObjects[corev1.PersistentVolumeClaim](kind, req)
	if refused != nil {
		return *refused
	}
	if m.Update {
		return m.update(ctx, req, old, claim)
	}
	return m.create(ctx, req, claim)
}

// objects reads, checks and updates host claims. It has no cap: the one on
// claims is on the storage they request together, which a resize changes
// too (writeWithinCap), not on their number (hostObjects.createWithinCap).
func (m *claimMutator) objects() hostObjects[corev1.PersistentVolumeClaim, *corev1.PersistentVolumeClaim] {
	return hostObjects[corev1.PersistentVolumeClaim, *corev1.PersistentVolumeClaim]{
		Host: m.Host, Virtual: m.Virtual, Config: m.Config, Resource: claimResource, Kind: "PersistentVolumeClaim",
	}
}

func (m *claimMutator) create(ctx context.Context, req admission.Request, claim *corev1.PersistentVolumeClaim) admission.Response {
	hadAnnotations := len(claim.Annotations) > 0
	nameGenerated, nameErr := nameFromGenerateName(claim, m.NameSuffix)
	if nameErr != nil {
		return invalidClaim(claim, nameErr)
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
		existing, err := m.objects().reinvoked(hostCtx, claim.Name, host.Name, syncID)
		if err != nil {
			return m.objects().hostError(err, claim.Name, host.Name)
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
	patch, forged := keepSyncKeys(old, claim)
	if forged != nil {
		return invalidClaim(claim, forged)
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
	current, err := m.objects().get(hostCtx, name)
	if err != nil {
		return m.objects().hostError(err, claim.Name, name)
	}
	if current == nil {
		// Its host claim is gone: the reflector carries that deletion to
		// the virtual claim; an update cannot bring it back.
		return m.objects().hostError(apierrors.NewNotFound(claimResource, claim.Name), claim.Name, name)
	}
	if !m.objects().ours(current, syncID) {
		return m.objects().hostError(apierrors.NewConflict(claimResource, claim.Name, errors.New("its host claim name is taken by another claim in the host namespace")), claim.Name, name)
	}
	if errs := m.Gate.CheckClaim(claim, current, desired); len(errs) > 0 {
		log.Info("Refused PersistentVolumeClaim update: the host-side gate", "errors", errs.ToAggregate().Error())
		return invalidClaim(claim, errs...)
	}
	if translate.SameHostClaim(desired, current) {
		return admission.Patched("", patch...)
	}
	write := func() error {
		// The host's controllers write the claim too (binding, resize
		// status): update reads again and writes once more on a conflict.
		_, err := m.objects().update(hostCtx, claim.Name, current, desired, mode, translate.SameHostClaim, translate.OverHostClaim)
		return err
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
		refused := m.objects().hostError(err, claim.Name, host.Name)
		return &refused
	}
	return nil
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
	existing, err := m.objects().get(ctx, host.Name)
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
	live, err := m.objects().virtualExists(ctx, existing)
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
