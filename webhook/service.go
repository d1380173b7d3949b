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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

var serviceResource = schema.GroupResource{Resource: "services"}

// serviceMutator carries a virtual Service to the host inside the tenant's
// request: a create makes the host Service and pins the addresses and
// ports the host allocated on the virtual Service (mutating admission runs
// before kube-apiserver allocates ClusterIPs and node ports, and the
// allocator keeps what the object already names); an update writes the
// change to the host Service first. It serves creates at
// translate.WebhookPathService and updates at
// translate.WebhookPathServiceUpdate, each path only its own kind.
//
// What reaches the host is decided here from the object in the request,
// through the gate (policy.Gate.CheckService); the reflector checks the
// stored object again (the tenant's own webhooks run after podbridge's).
type serviceMutator struct {
	Host    client.Client
	Virtual client.Client
	Config  translate.Config
	Gate    policy.Gate
	// HostTimeout bounds every host call, well inside the webhook timeout.
	HostTimeout time.Duration
	NewSyncID   func() string
	NameSuffix  func() string
	// HostServices admits each new host Service within the cap on them.
	HostServices *caps.HostObjects
	// Update says this handler serves updates (else creates).
	Update bool
}

var _ admission.Handler = &serviceMutator{}

// Handle admits a Service create or update by writing the host first.
func (m *serviceMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return counted(m.handle(ctx, req))
}

func (m *serviceMutator) handle(ctx context.Context, req admission.Request) admission.Response {
	op, path := admissionv1.Create, translate.WebhookPathService
	if m.Update {
		op, path = admissionv1.Update, translate.WebhookPathServiceUpdate
	}
	if req.UID == "" || req.Resource.Resource != "services" || req.Kind.Kind != "Service" || req.SubResource != "" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("not a Service admission request (uid %q, resource %q, subresource %q, kind %q)", req.UID, req.Resource.Resource, req.SubResource, req.Kind.Kind))
	}
	if req.Operation != op {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("podbridge's %s serves Service %s only, not %s: the webhook configuration that sent it here is not as podbridge registers it", path, op, req.Operation))
	}
	svc := &corev1.Service{}
	if err := decoder.DecodeRaw(req.Object, svc); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding Service: %w", err))
	}
	if svc.Namespace == "" {
		svc.Namespace = req.Namespace
	}
	if m.Update {
		old := &corev1.Service{}
		if err := decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding old Service: %w", err))
		}
		return m.update(ctx, req, old, svc)
	}
	return m.create(ctx, req, svc)
}

