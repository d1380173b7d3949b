package webhook

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/hostaccount"
	"github.com/podbridge/podbridge/internal/hostcopy"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/runtimeclass"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// Path is where the webhook server serves pod creates (podMutator); pod
// updates (updateGuard) and ephemeral containers (ephemeralContainersCheck)
// have paths of their own, translate.WebhookPathPodUpdate and
// translate.WebhookPathEphemeralContainers.
const Path = translate.WebhookPath

// FieldManager names podbridge's writes on the host.
const FieldManager = translate.FieldManagerWebhook

var (
	podResource = schema.GroupResource{Resource: "pods"}
	decoder     = admission.NewDecoder(kube.Scheme)
)

// podMutator is the admission handler for pod creates in the virtual
// cluster (Path): it creates the host pod before the virtual pod is stored.
// It serves nothing else.
type podMutator struct {
	// Host creates and reads host pods in the host namespace.
	Host client.Client
	// Virtual reads virtual pods (to tell a stale host pod from a live
	// one), ConfigMaps and Secrets (tokens are the reflector's to request).
	Virtual client.Client
	// Config is the translation configuration.
	Config translate.Config
	// Gate is the host-side gate every host pod passes, the reflector's too.
	Gate policy.Gate
	// HostTimeout bounds every host call, well inside the webhook timeout.
	HostTimeout time.Duration
	// NewSyncID returns a fresh pair identity (a UUID in production).
	NewSyncID func() string
	// NameSuffix returns the random suffix for generateName pods.
	NameSuffix func() string
	// Originals, when set, holds the metadata of virtual ConfigMaps and
	// Secrets, so a pod whose copies are current costs no read.
	Originals *originalsCache
	// Copies writes the host copies of the ConfigMaps and Secrets a pod
	// uses, within the caps on their number and bytes.
	Copies *hostcopy.Writer
	// HostPods admits each new host pod within the cap on host pods.
	HostPods *caps.HostObjects

	copies copiesSeen
	// inflight joins concurrent reads of the same original.
	inflight singleflight.Group
}

var _ admission.Handler = &podMutator{}

// Handle admits a pod create by creating its host pod first.
func (m *podMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return counted(m.handle(ctx, req))
}

func (m *podMutator) handle(ctx context.Context, req admission.Request) admission.Response {
	if resp, ok := podCreates.serves(req); !ok {
		return resp
	}
	start := time.Now()
	mutated := &corev1.Pod{}
	if err := decoder.DecodeRaw(req.Object, mutated); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err))
	}
	// What the patch must add depends on the pod as the tenant sent it.
	hadAnnotations := len(mutated.Annotations) > 0
	if mutated.Namespace == "" {
		mutated.Namespace = req.Namespace
	}
	nameGenerated, nameErr := nameFromGenerateName(mutated, m.NameSuffix)
	if nameErr != nil {
		return invalid(mutated, nameErr)
	}
	mode := writeModeOf(req)
	log := logf.FromContext(ctx).WithValues("pod", mutated.Namespace+"/"+mutated.Name, "dryRun", mode == dryRun)

	syncID, reinvoked := mutated.Annotations[translate.AnnotationSyncID]
	if !reinvoked {
		syncID = m.NewSyncID()
	}
	host, deps, errs := translate.HostPod(mutated, m.Config, syncID)
	if len(errs) > 0 {
		return invalid(mutated, errs...)
	}
	hostCtx, cancel := context.WithTimeout(ctx, m.HostTimeout)
	defer cancel()
	runtimeClass, refusal, err := runtimeclass.HostClass(hostCtx, m.Host, m.Virtual, m.Config.RuntimeClasses, mutated)
	switch {
	case err != nil:
		log.Info("Refused pod: its RuntimeClass not read", "error", err.Error())
		return deny(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			fmt.Sprintf("pod %q not created, retry later: %v", mutated.Name, err))
	case refusal != nil:
		return invalid(mutated, refusal)
	}
	host.Spec.RuntimeClassName = runtimeClass
	if errs := m.Gate.Check(mutated, host); len(errs) > 0 {
		if slices.ContainsFunc(errs, func(e *field.Error) bool { return e.Origin == policy.OriginTokenCap }) {
			caps.Refused(caps.FlagMaxTokensPerPod)
		}
		return refuse(fmt.Sprintf("pod %q", mutated.Name), mutated, errs)
	}
	switch errs, err := podClaimsOwned(hostCtx, m.Host, m.Config, mutated); {
	case err != nil:
		log.Info("Refused pod: its host claims not read", "error", err.Error())
		return hostErrorResponse(err, "pod", mutated.Name, host.Name, "created")
	case len(errs) > 0:
		return invalid(mutated, errs...)
	}
	host.Annotations[annotationAdmissionUID] = string(req.UID)
	start = observeStage(stageTranslate, start)

	if mode == writeHost {
		if err := m.ensureDependencies(hostCtx, mutated, deps); err != nil {
			var limit *caps.LimitError
			if errors.As(err, &limit) {
				log.Info("Refused pod: a cap on host copies", "limit", limit.Flag, "use", limit.Use, "cap", limit.Limit)
				return invalid(mutated, field.Forbidden(field.NewPath("spec"), limit.Error()))
			}
			log.Info("Refused pod: host dependencies not created", "hostPod", host.Name, "error", err.Error())
			return hostErrorResponse(err, "pod", mutated.Name, host.Name, "created")
		}
		start = observeStage(stageDependencies, start)
	}
	if reinvoked {
		syncID, err = m.reinvokedHostPod(hostCtx, host)
	} else {
		release, limitErr := m.HostPods.Reserve(host.Name)
		if limitErr != nil {
			log.Info("Refused pod: the cap on host pods", "error", limitErr.Error())
			return deny(http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("pod %q is forbidden: %v", mutated.Name, limitErr))
		}
		syncID, err = m.createHostPod(hostCtx, host, mode)
		if err != nil || mode == dryRun {
			release()
		}
	}
	if err != nil {
		log.Info("Refused pod: host pod not created", "hostPod", host.Name, "error", err.Error())
		return hostErrorResponse(err, "pod", mutated.Name, host.Name, "created")
	}
	observeStage(stageHostCreate, start)
	caps.ObserveTokens(len(deps.Tokens))
	log.V(1).Info("Created host pod", "hostPod", host.Name, "syncID", syncID)

	var patch []jsonpatch.JsonPatchOperation
	if nameGenerated {
		patch = append(patch, jsonpatch.NewOperation("add", "/metadata/name", mutated.Name))
	}
	patch = append(patch, addKeys("annotations", hadAnnotations, map[string]string{
		translate.AnnotationSyncID:   syncID,
		translate.AnnotationHostName: host.Name,
	})...)
	return admission.Patched("", patch...)
}

