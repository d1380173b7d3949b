package integration

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/render"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

// Two virtual clusters share one host namespace. The second tenant's
// podbridge runs with exactly the RBAC of the manifests (host Role and node
// ClusterRole, virtual ClusterRole), so they are proved sufficient; and
// neither tenant's pods, copies or status reach the other.
func TestTwoTenantsShareAHostNamespace(t *testing.T) {
	ctx := context.Background()
	two := startSecondTenant(t)
	one := virtualClient
	cfgOne, cfgTwo := env.Options.Translate, two.config

	pods := map[string]*corev1.Pod{}
	for name, c := range map[string]client.Client{"one": one, "two": two.client} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "isolation-settings", Namespace: "default"}, Data: map[string]string{"owner": name}}
		if err := c.Create(ctx, cm); err != nil {
			t.Fatalf("tenant %s ConfigMap: %v", name, err)
		}
		pod := simplePod("default", "isolation-web")
		pod.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}}}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatalf("tenant %s pod: %v", name, err)
		}
		pods[name] = pod
	}
	for name, tc := range map[string]translate.Config{"one": cfgOne, "two": cfgTwo} {
		copyOf := &corev1.ConfigMap{}
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostName("isolation-settings", "default", tc.VCluster)}, copyOf); err != nil {
			t.Fatalf("tenant %s host copy: %v", name, err)
		}
		if copyOf.Data["owner"] != name {
			t.Errorf("tenant %s's host copy holds %q's data", name, copyOf.Data["owner"])
		}
	}
	// Each virtual pod carries its own host pod's status.
	for name, c := range map[string]client.Client{"one": one, "two": two.client} {
		tc := map[string]translate.Config{"one": cfgOne, "two": cfgTwo}[name]
		pod := pods[name]
		eventually(t, 30*time.Second, "tenant "+name+" pod Ready", func(ctx context.Context) (bool, string) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return false, err.Error()
			}
			return isReady(pod) && pod.Status.PodIP != "", fmt.Sprintf("ready=%v ip=%q", isReady(pod), pod.Status.PodIP)
		})
		host := &corev1.Pod{}
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostName(pod.Name, "default", tc.VCluster)}, host); err != nil {
			t.Fatal(err)
		}
		if host.Status.PodIP != pod.Status.PodIP || host.Annotations[translate.AnnotationSyncID] != pod.Annotations[translate.AnnotationSyncID] {
			t.Errorf("tenant %s's pod shows %s, its host pod %s", name, pod.Status.PodIP, host.Status.PodIP)
		}
	}

	// Tenant one's reflector collects its own orphans and nobody else's:
	// once a planted orphan of tenant one is gone, tenant two's pod stands.
	planted, _, errs := translate.HostPod(simplePod("default", "isolation-orphan"), cfgOne, "planted")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := hostClient.Create(ctx, planted); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, planted, 60*time.Second)
	twoHost := &corev1.Pod{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfgTwo.HostNamespace, Name: translate.HostName("isolation-web", "default", cfgTwo.VCluster)}, twoHost); err != nil {
		t.Errorf("tenant two's host pod after tenant one's orphan pass: %v", err)
	}

	// Deleting tenant two's pod removes its pair only.
	if err := two.client.Delete(ctx, pods["two"]); err != nil {
		t.Fatal(err)
	}
	waitGone(t, two.client, pods["two"], 30*time.Second)
	waitGone(t, hostClient, twoHost, 30*time.Second)
	if err := one.Get(ctx, client.ObjectKeyFromObject(pods["one"]), &corev1.Pod{}); err != nil {
		t.Errorf("tenant one's pod after tenant two's deletion: %v", err)
	}

	// The manifests' host identity reaches nothing outside its namespace.
	for _, attr := range []authorizationv1.ResourceAttributes{
		{Namespace: "kube-system", Verb: "list", Resource: "pods"},
		{Namespace: "default", Verb: "get", Resource: "secrets"},
		{Verb: "update", Resource: "nodes"},
		{Namespace: cfgTwo.HostNamespace, Verb: "create", Resource: "pods", Subresource: "exec"},
		{Namespace: cfgTwo.HostNamespace, Verb: "create", Resource: "rolebindings", Group: "rbac.authorization.k8s.io"},
	} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr}}
		if err := two.host.Create(ctx, review); err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Errorf("podbridge's host identity may %s %s/%s in %q", attr.Verb, attr.Resource, attr.Subresource, attr.Namespace)
		}
	}
}

