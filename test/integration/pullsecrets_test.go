package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

// A host service account with image pull secrets would hand them to every
// tenant pod through the host's ServiceAccount admission, and one that
// mounts its token by default is one slip from handing out the platform's
// token: neither component starts with such an account, and says which
// field is wrong.
func TestUnfitHostServiceAccountRefusesStart(t *testing.T) {
	ctx := context.Background()
	hostNS := env.Options.Translate.HostNamespace
	accounts := map[string]*corev1.ServiceAccount{
		"imagePullSecrets": {
			ObjectMeta:                   metav1.ObjectMeta{Name: "with-pull-secrets", Namespace: hostNS},
			ImagePullSecrets:             []corev1.LocalObjectReference{{Name: "platform-registry"}},
			AutomountServiceAccountToken: ptr.To(false),
		},
		"automountServiceAccountToken": {ObjectMeta: metav1.ObjectMeta{Name: "mounting-token", Namespace: hostNS}},
	}
	for _, sa := range accounts {
		if err := hostClient.Create(ctx, sa); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hostClient.Delete(context.Background(), sa) })
	}
	for field, sa := range accounts {
		t.Run(field, func(t *testing.T) {
			tc := env.Options.Translate
			tc.VCluster, tc.HostServiceAccount = "unfit", sa.Name
			startCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			_, err := webhook.New(startCtx, webhook.Options{
				Host: env.Host.Config, Virtual: env.Virtual.Config, Translate: tc, PodSecurityLevel: "baseline",
				HostTimeout: 5 * time.Second, BindAddress: "127.0.0.1", Port: freeTestPort(t),
				MetricsBindAddress: "0", HealthProbeBindAddress: "0",
			})
			if err == nil || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), sa.Name) {
				t.Errorf("webhook started, or its error does not name %s of %s: %v", field, sa.Name, err)
			}
			_, err = reflector.NewManager(reflector.Options{
				Host: env.Host.Config, Virtual: env.Virtual.Config, Translate: tc, OrphanGracePeriod: time.Minute,
				MetricsBindAddress: "0", HealthProbeBindAddress: "0", SkipControllerNameValidation: true,
			})
			if err == nil || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), sa.Name) {
				t.Errorf("reflector started, or its error does not name %s of %s: %v", field, sa.Name, err)
			}
		})
	}
}

// An account that gains pull secrets after podbridge started: the host pod
// the host gives them to is removed at once and the tenant's create is
// refused, so no tenant container ever pulls with them.
func TestPullSecretsAddedToTheHostAccountLaterAreRefused(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	key := client.ObjectKey{Namespace: env.Options.Translate.HostNamespace, Name: env.Options.Translate.HostServiceAccount}
	sa := &corev1.ServiceAccount{}
	if err := hostClient.Get(ctx, key, sa); err != nil {
		t.Fatal(err)
	}
	sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "platform-registry"}}
	if err := hostClient.Update(ctx, sa); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		restored := &corev1.ServiceAccount{}
		if err := hostClient.Get(context.Background(), key, restored); err == nil {
			restored.ImagePullSecrets = nil
			if err := hostClient.Update(context.Background(), restored); err != nil {
				t.Errorf("restoring the host service account: %v", err)
			}
		}
	})
	// The host's ServiceAccount admission reads the account from its
	// informer: wait until a host pod naming no pull secrets gets them.
	eventually(t, 30*time.Second, "the host's admission to give pods the account's pull secrets", func(ctx context.Context) (bool, string) {
		probe := simplePod(key.Namespace, "pull-secret-probe")
		probe.Spec.ServiceAccountName, probe.Spec.AutomountServiceAccountToken = key.Name, ptr.To(false)
		if err := hostClient.Create(ctx, probe, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		return len(probe.Spec.ImagePullSecrets) > 0, "no pull secrets yet"
	})

	pod := simplePod(ns, "pulls")
	err := virtualClient.Create(ctx, pod)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "platform-registry") {
		t.Fatalf("create: %v, want 403 naming the pull secret", err)
	}
	host := &corev1.Pod{}
	err = hostClient.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: translate.HostName(pod.Name, ns, env.Options.Translate.VCluster)}, host)
	if !apierrors.IsNotFound(err) && (err != nil || host.DeletionTimestamp == nil) {
		t.Fatalf("the host pod given the pull secrets is still there: %v", err)
	}
}