func (m *serviceMutator) create(ctx context.Context, req admission.Request, svc *corev1.Service) admission.Response {
	if translate.IsKubernetesService(svc) {
		// The virtual apiserver's own Service, which it makes (again) at
		// start-up with the first address of its range: it has no host
		// Service, and nothing is written for it, whoever creates it. Its
		// address is the host Service in front of the virtual apiserver,
		// so kubernetes.default.svc never leads to the host's apiserver.
		ip := m.Config.KubernetesServiceIP
		if ip == "" {
			return admission.Allowed("")
		}
		return admission.Patched("", allocationPatch(svc, translate.ServiceAllocation{ClusterIP: ip, ClusterIPs: []string{ip}})...)
	}
	nameGenerated, hadAnnotations := svc.Name == "", len(svc.Annotations) > 0
	if nameGenerated {
		if svc.GenerateName == "" {
			return invalidService(svc, field.Required(field.NewPath("metadata", "name"), "name or generateName is required"))
		}
		svc.Name = GenerateName(svc.GenerateName, m.NameSuffix())
	}
	mode := writeModeOf(req)
	log := logf.FromContext(ctx).WithValues("service", svc.Namespace+"/"+svc.Name, "dryRun", mode == dryRun)
	syncID, reinvoked := svc.Annotations[translate.AnnotationSyncID]
	if !reinvoked {
		syncID = m.NewSyncID()
	}
	host, errs := translate.HostService(svc, m.Config, syncID)
	if len(errs) > 0 {
		return invalidService(svc, errs...)
	}
	hostCtx, cancel := context.WithTimeout(ctx, m.HostTimeout)
	defer cancel()
	var current *corev1.Service
	if _, named := svc.Annotations[translate.AnnotationHostName]; host == nil && (reinvoked || named) {
		// An ExternalName Service has no host Service to vouch for them.
		return invalidService(svc, field.Forbidden(field.NewPath("metadata", "annotations"), fmt.Sprintf("%s and %s are set by podbridge only", translate.AnnotationSyncID, translate.AnnotationHostName)))
	}
	if reinvoked && host != nil {
		// Only podbridge sets sync IDs: one that names no host Service of
		// this very Service is forged, and nothing is written for it.
		existing, err := m.hostService(hostCtx, host.Name)
		if err != nil {
			return hostServiceError(err, svc, host.Name)
		}
		if existing == nil || existing.Annotations[translate.AnnotationSyncID] != syncID || existing.Annotations[translate.AnnotationVCluster] != m.Config.VCluster {
			return hostServiceError(apierrors.NewForbidden(serviceResource, svc.Name, fmt.Errorf("annotation %s is set by podbridge only", translate.AnnotationSyncID)), svc, host.Name)
		}
		current = existing
	}
	if errs := m.Gate.CheckService(svc, current, host); len(errs) > 0 {
		log.Info("Refused Service: the host-side gate", "errors", errs.ToAggregate().Error())
		return invalidService(svc, errs...)
	}
	patch := []jsonpatch.JsonPatchOperation{}
	if nameGenerated {
		patch = append(patch, jsonpatch.NewOperation("add", "/metadata/name", svc.Name))
	}
	keys := map[string]string{translate.AnnotationSyncID: syncID}
	if host == nil {
		// ExternalName: the tenant's DNS answers it; nothing on the host.
		return admission.Patched("", append(patch, addKeys("annotations", hadAnnotations, keys)...)...)
	}
	keys[translate.AnnotationHostName] = host.Name
	if current == nil {
		created, refused := m.createWithinCap(hostCtx, log, req, svc, host, mode)
		if refused != nil {
			return *refused
		}
		current = created
		keys[translate.AnnotationSyncID] = created.Annotations[translate.AnnotationSyncID]
		log.V(1).Info("Created host Service", "hostService", host.Name, "syncID", keys[translate.AnnotationSyncID], "clusterIP", created.Spec.ClusterIP)
	}
	patch = append(patch, addKeys("annotations", hadAnnotations, keys)...)
	if mode == dryRun {
		// A host dry run allocates nothing it keeps (and may answer an
		// address no real create would get): the virtual dry run answers
		// with its own.
		return admission.Patched("", patch...)
	}
	return admission.Patched("", append(patch, allocationPatch(svc, translate.HostAllocated(current))...)...)
}