// refuse answers the gate's errors: 403 Forbidden, as pod-security-admission
// answers, when the Pod Security level is broken; 422 Invalid naming the
// fields otherwise.
func refuse(what string, pod *corev1.Pod, errs field.ErrorList) admission.Response {
	for i, e := range errs {
		if e.Origin != policy.OriginPodSecurity {
			continue
		}
		msg := what + " is forbidden: " + e.Detail
		if rest := slices.Delete(slices.Clone(errs), i, i+1); len(rest) > 0 {
			msg += "; " + rest.ToAggregate().Error()
		}
		return deny(http.StatusForbidden, metav1.StatusReasonForbidden, msg)
	}
	return invalid(pod, errs...)
}

// annotationAdmissionUID records on the host pod the admission request that
// created it: the apiserver retries a request with the same UID, and the
// retry must find its host pod rather than make another.
const annotationAdmissionUID = translate.Prefix + "admission-uid"

// writeMode says whether an admission writes to the host, or only asks the
// host whether it would (a dry-run admission: sideEffects NoneOnDryRun).
type writeMode int

const (
	writeHost writeMode = iota
	dryRun
)

func writeModeOf(req admission.Request) writeMode {
	if req.DryRun != nil && *req.DryRun {
		return dryRun
	}
	return writeHost
}

func (w writeMode) createOptions() []client.CreateOption {
	opts := []client.CreateOption{client.FieldOwner(FieldManager)}
	if w == dryRun {
		opts = append(opts, client.DryRunAll)
	}
	return opts
}

// reinvokedHostPod answers a re-invocation, a pod that carries a sync ID
// already: it returns that sync ID when it is the sync ID of this very
// pod's host pod, and refuses the pod otherwise. Only podbridge sets sync
// IDs: one that names no host pod of this pod is forged, and making a host
// pod for it would let a tenant pair pods of its choosing. Nothing is
// written, dry run or not.
func (m *podMutator) reinvokedHostPod(ctx context.Context, host *corev1.Pod) (string, error) {
	syncID := host.Annotations[translate.AnnotationSyncID]
	existing := &corev1.Pod{}
	err := m.Host.Get(ctx, client.ObjectKeyFromObject(host), existing)
	if err == nil && existing.Annotations[translate.AnnotationSyncID] == syncID && existing.Annotations[translate.AnnotationVCluster] == m.Config.VCluster {
		return syncID, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("reading existing host pod: %w", err)
	}
	return "", apierrors.NewForbidden(podResource, host.Annotations[translate.AnnotationName],
		fmt.Errorf("annotation %s is set by podbridge only", translate.AnnotationSyncID))
}

