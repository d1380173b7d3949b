package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/ownership"
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
	clearSecondVirtual(t)
	two := startSecondTenant(t, caps.Limits{MaxCopies: twoMaxCopies})
	t.Cleanup(func() { removeHostObjectsOf(t, two.config) }) // what the attacks left, before tenant two stops
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

	servicesStayWithinTheirTenant(t, two, cfgOne)

	// The manifests' RBAC reads RuntimeClasses: tenant two's own class runs
	// its pod under the allowed host class of the same handler.
	createRuntimeClass(t, hostClient, allowedRuntimeClass, allowedRuntimeHandler, nil)
	createRuntimeClass(t, two.client, "isolation-sandbox", allowedRuntimeHandler, nil)
	sandboxed := simplePod("default", "isolation-sandboxed")
	sandboxed.Spec.RuntimeClassName = ptr.To("isolation-sandbox")
	if err := two.client.Create(ctx, sandboxed); err != nil {
		t.Fatalf("tenant two's pod of its own RuntimeClass: %v", err)
	}
	sandboxedHost := &corev1.Pod{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfgTwo.HostNamespace, Name: translate.HostName(sandboxed.Name, "default", cfgTwo.VCluster)}, sandboxedHost); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(sandboxedHost.Spec.RuntimeClassName, ""); got != allowedRuntimeClass {
		t.Errorf("tenant two's host pod runs under RuntimeClass %q, want %s", got, allowedRuntimeClass)
	}

	tenantTwoAttacksTenantOne(t, two, pods["one"])

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
		// exec, attach and port-forward only in its own namespace (the
		// kubelet API carries them there), and no pod proxy anywhere.
		{Namespace: "kube-system", Verb: "create", Resource: "pods", Subresource: "exec"},
		{Namespace: "default", Verb: "get", Resource: "pods", Subresource: "log"},
		{Namespace: cfgTwo.HostNamespace, Verb: "create", Resource: "pods", Subresource: "proxy"},
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
// dev host namespace, with caps limits, as the ServiceAccount of the manifests on the host
// and as user "podbridge" in the virtual cluster, each with the manifests'
// RBAC applied for real.
func startSecondTenant(t *testing.T, limits caps.Limits) *secondTenant {
	t.Helper()
	return startSecondTenantWith(t, limits, nil)
}

