package reflector

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// indexTokenPod indexes host token Secrets by their virtual pod's namespace/name.
const indexTokenPod = "podbridge.tokenPod"

// tokenReconciler keeps the token Secrets of one virtual pod, keyed by its
// namespace and name: once the virtual pod exists its tokens are bound to
// it (so they stop working when it goes, as a kubelet's do) and refreshed
// at 80% of their lifetime; once it is gone they are deleted.
type tokenReconciler struct {
	// Host reads token Secrets' metadata from the cache and writes them.
	Host client.Client
	// Virtual reads virtual pods from the cache and requests tokens.
	Virtual client.Client
	// VirtualReader confirms a virtual pod's absence live.
	VirtualReader client.Reader
	Config        translate.Config
	// GracePeriod is how old a token Secret without a virtual pod must be
	// before it is deleted, unless this process saw the pod deleted (Gone).
	GracePeriod time.Duration
	// RefreshAfter, when set, refreshes tokens this long after they are
	// issued if that is sooner than 80% of their lifetime (Options.TokenRefreshAfter).
	RefreshAfter time.Duration
	// MaxPerPod caps the tokens requested for one pod (0: no cap), as the
	// host-side gate caps the pod: a pod over it gets none.
	MaxPerPod int
	Clock     clock.PassiveClock
	// Gone holds the virtual pods seen deleted, shared with the podReconciler.
	Gone *gonePods
}

// secretMetadata is a Secret as the host cache holds it: metadata only.
func secretMetadata() *metav1.PartialObjectMetadata {
	return secretCopies.metadata()
}

