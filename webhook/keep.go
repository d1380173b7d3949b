package webhook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
)

// Causes of a restore, the values of registrationRestoresTotal's label.
const (
	causeEdited  = "edited"
	causeDeleted = "deleted"
)

// registrationKeeper keeps podbridge's MutatingWebhookConfiguration in the
// virtual cluster as podbridge wants it. The tenant is cluster-admin there
// and can edit or delete it; every change of the object (and start-up)
// leads to a pass that compares what is stored now with what podbridge
// wants and restores the difference, so the outcome depends only on what
// is read, never on which events were seen.
//
// With a URL, podbridge owns the whole webhooks list of its configuration:
// a webhook entry the tenant adds to podbridge's object, or a field
// podbridge leaves unset (matchConditions), is removed too, since either
// could keep pods away from podbridge's checks and the tenant can put
// webhooks of its own in configurations of its own. Metadata (labels,
// annotations) is left alone. Without a URL (GitOps), only the CA bundle
// is podbridge's.
type registrationKeeper struct {
	reg     Registration
	virtual client.Client
	cluster cluster.Cluster
	// currentCA reads the CA podbridge's serving certificate is issued
	// under now; nil, or an error, falls back to the bundle last set.
	currentCA func(ctx context.Context) ([]byte, error)

	// wake is signalled on every change of the object.
	wake chan struct{}
	// syncMu makes passes one at a time, so one change is restored (and
	// reported) once.
	syncMu sync.Mutex

	mu sync.Mutex // guards the fields below
	// bundle is the CA bundle the certificate keeper last handed over.
	bundle []byte
	// observed is when the first change not yet handled was seen.
	observed time.Time
	// registered says this process has had the configuration in place
	// once: a difference found before that is a start-up (first install,
	// upgrade), not a restore.
	registered bool
}

// newRegistrationKeeper watches the configuration reg.Name, and nothing
// else, in the virtual cluster.
func newRegistrationKeeper(virtualCfg *rest.Config, virtual client.Client, reg Registration, currentCA func(context.Context) ([]byte, error)) (*registrationKeeper, error) {
	c, err := cluster.New(virtualCfg, func(o *cluster.Options) {
		o.Scheme = kube.Scheme
		o.Cache.ReaderFailOnMissingInformer = true
		o.Cache.ByObject = map[client.Object]cache.ByObject{
			&admissionregistrationv1.MutatingWebhookConfiguration{}: {
				Field:     fields.OneTermEqualSelector("metadata.name", reg.Name),
				Transform: cache.TransformStripManagedFields(),
			},
		}
	})
	if err != nil {
		return nil, fmt.Errorf("creating the watch of MutatingWebhookConfiguration %s: %w", reg.Name, err)
	}
	return &registrationKeeper{reg: reg, virtual: virtual, cluster: c, currentCA: currentCA, wake: make(chan struct{}, 1), bundle: reg.CABundle}, nil
}

// SetCABundle hands over a new CA bundle and makes the configuration
// carry it; it is the certificate keeper's Inject.
func (k *registrationKeeper) SetCABundle(ctx context.Context, bundle []byte) error {
	k.mu.Lock()
	k.bundle = bundle
	k.mu.Unlock()
	return k.sync(ctx, true)
}

// Start watches the configuration and restores it until ctx is done (a
// manager Runnable).
func (k *registrationKeeper) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("registration").WithValues("configuration", k.reg.Name)
	informer, err := k.cluster.GetCache().GetInformer(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{}, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("watching MutatingWebhookConfiguration %s: %w", k.reg.Name, err)
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.observe() },
		UpdateFunc: func(any, any) { k.observe() },
		DeleteFunc: func(any) { k.observe() },
	}); err != nil {
		return fmt.Errorf("watching MutatingWebhookConfiguration %s: %w", k.reg.Name, err)
	}
	errs := make(chan error, 1)
	go func() { errs <- k.cluster.Start(ctx) }()
	k.observe() // a pass at start, whatever the watch says.

	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Cap: 30 * time.Second, Steps: 1 << 30}
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return <-errs
		case err := <-errs:
			return err
		case <-k.wake:
		case <-retry:
		}
		retry = nil
		if err := k.sync(ctx, false); err != nil {
			delay := backoff.Step()
			log.Error(err, "Keeping the webhook configuration failed; retrying", "after", delay)
			retry = time.After(delay)
			continue
		}
		backoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Cap: 30 * time.Second, Steps: 1 << 30}
	}
}