type secondTenant struct {
	config translate.Config
	client client.Client // the tenant, an administrator of its virtual cluster
	host   client.Client // podbridge's identity on the host
}

// startSecondTenant runs podbridge for the second virtual cluster in the
// dev host namespace, as the ServiceAccount of the manifests on the host
// and as user "podbridge" in the virtual cluster, each with the manifests'
// RBAC applied for real.
func startSecondTenant(t *testing.T) *secondTenant {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	virtual := secondVirtual(t)
	applyRBAC(t, "testdata/host-rbac", hostClient)
	applyRBAC(t, "../../manifests/virtual/base", virtual)

	tc := env.Options.Translate
	tc.VCluster = "tenant-two"
	hostCfg := rest.CopyConfig(env.Host.Config)
	hostCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + tc.HostNamespace + ":podbridge", Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	virtualCfg := rest.CopyConfig(second.Config)
	virtualCfg.Impersonate = rest.ImpersonationConfig{UserName: "podbridge", Groups: []string{"system:authenticated"}}

	port := freeTestPort(t)
	hook, err := webhook.New(ctx, webhook.Options{
		Host: hostCfg, Virtual: virtualCfg, Translate: tc, PodSecurityLevel: "baseline",
		HostTimeout: 5 * time.Second, BindAddress: "127.0.0.1", Port: port,
		Certs:              certs.Options{Mode: certs.ModeSelfManaged, SecretName: "tenant-two-tls", CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"}},
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Registration: webhook.Registration{Name: "podbridge", URL: "https://127.0.0.1:" + strconv.Itoa(port) + webhook.Path, TimeoutSeconds: 10},
	})
	if err != nil {
		t.Fatalf("starting tenant two's webhook: %v", err)
	}
	refl, err := reflector.NewManager(reflector.Options{
		Host: hostCfg, Virtual: virtualCfg, Translate: tc, OrphanGracePeriod: orphanGrace,
		MaxConcurrentReconciles: 4, LeaderElection: true, LeaderElectionID: "podbridge-reflector-tenant-two",
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", SkipControllerNameValidation: true,
	})
	if err != nil {
		t.Fatalf("starting tenant two's reflector: %v", err)
	}
	done := make(chan error, 2)
	for _, mgr := range []manager.Manager{hook, refl} {
		go func() { done <- mgr.Start(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("tenant two's podbridge: %v", err)
			}
		}
		// With its webhook gone, the registration (failurePolicy: Fail)
		// would refuse every pod of the second virtual cluster.
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "podbridge"}}
		if err := virtual.Delete(context.Background(), reg); err != nil {
			t.Errorf("removing tenant two's registration: %v", err)
		}
	})
	hostAsPodbridge, err := client.New(hostCfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "tenant two's webhook to answer", func(ctx context.Context) (bool, string) {
		pod := simplePod("default", "probe")
		err := virtual.Create(ctx, pod, client.DryRunAll)
		return err == nil && pod.Annotations[translate.AnnotationSyncID] != "", fmt.Sprint(err)
	})
	return &secondTenant{config: tc, client: virtual, host: hostAsPodbridge}
}

// applyRBAC applies the ServiceAccounts and RBAC objects of a kustomization.
func applyRBAC(t *testing.T, dir string, c client.Client) {
	t.Helper()
	objects, err := render.Kustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objects {
		switch obj.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
		default:
			continue
		}
		err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("isolation-test"), client.ForceOwnership)
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}