// startSecondTenantWith is startSecondTenant with configure, when set,
// changing tenant two's translate.Config (its allow-lists) first.
func startSecondTenantWith(t *testing.T, limits caps.Limits, configure func(*translate.Config)) *secondTenant {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	virtual := secondVirtual(t)
	applyRBAC(t, "testdata/host-rbac", hostClient)
	applyRBAC(t, "../../manifests/virtual/base", virtual)

	tc := env.Options.Translate
	tc.VCluster = "tenant-two"
	if configure != nil {
		configure(&tc)
	}
	tc = ownAccount(t, tc)
	hostCfg := rest.CopyConfig(env.Host.Config)
	hostCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + tc.HostNamespace + ":podbridge", Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	virtualCfg := rest.CopyConfig(second.Config)
	virtualCfg.Impersonate = rest.ImpersonationConfig{UserName: "podbridge", Groups: []string{"system:authenticated"}}

	port := freeTestPort(t)
	hook, err := webhook.New(ctx, webhook.Options{
		Host: hostCfg, Virtual: virtualCfg, Translate: tc, PodSecurityLevel: "baseline",
		HostTimeout: 5 * time.Second, BindAddress: "127.0.0.1", Port: port, Limits: limits,
		Certs:              secondClientCerts(t, tc, certs.Options{Mode: certs.ModeSelfManaged, SecretName: "tenant-two-tls", CertDir: t.TempDir(), Hosts: []string{"127.0.0.1"}}),
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Registration: webhook.Registration{Name: "podbridge", URL: "https://127.0.0.1:" + strconv.Itoa(port) + webhook.Path, TimeoutSeconds: 10},
	})
	if err != nil {
		t.Fatalf("starting tenant two's webhook: %v", err)
	}
	refl, err := reflector.NewManager(reflector.Options{
		Host: hostCfg, Virtual: virtualCfg, Translate: tc, OrphanGracePeriod: orphanGrace,
		MaxConcurrentReconciles: 4, LeaderElection: true, Limits: limits, LeaderElectionID: "podbridge-reflector-tenant-two",
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
		if obj.GetKind() == "ServiceAccount" && obj.GetAnnotations()[ownership.Annotation] != "" {
			// The host pods' account is each virtual cluster's own
			// (ownAccount): applied here it would mark the dev one's as
			// the base's placeholder virtual cluster's.
			continue
		}
		err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("isolation-test"), client.ForceOwnership)
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// clearSecondVirtual removes the pods earlier tests left in the second
// virtual cluster, admitted there by podbridges of their own: tenant two's
// reflector would copy what they use and count it against its cap.
func clearSecondVirtual(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	second := secondVirtual(t)
	left := &corev1.PodList{}
	if err := second.List(ctx, left); err != nil {
		t.Fatal(err)
	}
	for i := range left.Items {
		if err := second.Delete(ctx, &left.Items[i], client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			t.Fatalf("removing pod %s/%s an earlier test left: %v", left.Items[i].Namespace, left.Items[i].Name, err)
		}
	}
	eventually(t, 30*time.Second, "earlier tests' pods gone from the second virtual cluster", func(ctx context.Context) (bool, string) {
		if err := second.List(ctx, left); err != nil {
			return false, err.Error()
		}
		return len(left.Items) == 0, fmt.Sprintf("%d pods left", len(left.Items))
	})
}

// twoMaxCopies is tenant two's --max-copies: small, so the test fills it.
const twoMaxCopies = 4

// tenantTwoAttacksTenantOne makes, as tenant two (cluster-admin of its
// virtual cluster), the moves that would reach tenant one through the
// host namespace they share, and reads each outcome on the host. onePod
// is tenant one's running pod.
func tenantTwoAttacksTenantOne(t *testing.T, two *secondTenant, onePod *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	cfgOne, cfgTwo := env.Options.Translate, two.config
	oneHost := &corev1.Pod{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfgOne.HostNamespace, Name: translate.HostName(onePod.Name, onePod.Namespace, cfgOne.VCluster)}, oneHost); err != nil {
		t.Fatal(err)
	}
	twoHostPod := func(ctx context.Context, name string) (*corev1.Pod, error) {
		host := &corev1.Pod{}
		err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfgTwo.HostNamespace, Name: translate.HostName(name, "default", cfgTwo.VCluster)}, host)
		return host, err
	}

	// A pod of tenant two dressed as tenant one's: tenant one's labels,
	// tenant one's host label keys spelled out, and annotations for host
	// features (none allow-listed) next to the allow-listed one.
	hostile := map[string]string{
		"k8s.v1.cni.cncf.io/networks": `[{"name":"host-underlay","namespace":"kube-system"}]`,
		"sidecar.istio.io/inject":     "false",
	}
	mimic := simplePod("default", "isolation-mimic")
	mimic.Labels = map[string]string{}
	maps.Copy(mimic.Labels, onePod.Labels)
	var spelled []string
	for k, v := range oneHost.Labels {
		if translate.IsTenantKey(k) {
			mimic.Labels[k] = v
			spelled = append(spelled, k)
		}
	}
	if len(spelled) == 0 {
		t.Fatalf("tenant one's host pod has no tenant keys to spell out: %v", oneHost.Labels)
	}
	mimic.Annotations = map[string]string{allowedAnnotation: "two"}
	maps.Copy(mimic.Annotations, hostile)
	mimic.Spec.AutomountServiceAccountToken = ptr.To(false)
	if err := two.client.Create(ctx, mimic); err != nil {
		t.Fatalf("tenant two's mimic pod: %v", err)
	}
	mimicHost, err := twoHostPod(ctx, mimic.Name)
	if err != nil {
		t.Fatalf("host pod of tenant two's mimic: %v", err)
	}

	t.Run("labels do not select the other tenant's host pods", func(t *testing.T) {
		// podbridge's own keys, with tenant one's value, are refused.
		for key, value := range map[string]string{translate.LabelVCluster: cfgOne.VCluster, translate.LabelManagedBy: translate.ManagedByValue} {
			pod := simplePod("default", "isolation-claims-vcluster")
			pod.Labels[key] = value
			err := two.client.Create(ctx, pod)
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("pod labelled %s=%s: got %v, want a refusal naming the key", key, value, err)
			}
			if _, err := twoHostPod(ctx, pod.Name); !apierrors.IsNotFound(err) {
				t.Errorf("host pod of the pod labelled %s: %v", key, err)
			}
		}
		// The selector a host operator writes for tenant one's pods: its
		// vcluster label and its translated labels.
		selector := client.MatchingLabels{translate.LabelVCluster: cfgOne.VCluster}
		for k, v := range onePod.Labels {
			selector[translate.TenantKey(k)] = v
		}
		selected := &corev1.PodList{}
		if err := hostClient.List(ctx, selected, client.InNamespace(cfgOne.HostNamespace), selector); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range selected.Items {
			names = append(names, p.Name)
		}
		if !slices.Contains(names, oneHost.Name) {
			t.Errorf("selector %v does not select tenant one's host pod %s: %v", selector, oneHost.Name, names)
		}
		if slices.Contains(names, mimicHost.Name) {
			t.Errorf("selector %v for tenant one's pods selects tenant two's host pod %s", selector, mimicHost.Name)
		}
		if got := mimicHost.Labels[translate.LabelVCluster]; got != cfgTwo.VCluster {
			t.Errorf("tenant two's host pod has %s=%q, want %q", translate.LabelVCluster, got, cfgTwo.VCluster)
		}
		for _, k := range spelled {
			if got, want := mimicHost.Labels[translate.TenantKey(k)], oneHost.Labels[k]; got != want {
				t.Errorf("tenant two's label %s reached the host as %s=%q, want %q", k, translate.TenantKey(k), got, want)
			}
		}
	})

	t.Run("annotations stay off the host", func(t *testing.T) {
		for k := range hostile {
			for _, hostKey := range []string{k, translate.TenantKey(k)} {
				if v, ok := mimicHost.Annotations[hostKey]; ok {
					t.Errorf("tenant two's annotation %s reached the host as %s=%q", k, hostKey, v)
				}
			}
		}
		if got := mimicHost.Annotations[allowedAnnotation]; got != "two" {
			t.Errorf("allow-listed annotation %s = %q on the host, want %q", allowedAnnotation, got, "two")
		}
	})

	t.Run("registration edits stay in their virtual cluster", func(t *testing.T) {
		key := client.ObjectKey{Name: "podbridge"}
		oneReg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := virtualClient.Get(ctx, key, oneReg); err != nil {
			t.Fatal(err)
		}
		original := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := two.client.Get(ctx, key, original); err != nil {
			t.Fatal(err)
		}
		restored := func(what string, attacked func(*admissionregistrationv1.MutatingWebhookConfiguration) bool) {
			t.Helper()
			eventually(t, 30*time.Second, "tenant two's registration restored after its "+what, func(ctx context.Context) (bool, string) {
				cur := &admissionregistrationv1.MutatingWebhookConfiguration{}
				if err := two.client.Get(ctx, key, cur); err != nil {
					return false, err.Error()
				}
				return !attacked(cur) && apiequality.Semantic.DeepEqual(cur.Webhooks, original.Webhooks), fmt.Sprintf("version %s, uid %s", cur.ResourceVersion, cur.UID)
			})
		}
		edited := original.DeepCopy()
		edited.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
		if err := two.client.Update(ctx, edited); err != nil {
			t.Fatalf("tenant two's edit: %v", err)
		}
		restored("edit", func(cur *admissionregistrationv1.MutatingWebhookConfiguration) bool {
			return cur.ResourceVersion == edited.ResourceVersion
		})
		if err := two.client.Delete(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: key.Name}}); err != nil {
			t.Fatalf("tenant two's delete: %v", err)
		}
		restored("delete", func(cur *admissionregistrationv1.MutatingWebhookConfiguration) bool { return cur.UID == original.UID })
		probe := simplePod("default", "isolation-after-restore")
		if err := two.client.Create(ctx, probe, client.DryRunAll); err != nil || probe.Annotations[translate.AnnotationSyncID] == "" {
			t.Errorf("tenant two's pod after the restores did not go through podbridge: %v, annotations %v", err, probe.Annotations)
		}
		after := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := virtualClient.Get(ctx, key, after); err != nil {
			t.Fatalf("tenant one's registration after tenant two's attacks: %v", err)
		}
		if after.UID != oneReg.UID || after.ResourceVersion != oneReg.ResourceVersion {
			t.Errorf("tenant one's registration changed across tenant two's edit and delete: uid %s→%s, version %s→%s", oneReg.UID, after.UID, oneReg.ResourceVersion, after.ResourceVersion)
		}
	})

	t.Run("copy caps are per virtual cluster", func(t *testing.T) {
		copiesOf := func(vcluster string) int {
			t.Helper()
			ours := client.MatchingLabels{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: vcluster}
			n := 0
			for _, list := range []client.ObjectList{&metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMapList"}}, &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "SecretList"}}} {
				if err := hostClient.List(ctx, list, client.InNamespace(cfgTwo.HostNamespace), ours); err != nil {
					t.Fatal(err)
				}
				for _, item := range list.(*metav1.PartialObjectMetadataList).Items {
					if !translate.IsTokenSecret(&item) && item.Annotations[translate.AnnotationName] != "" {
						n++
					}
				}
			}
			return n
		}
		inUse := copiesOf(cfgTwo.VCluster)
		if inUse >= twoMaxCopies {
			t.Fatalf("tenant two has %d copies before filling its cap of %d", inUse, twoMaxCopies)
		}
		// Tenant one's copies share the namespace; they must not count.
		if n := copiesOf(cfgOne.VCluster); n == 0 {
			t.Fatal("tenant one has no copies in the shared namespace: nothing would show they are not counted")
		}
		newConfigMap := func(c client.Client, name string) {
			t.Helper()
			if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string]string{"k": "v"}}); err != nil {
				t.Fatal(err)
			}
		}
		podReading := func(name string, configMaps ...string) *corev1.Pod {
			pod := simplePod("default", name)
			pod.Spec.AutomountServiceAccountToken = ptr.To(false)
			for _, cm := range configMaps {
				pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: cm, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}})
			}
			return pod
		}
		var fill []string
		for i := range twoMaxCopies - inUse {
			fill = append(fill, "isolation-fill-"+itoa(i))
			newConfigMap(two.client, fill[i])
		}
		if err := two.client.Create(ctx, podReading("isolation-fill", fill...)); err != nil {
			t.Fatalf("tenant two's pod filling its cap: %v", err)
		}
		newConfigMap(two.client, "isolation-past-cap")
		past := podReading("isolation-past-cap", "isolation-past-cap")
		err := two.client.Create(ctx, past)
		for _, want := range []string{"--max-copies", fmt.Sprintf("limit of %d host copies", twoMaxCopies), fmt.Sprintf("%d in use", twoMaxCopies)} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("tenant two's pod past its cap: got %v, want a refusal saying %q", err, want)
			}
		}
		if _, err := twoHostPod(ctx, past.Name); !apierrors.IsNotFound(err) {
			t.Errorf("host pod of tenant two's refused pod: %v", err)
		}
		// Tenant one, beside a full tenant two, still gets a new copy.
		newConfigMap(virtualClient, "isolation-beside-full")
		beside := podReading("isolation-beside-full", "isolation-beside-full")
		if err := virtualClient.Create(ctx, beside); err != nil {
			t.Fatalf("tenant one's pod needing a copy while tenant two is at its cap: %v", err)
		}
		t.Cleanup(func() {
			if err := virtualClient.Delete(context.Background(), beside); client.IgnoreNotFound(err) != nil {
				t.Errorf("deleting %s: %v", beside.Name, err)
			}
		})
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfgOne.HostNamespace, Name: translate.HostName("isolation-beside-full", "default", cfgOne.VCluster)}, &corev1.ConfigMap{}); err != nil {
			t.Errorf("tenant one's host copy beside a full tenant two: %v", err)
		}
	})
}