func (k *registrationKeeper) observe() {
	k.mu.Lock()
	if k.observed.IsZero() {
		k.observed = time.Now()
	}
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Sync runs one pass: read the configuration, compare it with what
// podbridge wants, restore what differs, and report a restore.
func (k *registrationKeeper) Sync(ctx context.Context) error { return k.sync(ctx, false) }

// sync is Sync; rotated says podbridge's own CA bundle changed, so a
// difference in it is an injection rather than a restore.
func (k *registrationKeeper) sync(ctx context.Context, rotated bool) error {
	k.syncMu.Lock()
	defer k.syncMu.Unlock()
	k.mu.Lock()
	observed, bundle, registered := k.observed, k.bundle, k.registered
	k.observed = time.Time{}
	k.mu.Unlock()
	done := false
	defer func() {
		if !done && !observed.IsZero() {
			k.mu.Lock()
			if k.observed.IsZero() || observed.Before(k.observed) {
				k.observed = observed
			}
			k.mu.Unlock()
		}
	}()

	required := bundle
	if k.currentCA != nil {
		if ca, err := k.currentCA(ctx); err == nil && len(ca) > 0 {
			required = ca
		}
	}
	if len(required) == 0 {
		done = true
		return nil // no certificate yet: nothing podbridge could register.
	}
	restoreBundle := certs.MergeCABundle(required, bundle, time.Now())

	current := &admissionregistrationv1.MutatingWebhookConfiguration{}
	err := k.virtual.Get(ctx, client.ObjectKey{Name: k.reg.Name}, current)
	switch {
	case apierrors.IsNotFound(err):
		current = nil
	case err != nil:
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", k.reg.Name, err)
	}
	want := k.reg
	want.CABundle = restoreBundle
	var drift []string
	if k.reg.URL == "" {
		if current == nil {
			done = true
			logf.FromContext(ctx).Info("Found no webhook configuration to inject the CA bundle into; waiting for it to be applied", "configuration", k.reg.Name)
			return nil
		}
		drift = caDrift(current, required, restoreBundle)
	} else {
		drift = registrationDrift(want.Configuration(), current, required, restoreBundle)
	}
	if len(drift) == 0 {
		k.markRegistered()
		done = true
		return nil
	}

	restored, err := k.restore(ctx, want, current)
	if err != nil {
		return err
	}
	done = true
	k.markRegistered()
	log := logf.FromContext(ctx).WithValues("configuration", k.reg.Name, "changed", strings.Join(drift, ", "))
	if !registered || rotated {
		log.Info("Applied the webhook configuration in the virtual cluster", "caRotated", rotated)
		return nil
	}
	cause := causeEdited
	if current == nil {
		cause = causeDeleted
	}
	registrationRestoresTotal.WithLabelValues(cause).Inc()
	if !observed.IsZero() {
		registrationRestoreSeconds.Observe(time.Since(observed).Seconds())
	}
	log.Info("Restored the webhook configuration the tenant changed", "cause", cause)
	k.cluster.GetEventRecorder(FieldManager).Eventf(restored, nil, corev1.EventTypeWarning, "RegistrationRestored", "Restore",
		"podbridge restored its webhook configuration (%s): %s", cause, strings.Join(drift, ", "))
	return nil
}

func (k *registrationKeeper) markRegistered() {
	k.mu.Lock()
	k.registered = true
	k.mu.Unlock()
}

// restore writes want over current and returns the stored object. With a
// URL, server-side apply (forced) takes back every field podbridge sets
// and re-creates a deleted configuration; what apply leaves because
// podbridge does not set it (another manager's webhook entry or
// matchConditions) is then replaced with an update on that version.
func (k *registrationKeeper) restore(ctx context.Context, want Registration, current *admissionregistrationv1.MutatingWebhookConfiguration) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	if want.URL == "" {
		if err := injectCABundle(ctx, k.virtual, want.Name, want.CABundle); err != nil {
			return nil, err
		}
		return current, nil
	}
	if err := Register(ctx, k.virtual, want); err != nil {
		return nil, err
	}
	stored := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := k.virtual.Get(ctx, client.ObjectKey{Name: want.Name}, stored); err != nil {
		return nil, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", want.Name, err)
	}
	if len(registrationDrift(want.Configuration(), stored, want.CABundle, want.CABundle)) == 0 {
		return stored, nil
	}
	stored.Webhooks = want.Configuration().Webhooks
	if err := k.virtual.Update(ctx, stored, client.FieldOwner(FieldManager)); err != nil {
		return nil, fmt.Errorf("replacing the webhooks of MutatingWebhookConfiguration %s: %w", want.Name, err)
	}
	return stored, nil
}

