package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// Host copies follow their virtual originals: updates reach them, a
// deleted original takes its copy along, an original created after the pod
// is copied then, and a copy no pod uses any more is removed.
func TestCopiesFollowOriginalsAndGoWhenUnused(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns}, Data: map[string]string{"level": "debug"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, StringData: map[string]string{"password": "one"}}
	for _, obj := range []client.Object{cm, secret} {
		if err := virtualClient.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	pod := simplePod(ns, "reader")
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
		{Name: "late", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "late"}, Optional: ptr.To(true)}}},
	}
	pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitReady(t, pod)
	hostCM := client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName("settings", ns, cfg.VCluster)}
	hostSecret := client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName("creds", ns, cfg.VCluster)}
	hostLate := client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName("late", ns, cfg.VCluster)}

	cm.Data["level"] = "info"
	if err := virtualClient.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "host ConfigMap copy carries the update", func(ctx context.Context) (bool, string) {
		got := &corev1.ConfigMap{}
		if err := hostClient.Get(ctx, hostCM, got); err != nil {
			return false, err.Error()
		}
		return got.Data["level"] == "info", fmt.Sprintf("data %v", got.Data)
	})

	late := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns}, Data: map[string]string{"k": "v"}}
	if err := virtualClient.Create(ctx, late); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "host copy of a ConfigMap created after the pod", func(ctx context.Context) (bool, string) {
		got := &corev1.ConfigMap{}
		err := hostClient.Get(ctx, hostLate, got)
		return err == nil && got.Data["k"] == "v", fmt.Sprintf("err %v, data %v", err, got.Data)
	})

	if err := virtualClient.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hostSecret.Name, Namespace: hostSecret.Namespace}}, 15*time.Second)

	if err := virtualClient.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	for _, key := range []client.ObjectKey{hostCM, hostLate} {
		// The orphan grace period, then the copy goes.
		waitGone(t, hostClient, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}, orphanGrace+20*time.Second)
	}
	// The originals stay in the virtual cluster.
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); err != nil {
		t.Errorf("virtual ConfigMap: %v", err)
	}
}

// A pod's projected token is bound to the virtual pod once it exists (the
// virtual apiserver says so in the token's claims), is refreshed when due,
// and its Secret is deleted with the pod.
func TestTokenBoundRefreshedAndDeletedWithPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate
	pod := simplePod(ns, "token-user")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitReady(t, pod)
	deps := translate.PodDependencies(pod, cfg)
	if len(deps.Tokens) != 1 {
		t.Fatalf("pod has %d tokens, want the one of kube-api-access", len(deps.Tokens))
	}
	key := client.ObjectKey{Namespace: cfg.HostNamespace, Name: deps.Tokens[0].HostSecret}

	var bound *corev1.Secret
	eventually(t, 15*time.Second, "token Secret bound to the virtual pod", func(ctx context.Context) (bool, string) {
		bound = &corev1.Secret{}
		if err := hostClient.Get(ctx, key, bound); err != nil {
			return false, err.Error()
		}
		got := bound.Annotations[translate.AnnotationTokenBoundUID]
		return got == string(pod.UID), "bound to " + got
	})
	user := tokenUser(t, bound)
	if got := user.Extra["authentication.kubernetes.io/pod-uid"]; len(got) != 1 || got[0] != string(pod.UID) {
		t.Errorf("token's pod-uid claim %v, want %s", got, pod.UID)
	}
	if want := "system:serviceaccount:" + ns + ":default"; user.Username != want {
		t.Errorf("token authenticates as %q, want %q", user.Username, want)
	}

	// Make the token due now; the reflector replaces it.
	due := bound.DeepCopy()
	due.Annotations[translate.AnnotationTokenRefreshAt] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if err := hostClient.Update(ctx, due); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "token refreshed", func(ctx context.Context) (bool, string) {
		got := &corev1.Secret{}
		if err := hostClient.Get(ctx, key, got); err != nil {
			return false, err.Error()
		}
		refreshAt, err := time.Parse(time.RFC3339, got.Annotations[translate.AnnotationTokenRefreshAt])
		fresh := err == nil && refreshAt.After(time.Now()) && string(got.Data[translate.TokenKey]) != string(bound.Data[translate.TokenKey])
		return fresh, "refresh at " + got.Annotations[translate.AnnotationTokenRefreshAt]
	})

	if err := virtualClient.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}, orphanGrace+20*time.Second)
	// A bound token dies with its pod: the virtual apiserver refuses it
	// once its authentication cache (10 s for successes) has let it go.
	eventually(t, 30*time.Second, "token of the deleted pod refused", func(ctx context.Context) (bool, string) {
		_, err := reviewToken(ctx, bound)
		return apierrors.IsUnauthorized(err), fmt.Sprint(err)
	})
}

func tokenUser(t *testing.T, s *corev1.Secret) authenticationv1.UserInfo {
	t.Helper()
	review, err := reviewToken(context.Background(), s)
	if err != nil {
		t.Fatalf("the token does not authenticate against the virtual apiserver: %v", err)
	}
	return review.Status.UserInfo
}

// reviewToken asks the virtual apiserver who the token in s is.
func reviewToken(ctx context.Context, s *corev1.Secret) (*authenticationv1.SelfSubjectReview, error) {
	cfg := rest.AnonymousClientConfig(env.Virtual.Config)
	cfg.BearerToken = string(s.Data[translate.TokenKey])
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, err
	}
	review := &authenticationv1.SelfSubjectReview{}
	return review, c.Create(ctx, review)
}

// The pods that keep a copy are those using an object of its kind: a
// Secret's copy goes once no pod uses the Secret, though a pod still uses
// a ConfigMap of the same name (the two kinds share one index of users).
func TestCopyOfOneKindIsNotKeptByAnotherKindOfTheSameName(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cfg := env.Options.Translate
	for _, obj := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "same", Namespace: ns}, Data: map[string]string{"k": "v"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "same", Namespace: ns}, StringData: map[string]string{"k": "v"}},
	} {
		if err := virtualClient.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	configReader, secretReader := simplePod(ns, "config-reader"), simplePod(ns, "secret-reader")
	configReader.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "same"}}}}
	secretReader.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "same"}}}}
	for _, pod := range []*corev1.Pod{configReader, secretReader} {
		if err := virtualClient.Create(ctx, pod); err != nil {
			t.Fatalf("creating pod: %v", err)
		}
		waitReady(t, pod)
	}
	host := client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName("same", ns, cfg.VCluster)}
	for _, obj := range []client.Object{&corev1.ConfigMap{}, &corev1.Secret{}} {
		if err := hostClient.Get(ctx, host, obj); err != nil {
			t.Fatalf("host copy %T of %s: %v", obj, host.Name, err)
		}
	}

	if err := virtualClient.Delete(ctx, secretReader); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: host.Name, Namespace: host.Namespace}}, orphanGrace+20*time.Second)
	if err := hostClient.Get(ctx, host, &corev1.ConfigMap{}); err != nil {
		t.Errorf("the ConfigMap's copy, still in use: %v", err)
	}
}