// update carries an update of a virtual Service to its host Service before
// the virtual one is stored: the spec is written over (the host's
// allocation kept) and a type change from ExternalName creates the host
// Service; one to ExternalName leaves its deletion to the reflector.
func (m *serviceMutator) update(ctx context.Context, req admission.Request, old, svc *corev1.Service) admission.Response {
	mode := writeModeOf(req)
	log := logf.FromContext(ctx).WithValues("service", svc.Namespace+"/"+svc.Name, "dryRun", mode == dryRun)
	// podbridge's keys stay as it set them: a different value is refused,
	// a dropped one (kubectl replace of the tenant's manifest) put back.
	meta := field.NewPath("metadata", "annotations")
	restore := map[string]string{}
	for _, key := range []string{translate.AnnotationSyncID, translate.AnnotationHostName} {
		switch value, set := svc.Annotations[key]; {
		case !set && old.Annotations[key] != "":
			restore[key] = old.Annotations[key]
		case set && value != old.Annotations[key]:
			return invalidService(svc, field.Forbidden(meta.Key(key), "set by podbridge only"))
		}
	}
	var patch []jsonpatch.JsonPatchOperation
	if len(restore) > 0 {
		patch = addKeys("annotations", len(svc.Annotations) > 0, restore)
	}
	patched := func(more []jsonpatch.JsonPatchOperation) admission.Response {
		return admission.Patched("", append(patch, more...)...)
	}
	syncID := old.Annotations[translate.AnnotationSyncID]
	if syncID == "" {
		// Stored while podbridge's registration was away: it has no host
		// Service and its ClusterIP is the virtual apiserver's own, which
		// the host may have given to another Service. podbridge writes
		// nothing for it; recreate it to carry it to the host.
		log.Info("Admitted an update of a Service podbridge never admitted: nothing written to the host")
		return patched(nil)
	}
	desired, errs := translate.HostService(svc, m.Config, syncID)
	if len(errs) > 0 {
		return invalidService(svc, errs...)
	}
	hostCtx, cancel := context.WithTimeout(ctx, m.HostTimeout)
	defer cancel()
	name := translate.HostServiceName(svc.Name, svc.Namespace, m.Config.VCluster)
	current, err := m.hostService(hostCtx, name)
	if err != nil {
		return hostServiceError(err, svc, name)
	}
	if current != nil && (current.Annotations[translate.AnnotationSyncID] != syncID || current.Annotations[translate.AnnotationVCluster] != m.Config.VCluster) {
		return hostServiceError(apierrors.NewConflict(serviceResource, svc.Name, fmt.Errorf("its host Service name is taken by another Service in the host namespace")), svc, name)
	}
	if errs := m.Gate.CheckService(svc, current, desired); len(errs) > 0 {
		log.Info("Refused Service update: the host-side gate", "errors", errs.ToAggregate().Error())
		return invalidService(svc, errs...)
	}
	switch {
	case desired == nil && current == nil:
		return patched(nil)
	case desired == nil:
		// Becoming ExternalName: the reflector deletes the host Service
		// once the change is stored. Deleted here, a Service whose update
		// then failed would have lost its host Service, and the reflector,
		// seeing it gone before the update is stored, would delete the
		// virtual Service as one whose host Service was deleted.
		return patched(nil)
	case current == nil:
		if !translate.NeedsHostService(old) {
			created, refused := m.createWithinCap(hostCtx, log, req, svc, desired, mode)
			if refused != nil {
				return *refused
			}
			return patched(allocationPatch(svc, translate.HostAllocated(created)))
		}
		// Its host Service is gone: the reflector carries that deletion to
		// the virtual Service; an update cannot bring it back.
		return hostServiceError(apierrors.NewNotFound(serviceResource, svc.Name), svc, name)
	}
	opts := []client.UpdateOption{client.FieldOwner(FieldManager)}
	if mode == dryRun {
		opts = append(opts, client.DryRunAll)
	}
	var updated *corev1.Service
	// The reflector may write the host Service meanwhile (a change of the
	// host's, load-balancer finalizers): read again and write once more.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if updated != nil {
			if current, err = m.hostService(hostCtx, name); err != nil {
				return err
			}
			if current == nil {
				return apierrors.NewNotFound(serviceResource, svc.Name)
			}
		}
		if translate.SameHostService(desired, current) {
			updated = current
			return nil
		}
		updated = translate.OverHostService(desired.DeepCopy(), current)
		return m.Host.Update(hostCtx, updated, opts...)
	})
	if err != nil {
		log.Info("Refused Service update: host Service not updated", "hostService", name, "error", err.Error())
		return hostServiceError(err, svc, name)
	}
	log.V(1).Info("Updated host Service", "hostService", name)
	return patched(allocationPatch(svc, translate.HostAllocated(updated)))
}

// createWithinCap creates host, the host Service of the tenant's svc, for
// admission request req within the cap on host Services: its name is
// reserved first, and the reservation released when nothing was kept (an
// error, a dry run). A refusal is the answer to give the tenant.
func (m *serviceMutator) createWithinCap(ctx context.Context, log logr.Logger, req admission.Request, svc, host *corev1.Service, mode writeMode) (*corev1.Service, *admission.Response) {
	host.Annotations[annotationAdmissionUID] = string(req.UID)
	release, limitErr := m.HostServices.Reserve(host.Name)
	if limitErr != nil {
		log.Info("Refused Service: the cap on host Services", "error", limitErr.Error())
		refused := deny(http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("services %q is forbidden: %v", svc.Name, limitErr))
		return nil, &refused
	}
	created, err := m.createHostService(ctx, host, mode)
	if err != nil || mode == dryRun {
		release()
	}
	if err != nil {
		log.Info("Refused Service: host Service not created", "hostService", host.Name, "error", err.Error())
		refused := hostServiceError(err, svc, host.Name)
		return nil, &refused
	}
	return created, nil
}

// hostService reads host Service name; nil when there is none.
func (m *serviceMutator) hostService(ctx context.Context, name string) (*corev1.Service, error) {
	s, err := kube.GetOrNil[corev1.Service](ctx, m.Host, client.ObjectKey{Namespace: m.Config.HostNamespace, Name: name})
	if err != nil {
		return nil, fmt.Errorf("reading host Service %s: %w", name, err)
	}
	return s, nil
}