// registrationDrift names what of current differs from want, the
// configuration podbridge wants, in the fields podbridge owns: nil when
// nothing does. A CA bundle is podbridge's when it holds every certificate
// of required and nothing beyond allowed, so replicas that know a previous
// CA and replicas that do not both accept what the other wrote.
func registrationDrift(want, current *admissionregistrationv1.MutatingWebhookConfiguration, required, allowed []byte) []string {
	if current == nil {
		return []string{"configuration deleted"}
	}
	var drift []string
	byName := map[string]*admissionregistrationv1.MutatingWebhook{}
	for i := range current.Webhooks {
		byName[current.Webhooks[i].Name] = &current.Webhooks[i]
	}
	wanted := map[string]bool{}
	for i := range want.Webhooks {
		w := &want.Webhooks[i]
		wanted[w.Name] = true
		c, ok := byName[w.Name]
		if !ok {
			drift = append(drift, "webhook "+w.Name+" removed")
			continue
		}
		for _, f := range []struct {
			name       string
			want, have any
		}{
			{"rules", w.Rules, c.Rules},
			{"namespaceSelector", w.NamespaceSelector, c.NamespaceSelector},
			{"objectSelector", w.ObjectSelector, c.ObjectSelector},
			{"failurePolicy", w.FailurePolicy, c.FailurePolicy},
			{"sideEffects", w.SideEffects, c.SideEffects},
			{"timeoutSeconds", w.TimeoutSeconds, c.TimeoutSeconds},
			{"matchPolicy", w.MatchPolicy, c.MatchPolicy},
			{"reinvocationPolicy", w.ReinvocationPolicy, c.ReinvocationPolicy},
			{"admissionReviewVersions", w.AdmissionReviewVersions, c.AdmissionReviewVersions},
			{"matchConditions", w.MatchConditions, c.MatchConditions},
			{"clientConfig.url", w.ClientConfig.URL, c.ClientConfig.URL},
			{"clientConfig.service", w.ClientConfig.Service, c.ClientConfig.Service},
		} {
			if !apiequality.Semantic.DeepEqual(f.want, f.have) {
				drift = append(drift, w.Name+" "+f.name)
			}
		}
		if !certs.BundleWithin(c.ClientConfig.CABundle, required, allowed) {
			drift = append(drift, w.Name+" clientConfig.caBundle")
		}
	}
	for _, c := range current.Webhooks {
		if !wanted[c.Name] {
			drift = append(drift, "webhook "+c.Name+" added")
		}
	}
	return drift
}

// caDrift names the webhooks of a configuration podbridge does not own
// whose CA bundle is not podbridge's.
func caDrift(current *admissionregistrationv1.MutatingWebhookConfiguration, required, allowed []byte) []string {
	var drift []string
	for _, w := range current.Webhooks {
		if !certs.BundleWithin(w.ClientConfig.CABundle, required, allowed) {
			drift = append(drift, w.Name+" clientConfig.caBundle")
		}
	}
	return drift
}