// createHostPod creates host (mode dryRun: asks the host to validate it),
// or finds that it exists already for the same pod: a retry of the same
// admission request. It returns the sync ID of the host pod in place. A
// host pod of the same name whose virtual pod is gone is stale (its
// admission failed after podbridge said yes) and is replaced.
func (m *podMutator) createHostPod(ctx context.Context, host *corev1.Pod, mode writeMode) (string, error) {
	syncID := host.Annotations[translate.AnnotationSyncID]
	err := m.create(ctx, host, mode)
	if !apierrors.IsAlreadyExists(err) {
		return syncID, err
	}
	existing := &corev1.Pod{}
	if err := m.Host.Get(ctx, client.ObjectKeyFromObject(host), existing); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone since the create (the reflector collected an orphan of
			// an admission that died): create once more.
			return syncID, m.create(ctx, host, mode)
		}
		return "", fmt.Errorf("reading existing host pod: %w", err)
	}
	switch {
	case existing.Annotations[translate.AnnotationVCluster] != m.Config.VCluster:
		return "", apierrors.NewConflict(podResource, host.Annotations[translate.AnnotationName], fmt.Errorf("its host pod name is taken in the host namespace"))
	case existing.Annotations[translate.AnnotationSyncID] == syncID:
		return syncID, nil
	case existing.Annotations[annotationAdmissionUID] == host.Annotations[annotationAdmissionUID]:
		return existing.Annotations[translate.AnnotationSyncID], nil
	}
	live, err := m.virtualPodExists(ctx, existing)
	if err != nil {
		return "", err
	}
	if live {
		return "", apierrors.NewAlreadyExists(podResource, host.Annotations[translate.AnnotationName])
	}
	if mode == dryRun {
		return syncID, nil // a real create would replace the stale pod.
	}
	if err := m.Host.Delete(ctx, existing, client.Preconditions{UID: &existing.UID}, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("deleting stale host pod: %w", err)
	}
	return syncID, m.create(ctx, host, mode)
}

// create creates host (mode dryRun: asks the host to validate it). Every
// host pod create of the webhook goes through here: a host pod the host
// gave image pull secrets podbridge did not ask for (see
// hostaccount.AddedPullSecrets) is deleted again and the create refused,
// so a tenant never pulls with the platform's credentials.
func (m *podMutator) create(ctx context.Context, host *corev1.Pod, mode writeMode) error {
	created := host.DeepCopy()
	if err := m.Host.Create(ctx, created, mode.createOptions()...); err != nil {
		return err
	}
	added := hostaccount.AddedPullSecrets(host, created)
	if len(added) == 0 {
		return nil
	}
	if mode == writeHost {
		if err := m.Host.Delete(ctx, created, client.Preconditions{UID: &created.UID}, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting host pod given the host service account's pull secrets: %w", err)
		}
	}
	return apierrors.NewForbidden(podResource, host.Annotations[translate.AnnotationName], fmt.Errorf(
		"the host gave its pod the image pull secrets %v of host service account %s: podbridge refuses to pull with the platform's credentials (the platform must remove them from the account)",
		added, m.Config.HostServiceAccount))
}

// virtualPodExists reports whether the virtual pod that host pod belongs to
// is stored in the virtual cluster with the host pod's sync ID.
func (m *podMutator) virtualPodExists(ctx context.Context, host *corev1.Pod) (bool, error) {
	key := types.NamespacedName{Namespace: host.Annotations[translate.AnnotationNamespace], Name: host.Annotations[translate.AnnotationName]}
	virtual := &corev1.Pod{}
	err := m.Virtual.Get(ctx, key, virtual)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading virtual pod %s: %w", key, err)
	}
	return virtual.Annotations[translate.AnnotationSyncID] == host.Annotations[translate.AnnotationSyncID], nil
}

// nameFromGenerateName names obj, sent with generateName only, now, as the
// apiserver would after admission: its host object is named after it. It
// reports whether it did (the patch must add the name); an object with
// neither is refused.
func nameFromGenerateName(obj metav1.Object, suffix func() string) (bool, *field.Error) {
	if obj.GetName() != "" {
		return false, nil
	}
	if obj.GetGenerateName() == "" {
		return false, field.Required(field.NewPath("metadata", "name"), "name or generateName is required")
	}
	obj.SetName(GenerateName(obj.GetGenerateName(), suffix()))
	return true, nil
}

// GenerateName turns generateName into a name the way the apiserver does:
// the prefix cut to leave room for the five-character random suffix.
func GenerateName(prefix, suffix string) string {
	const maxGeneratedNameLength = 63 - 5
	if len(prefix) > maxGeneratedNameLength {
		prefix = prefix[:maxGeneratedNameLength]
	}
	return prefix + suffix
}

func invalid(pod *corev1.Pod, errs ...*field.Error) admission.Response {
	return invalidObject("Pod", pod.Name, errs)
}

func deny(code int32, reason metav1.StatusReason, message string) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result:  &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: message},
	}}
}

// addKeys is the JSON patch that sets keys in an object's labels or
// annotations (field) when it has some already (one "add" per key), or
// none (one "add" of the map: the field may be absent, empty or null).
// Written directly: diffing the whole pod's JSON before and after cost
// more than the rest of the handler.
func addKeys(field string, has bool, keys map[string]string) []jsonpatch.JsonPatchOperation {
	if !has {
		return []jsonpatch.JsonPatchOperation{jsonpatch.NewOperation("add", "/metadata/"+field, keys)}
	}
	ops := make([]jsonpatch.JsonPatchOperation, 0, len(keys))
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		ops = append(ops, jsonpatch.NewOperation("add", "/metadata/"+field+"/"+pointerEscaper.Replace(key), keys[key]))
	}
	return ops
}

// pointerEscaper escapes a key for a JSON pointer (RFC 6901).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