// createHostService creates host (mode dryRun: asks the host to validate
// it and allocate, without keeping anything) and returns the host Service
// in place, or finds it made already by the same admission request (a
// retry). A host Service of the same name whose virtual Service is gone is
// stale (its admission failed after podbridge said yes) and is replaced.
func (m *serviceMutator) createHostService(ctx context.Context, host *corev1.Service, mode writeMode) (*corev1.Service, error) {
	created := host.DeepCopy()
	err := m.Host.Create(ctx, created, mode.createOptions()...)
	if !apierrors.IsAlreadyExists(err) {
		return created, err
	}
	existing, err := m.hostService(ctx, host.Name)
	switch {
	case err != nil:
		return nil, err
	case existing == nil:
		created = host.DeepCopy()
		return created, m.Host.Create(ctx, created, mode.createOptions()...)
	case existing.Annotations[translate.AnnotationVCluster] != m.Config.VCluster:
		return nil, apierrors.NewConflict(serviceResource, host.Annotations[translate.AnnotationName], errors.New("its host Service name is taken in the host namespace"))
	case existing.Annotations[translate.AnnotationSyncID] == host.Annotations[translate.AnnotationSyncID],
		existing.Annotations[annotationAdmissionUID] == host.Annotations[annotationAdmissionUID]:
		return existing, nil
	}
	live, err := m.virtualServiceExists(ctx, existing)
	if err != nil {
		return nil, err
	}
	if live {
		return nil, apierrors.NewAlreadyExists(serviceResource, host.Annotations[translate.AnnotationName])
	}
	if mode == dryRun {
		return host.DeepCopy(), nil // a real create would replace the stale Service.
	}
	if err := m.Host.Delete(ctx, existing, client.Preconditions{UID: &existing.UID}); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("deleting stale host Service: %w", err)
	}
	created = host.DeepCopy()
	return created, m.Host.Create(ctx, created, mode.createOptions()...)
}

// virtualServiceExists reports whether the virtual Service host belongs to
// is stored with host's sync ID.
func (m *serviceMutator) virtualServiceExists(ctx context.Context, host *corev1.Service) (bool, error) {
	key := types.NamespacedName{Namespace: host.Annotations[translate.AnnotationNamespace], Name: host.Annotations[translate.AnnotationName]}
	virtual := &corev1.Service{}
	err := m.Virtual.Get(ctx, key, virtual)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading virtual Service %s: %w", key, err)
	}
	return translate.ClaimsService(virtual, host), nil
}

// allocationPatch pins on the virtual Service what the host allocated.
func allocationPatch(svc *corev1.Service, a translate.ServiceAllocation) []jsonpatch.JsonPatchOperation {
	var patch []jsonpatch.JsonPatchOperation
	if a.ClusterIP != "" {
		patch = append(patch,
			jsonpatch.NewOperation("add", "/spec/clusterIP", a.ClusterIP),
			jsonpatch.NewOperation("add", "/spec/clusterIPs", a.ClusterIPs))
	}
	if len(a.IPFamilies) > 0 {
		patch = append(patch, jsonpatch.NewOperation("add", "/spec/ipFamilies", a.IPFamilies))
	}
	if a.IPFamilyPolicy != nil {
		patch = append(patch, jsonpatch.NewOperation("add", "/spec/ipFamilyPolicy", *a.IPFamilyPolicy))
	}
	for i, n := range a.NodePorts {
		if n != 0 && i < len(svc.Spec.Ports) && svc.Spec.Ports[i].NodePort != n {
			patch = append(patch, jsonpatch.NewOperation("add", fmt.Sprintf("/spec/ports/%d/nodePort", i), n))
		}
	}
	if a.HealthCheckNodePort != 0 && svc.Spec.HealthCheckNodePort != a.HealthCheckNodePort {
		patch = append(patch, jsonpatch.NewOperation("add", "/spec/healthCheckNodePort", a.HealthCheckNodePort))
	}
	return patch
}

func invalidService(svc *corev1.Service, errs ...*field.Error) admission.Response {
	return invalidObject("Service", svc.Name, errs)
}

// hostServiceError answers a host error about a host Service.
func hostServiceError(err error, virtual *corev1.Service, hostName string) admission.Response {
	return hostErrorResponse(err, "Service", virtual.Name, hostName, "written")
}
