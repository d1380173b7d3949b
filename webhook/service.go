package webhook

import (
	"context"
	"fmt"
	"time"

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

// Requests the Service paths serve.
var (
	serviceCreates = objectRequests{path: translate.WebhookPathService, resource: "services", kind: "Service", operation: admissionv1.Create}
	serviceUpdates = objectRequests{path: translate.WebhookPathServiceUpdate, resource: "services", kind: "Service", operation: admissionv1.Update}
)

func (m *serviceMutator) handle(ctx context.Context, req admission.Request) admission.Response {
	kind := serviceCreates
	if m.Update {
		kind = serviceUpdates
	}
	svc, old, refused := decodeObjects[corev1.Service](kind, req)
	if refused != nil {
		return *refused
	}
	if m.Update {
		return m.update(ctx, req, old, svc)
	}
	return m.create(ctx, req, svc)
}

// objects writes host Services.
func (m *serviceMutator) objects() hostObjects[corev1.Service, *corev1.Service] {
	return hostObjects[corev1.Service, *corev1.Service]{
		Host: m.Host, Virtual: m.Virtual, Config: m.Config, Resource: serviceResource, Kind: "Service", Cap: m.HostServices,
	}
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
	hadAnnotations := len(svc.Annotations) > 0
	nameGenerated, nameErr := nameFromGenerateName(svc, m.NameSuffix)
	if nameErr != nil {
		return invalidService(svc, nameErr)
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
		existing, err := m.objects().reinvoked(hostCtx, svc.Name, host.Name, syncID)
		if err != nil {
			return hostServiceError(err, svc, host.Name)
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
		created, refused := m.objects().createWithinCap(hostCtx, log, req, svc.Name, host, mode)
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
	patch, forged := keepSyncKeys(old, svc)
	if forged != nil {
		return invalidService(svc, forged)
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
	current, err := m.objects().current(hostCtx, svc.Name, name, syncID)
	if err != nil {
		return hostServiceError(err, svc, name)
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
			created, refused := m.objects().createWithinCap(hostCtx, log, req, svc.Name, desired, mode)
			if refused != nil {
				return *refused
			}
			return patched(allocationPatch(svc, translate.HostAllocated(created)))
		}
		// Its host Service is gone: the reflector carries that deletion to
		// the virtual Service; an update cannot bring it back.
		return hostServiceError(apierrors.NewNotFound(serviceResource, svc.Name), svc, name)
	}
	updated, err := m.objects().update(hostCtx, svc.Name, current, desired, mode, translate.SameHostService, translate.OverHostService)
	if err != nil {
		log.Info("Refused Service update: host Service not updated", "hostService", name, "error", err.Error())
		return hostServiceError(err, svc, name)
	}
	log.V(1).Info("Updated host Service", "hostService", name)
	return patched(allocationPatch(svc, translate.HostAllocated(updated)))
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