// indexTokenSecrets registers the index of host token Secrets by virtual
// pod; it must run before the host cache starts.
func indexTokenSecrets(ctx context.Context, host cache.Informers) error {
	err := indexField(ctx, host, secretMetadata(), indexTokenPod, inNamespace, func(obj client.Object) []string {
		if key := tokenPod(obj); key != nil {
			return []string{key.String()}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing host token Secrets by pod: %w", err)
	}
	return nil
}

// tokenPod is the virtual pod a host token Secret belongs to, or nil.
func tokenPod(s client.Object) *types.NamespacedName {
	a := s.GetAnnotations()
	if !translate.IsTokenSecret(s) || a[translate.AnnotationName] == "" || a[translate.AnnotationNamespace] == "" {
		return nil
	}
	return &types.NamespacedName{Namespace: a[translate.AnnotationNamespace], Name: a[translate.AnnotationName]}
}

// podOfTokenSecret maps a host token Secret to its virtual pod.
func podOfTokenSecret(_ context.Context, s client.Object) []reconcile.Request {
	if key := tokenPod(s); key != nil {
		return []reconcile.Request{{NamespacedName: *key}}
	}
	return nil
}

// SetupWithManager watches host token Secrets and virtual pods that come
// and go, plus a full pass at start-up and every resync period.
func (r *tokenReconciler) SetupWithManager(mgr ctrl.Manager, virtual cluster.Cluster, concurrency int, resync time.Duration) error {
	podComesOrGoes := predicate.TypedFuncs[*corev1.Pod]{
		UpdateFunc: func(event.TypedUpdateEvent[*corev1.Pod]) bool { return false },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("tokens").
		// Every new pod with a token waits for this controller to start.
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		WatchesRawSource(source.Kind(mgr.GetCache(), client.Object(secretMetadata()), handler.EnqueueRequestsFromMapFunc(podOfTokenSecret))).
		WatchesRawSource(source.Kind(virtual.GetCache(), &corev1.Pod{}, recordDeletes{
			TypedEventHandler: &handler.TypedEnqueueRequestForObject[*corev1.Pod]{},
			record:            r.Gone.put,
		}, podComesOrGoes)).
		WatchesRawSource(fullPass("tokens", resync, synced(watched{mgr.GetCache(), secretMetadata()}, watched{virtual.GetCache(), &corev1.Pod{}}), r.allTokenPods)).
		Complete(r)
}

func (r *tokenReconciler) allTokenPods(ctx context.Context) ([]reconcile.Request, error) {
	secrets := secretCopies.metadataList()
	if err := r.Host.List(ctx, secrets, client.InNamespace(r.Config.HostNamespace)); err != nil {
		return nil, fmt.Errorf("listing host Secrets: %w", err)
	}
	keys := map[reconcile.Request]bool{}
	for i := range secrets.Items {
		if key := tokenPod(&secrets.Items[i]); key != nil {
			keys[reconcile.Request{NamespacedName: *key}] = true
		}
	}
	// Pods whose token Secrets are missing are found by their own events
	// at start-up (the cache's initial list).
	out := make([]reconcile.Request, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	return out, nil
}

// Reconcile binds, refreshes, re-creates or deletes one pod's token
// Secrets: gather, decide, write.
func (r *tokenReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	secrets := secretCopies.metadataList()
	if err := r.Host.List(ctx, secrets, client.InNamespace(r.Config.HostNamespace), client.MatchingFields{indexTokenPod: req.String()}); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing token Secrets of %s: %w", req, err)
	}
	virtual, err := getPod(ctx, r.Virtual, req.NamespacedName)
	if err != nil {
		return reconcile.Result{}, err
	}
	steps, after := decideTokens(virtual, secrets.Items, r.Config, r.MaxPerPod, r.Clock.Now(), r.GracePeriod, r.Gone.uid)
	for _, s := range steps {
		var err error
		switch {
		case s.delete:
			err = r.deleteUnwanted(ctx, req.NamespacedName, s)
		default:
			var next time.Duration
			next, err = r.bind(ctx, virtual, s)
			after = earliest(after, next)
		}
		if err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// tokenStep is one write to a pod's token Secrets: delete secret (with
// confirm, once a live read agrees the pod is gone), or request token and
// write it into secret (nil: create it).
type tokenStep struct {
	delete  bool
	confirm bool
	secret  *metav1.PartialObjectMetadata
	token   translate.Token
}

// decideTokens is the tokenReconciler's decision for one pod, from its
// virtual pod (nil when gone) and its host token Secrets: Secrets the pod
// no longer wants go (at once when seen deleted, else after the grace
// period), and each wanted token is written when it is missing, not bound
// to this pod, or due for refresh. A pod with more tokens than maxPerPod
// wants none: the tenant's own webhooks can add token volumes after
// podbridge's admission, and the gate keeps its host pod held. after is
// when to look again (0: never).
func decideTokens(virtual *corev1.Pod, secrets []metav1.PartialObjectMetadata, cfg translate.Config, maxPerPod int, now time.Time, grace time.Duration,
	seenGone func(types.UID) bool) (steps []tokenStep, after time.Duration) {
	var wanted []translate.Token
	if virtual != nil && virtual.Annotations[translate.AnnotationSyncID] != "" && virtual.DeletionTimestamp == nil {
		wanted = translate.PodDependencies(virtual, cfg).Tokens
		if !policy.TokensAllowed(len(wanted), maxPerPod) {
			wanted = nil
		}
	}
	for i := range secrets {
		s := &secrets[i]
		if slices.ContainsFunc(wanted, func(t translate.Token) bool { return t.HostSecret == s.Name }) {
			continue
		}
		if seenGone(types.UID(s.Annotations[translate.AnnotationTokenBoundUID])) {
			steps = append(steps, tokenStep{delete: true, secret: s})
			continue
		}
		// creationTimestamp has second resolution: see translate.OrphanWait.
		if age := now.Sub(s.CreationTimestamp.Time) - time.Second; age < grace {
			after = earliest(after, grace-age)
			continue
		}
		steps = append(steps, tokenStep{delete: true, confirm: true, secret: s})
	}
	for _, tok := range wanted {
		i := slices.IndexFunc(secrets, func(s metav1.PartialObjectMetadata) bool { return s.Name == tok.HostSecret })
		var current *metav1.PartialObjectMetadata
		if i >= 0 {
			current = &secrets[i]
			if current.Annotations[translate.AnnotationTokenBoundUID] == string(virtual.UID) {
				refreshAt, err := time.Parse(time.RFC3339, current.Annotations[translate.AnnotationTokenRefreshAt])
				if err == nil && now.Before(refreshAt) {
					after = earliest(after, refreshAt.Sub(now))
					continue
				}
			}
		}
		steps = append(steps, tokenStep{secret: current, token: tok})
	}
	return steps, after
}

// deleteUnwanted deletes a token Secret whose pod is gone; with confirm,
// only once a live read agrees.
func (r *tokenReconciler) deleteUnwanted(ctx context.Context, key types.NamespacedName, s tokenStep) error {
	if s.confirm {
		live, err := getPod(ctx, r.VirtualReader, key)
		if err != nil {
			return err
		}
		if live != nil && live.DeletionTimestamp == nil && live.Annotations[translate.AnnotationSyncID] != "" {
			return nil // the cache lags; the pod's event is on its way.
		}
	}
	if err := r.Host.Delete(ctx, s.secret, client.Preconditions{UID: &s.secret.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting token Secret %s: %w", s.secret.Name, err)
	}
	countAction(actionTokenDelete)
	logf.FromContext(ctx).V(1).Info("Deleted token Secret of a gone pod", "secret", s.secret.Name)
	return nil
}

// bind requests a token bound to the pod and writes it into the pod's
// token Secret, and returns when it is due for refresh.
func (r *tokenReconciler) bind(ctx context.Context, virtual *corev1.Pod, s tokenStep) (time.Duration, error) {
	now := r.Clock.Now()
	tok, current := s.token, s.secret
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tok.ServiceAccount, Namespace: virtual.Namespace}}
	treq := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &tok.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: virtual.Name, UID: virtual.UID},
	}}
	if tok.Audience != "" {
		treq.Spec.Audiences = []string{tok.Audience}
	}
	if err := r.Virtual.SubResource("token").Create(ctx, sa, treq); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil // the pod or its service account is gone: its event brings us back.
		}
		return 0, fmt.Errorf("requesting a bound token for pod %s/%s: %w", virtual.Namespace, virtual.Name, err)
	}
	refreshAt := now.Add(refreshDelay(treq.Status.ExpirationTimestamp.Sub(now), r.RefreshAfter))
	want := translate.HostTokenSecret(virtual.Name, virtual.Namespace, tok, treq.Status.Token, r.Config)
	want.Annotations[translate.AnnotationTokenBoundUID] = string(virtual.UID)
	want.Annotations[translate.AnnotationTokenRefreshAt] = refreshAt.UTC().Format(time.RFC3339)
	var err error
	if current == nil {
		err = r.Host.Create(ctx, want, client.FieldOwner(FieldManager))
	} else {
		want.ResourceVersion = current.ResourceVersion
		err = r.Host.Update(ctx, want, client.FieldOwner(FieldManager))
	}
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err):
		return 0, nil // another replica or pass wrote it meanwhile; its event brings us back.
	case err != nil:
		return 0, fmt.Errorf("writing token Secret %s: %w", want.Name, err)
	}
	countAction(actionTokenWrite)
	logf.FromContext(ctx).V(1).Info("Wrote bound token", "secret", want.Name, "refreshAt", want.Annotations[translate.AnnotationTokenRefreshAt],
		"expirationSeconds", strconv.FormatInt(tok.ExpirationSeconds, 10))
	return refreshAt.Sub(now), nil
}

// refreshDelay is how long after issue a token of this lifetime is
// refreshed: at 80% of it, as the kubelet does, or after refreshAfter when
// that is set and sooner. Never later, so the option cannot leave a
// container holding an expiring token.
func refreshDelay(lifetime, refreshAfter time.Duration) time.Duration {
	d := lifetime * 8 / 10
	if refreshAfter > 0 && refreshAfter < d {
		return refreshAfter
	}
	return d
}
