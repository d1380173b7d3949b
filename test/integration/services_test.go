package integration

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

func simpleService(namespace, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func hostServiceKey(tc translate.Config, virtual *corev1.Service) client.ObjectKey {
	return client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostServiceName(virtual.Name, virtual.Namespace, tc.VCluster)}
}

// getHostService reads virtual's host Service in the dev virtual cluster.
func getHostService(t *testing.T, virtual *corev1.Service) *corev1.Service {
	t.Helper()
	host := &corev1.Service{}
	if err := hostClient.Get(context.Background(), hostServiceKey(env.Options.Translate, virtual), host); err != nil {
		t.Fatalf("host Service of %s/%s: %v", virtual.Namespace, virtual.Name, err)
	}
	return host
}

// selectedHostPods lists, by the host apiserver's own label selection, the
// host namespace's pods a host Service's selector selects.
func selectedHostPods(t *testing.T, host *corev1.Service) []string {
	t.Helper()
	if len(host.Spec.Selector) == 0 {
		return nil
	}
	pods := &corev1.PodList{}
	if err := hostClient.List(context.Background(), pods, client.InNamespace(host.Namespace), client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(host.Spec.Selector)}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names
}

// A Service create makes its host Service inside the request: it exists
// when the create returns, holds the ClusterIP the virtual Service got,
// selects the tenant's host pods of that namespace only, and carries no
// tenant annotation. Updates reach the host Service before the update
// returns; deletion removes it.
func TestServiceCreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "web")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	other := simplePod(ns, "db")
	if err := virtualClient.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	svc := simpleService(ns, "web", map[string]string{"app": "web"})
	svc.Labels = map[string]string{"tier": "front"}
	svc.Annotations = map[string]string{"service.beta.kubernetes.io/aws-load-balancer-internal": "false"}
	start := time.Now()
	if err := virtualClient.Create(ctx, svc); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("Service create through podbridge took %s", time.Since(start))
	host := getHostService(t, svc)

	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP != host.Spec.ClusterIP || !slices.Equal(svc.Spec.ClusterIPs, host.Spec.ClusterIPs) {
		t.Errorf("virtual ClusterIPs %q %v, host %q %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs, host.Spec.ClusterIP, host.Spec.ClusterIPs)
	}
	_, serviceRange, _ := net.ParseCIDR(controlplane.ServiceClusterIPRange)
	if ip := net.ParseIP(svc.Spec.ClusterIP); ip == nil || !serviceRange.Contains(ip) {
		t.Errorf("ClusterIP %q outside %s", svc.Spec.ClusterIP, controlplane.ServiceClusterIPRange)
	}
	if got, want := selectedHostPods(t, host), []string{hostKey(pod).Name}; !slices.Equal(got, want) {
		t.Errorf("host selector %v selects %v, want %v", host.Spec.Selector, got, want)
	}
	if host.Labels[translate.TenantKey("tier")] != "front" || host.Labels["tier"] != "" {
		t.Errorf("host labels %v", host.Labels)
	}
	for k := range host.Annotations {
		if !translate.IsReserved(k) {
			t.Errorf("tenant annotation %q on the host Service", k)
		}
	}
	if svc.Annotations[translate.AnnotationSyncID] == "" || svc.Annotations[translate.AnnotationSyncID] != host.Annotations[translate.AnnotationSyncID] {
		t.Errorf("sync IDs: virtual %q, host %q", svc.Annotations[translate.AnnotationSyncID], host.Annotations[translate.AnnotationSyncID])
	}

	// The update is on the host when it returns.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		svc.Spec.Selector = map[string]string{"app": "db"}
		svc.Spec.Ports = []corev1.ServicePort{{Name: "sql", Port: 5432, TargetPort: intstr.FromString("sql"), Protocol: corev1.ProtocolTCP}}
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		svc.Spec.PublishNotReadyAddresses = true
		return virtualClient.Update(ctx, svc)
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	host = getHostService(t, svc)
	if host.Spec.Ports[0].Port != 5432 || host.Spec.Ports[0].TargetPort.StrVal != "sql" || host.Spec.SessionAffinity != corev1.ServiceAffinityClientIP ||
		!host.Spec.PublishNotReadyAddresses || host.Spec.ClusterIP != svc.Spec.ClusterIP {
		t.Errorf("host Service after the update: %+v", host.Spec)
	}
	if got, want := selectedHostPods(t, host), []string{hostKey(other).Name}; !slices.Equal(got, want) {
		t.Errorf("updated host selector %v selects %v, want %v", host.Spec.Selector, got, want)
	}

	// kubectl replace of the tenant's manifest (no podbridge annotations,
	// no addresses) is carried too, and podbridge's keys are put back.
	replaced := simpleService(ns, "web", map[string]string{"app": "db"})
	replaced.ResourceVersion = svc.ResourceVersion
	replaced.Spec.Ports = []corev1.ServicePort{{Name: "sql", Port: 5433, TargetPort: intstr.FromString("sql"), Protocol: corev1.ProtocolTCP}}
	if err := virtualClient.Update(ctx, replaced); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if replaced.Annotations[translate.AnnotationSyncID] != svc.Annotations[translate.AnnotationSyncID] || replaced.Spec.ClusterIP != svc.Spec.ClusterIP {
		t.Errorf("after replace: annotations %v, ClusterIP %s", replaced.Annotations, replaced.Spec.ClusterIP)
	}
	if host := getHostService(t, svc); host.Spec.Ports[0].Port != 5433 || host.Spec.SessionAffinity != corev1.ServiceAffinityNone {
		t.Errorf("host Service after replace: %+v", host.Spec)
	}
	svc = replaced

	// podbridge check finds the pair whole, against the real apiservers.
	violations, err := check.RunServices(ctx, hostClient, virtualClient, check.Options{Config: env.Options.Translate, OrphanGracePeriod: orphanGrace, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		if strings.HasPrefix(v.Virtual, ns+"/") {
			t.Errorf("podbridge check: %v", v)
		}
	}

	// A dry-run update writes nothing.
	dry := svc.DeepCopy()
	dry.Spec.Ports[0].Port = 9999
	if err := virtualClient.Update(ctx, dry, client.DryRunAll); err != nil {
		t.Fatalf("dry-run update: %v", err)
	}
	if getHostService(t, svc).Spec.Ports[0].Port != 5433 {
		t.Error("a dry-run update reached the host Service")
	}

	if err := virtualClient.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, host, 30*time.Second)

	// Create latency through podbridge against a direct host create, in
	// this run (a figure for issue 22; each Service still checked).
	var through, direct []time.Duration
	for i := range 5 {
		s := simpleService(ns, "timed-"+itoa(i), map[string]string{"app": "web"})
		start := time.Now()
		if err := virtualClient.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		through = append(through, time.Since(start))
		if h := getHostService(t, s); h.Spec.ClusterIP != s.Spec.ClusterIP {
			t.Errorf("%s: virtual %s, host %s", s.Name, s.Spec.ClusterIP, h.Spec.ClusterIP)
		}
		d := simpleService(env.Options.Translate.HostNamespace, "direct-"+ns+"-"+itoa(i), nil)
		start = time.Now()
		if err := hostClient.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		direct = append(direct, time.Since(start))
		if err := hostClient.Delete(ctx, d); err != nil {
			t.Error(err)
		}
	}
	slices.Sort(through)
	slices.Sort(direct)
	t.Logf("Service create median: through podbridge %s, direct on the host %s (ratio %.1f)", through[2], direct[2], float64(through[2])/float64(direct[2]))
}

// Headless Services are headless on the host; ExternalName Services have
// no host object; a dry-run create leaves nothing behind.
func TestServiceKinds(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	headless := simpleService(ns, "peers", map[string]string{"app": "peers"})
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	if err := virtualClient.Create(ctx, headless); err != nil {
		t.Fatal(err)
	}
	if host := getHostService(t, headless); host.Spec.ClusterIP != corev1.ClusterIPNone || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("headless: virtual %q, host %q", headless.Spec.ClusterIP, host.Spec.ClusterIP)
	}

	external := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"},
	}
	if err := virtualClient.Create(ctx, external); err != nil {
		t.Fatal(err)
	}
	if external.Annotations[translate.AnnotationSyncID] == "" {
		t.Error("ExternalName Service not admitted by podbridge")
	}
	if err := hostClient.Get(ctx, hostServiceKey(env.Options.Translate, external), &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("host object of an ExternalName Service: %v", err)
	}

	// ExternalName to ClusterIP makes the host Service inside the update;
	// back, the reflector deletes it once the change is stored.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(external), external); err != nil {
			return err
		}
		external.Spec.Type, external.Spec.ExternalName = corev1.ServiceTypeClusterIP, ""
		external.Spec.Selector = map[string]string{"app": "db"}
		external.Spec.Ports = []corev1.ServicePort{{Port: 5432, Protocol: corev1.ProtocolTCP}}
		return virtualClient.Update(ctx, external)
	})
	if err != nil {
		t.Fatalf("ExternalName to ClusterIP: %v", err)
	}
	host := &corev1.Service{}
	if err := hostClient.Get(ctx, hostServiceKey(env.Options.Translate, external), host); err != nil || host.Spec.ClusterIP != external.Spec.ClusterIP || host.Spec.ClusterIP == "" {
		t.Errorf("host Service after ExternalName to ClusterIP: %v, virtual %q, host %q", err, external.Spec.ClusterIP, host.Spec.ClusterIP)
	}
	external.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}
	if err := virtualClient.Update(ctx, external); err != nil {
		t.Fatalf("ClusterIP to ExternalName: %v", err)
	}
	waitGone(t, hostClient, host, 30*time.Second)

	dry := simpleService(ns, "dry", map[string]string{"app": "dry"})
	if err := virtualClient.Create(ctx, dry, client.DryRunAll); err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	if dry.Spec.ClusterIP == "" {
		t.Error("dry-run create shows no ClusterIP")
	}
	if err := hostClient.Get(ctx, hostServiceKey(env.Options.Translate, dry), &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("host Service of a dry-run create: %v", err)
	}
}

// A host Service no virtual Service claims (its create was refused after
// podbridge's admission) is collected after the grace period; a host
// Service deleted on the host takes its virtual Service with it.
func TestServiceOrphansAndHostDeletion(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	planted, errs := translate.HostService(simpleService(ns, "never-stored", map[string]string{"app": "x"}), env.Options.Translate, "planted")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := hostClient.Create(ctx, planted); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, planted, 60*time.Second)

	svc := simpleService(ns, "web", map[string]string{"app": "web"})
	if err := virtualClient.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	host := getHostService(t, svc)
	if err := hostClient.Delete(ctx, host); err != nil {
		t.Fatal(err)
	}
	waitGone(t, virtualClient, svc, 30*time.Second)
}

// Every hostile field is refused at create, naming the field (and the
// platform flag for the types it allows), and nothing reaches the host.
func TestServiceAttacksRefused(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name   string
		change func(*corev1.Service)
		want   []string
	}{
		{"externalIPs (CVE-2020-8554)", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.1"} }, []string{"spec.externalIPs[0]"}},
		{"NodePort not allowed", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }, []string{"spec.type", "--allowed-service-types"}},
		{"LoadBalancer not allowed", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }, []string{"spec.type", "--allowed-service-types"}},
		{"a host address of the tenant's choosing", func(s *corev1.Service) { s.Spec.ClusterIP = "10.0.0.200" }, []string{"spec.clusterIP"}},
		{"loadBalancerIP", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.LoadBalancerIP = corev1.ServiceTypeLoadBalancer, "203.0.113.9"
		}, []string{"spec.loadBalancerIP"}},
		{"loadBalancerClass", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.LoadBalancerClass = corev1.ServiceTypeLoadBalancer, ptr.To("internal.example.com/lb")
		}, []string{"spec.loadBalancerClass"}},
		{"podbridge's label", func(s *corev1.Service) { s.Labels = map[string]string{translate.LabelVCluster: "other"} }, []string{"metadata.labels"}},
		{"a forged sync ID", func(s *corev1.Service) { s.Annotations = map[string]string{translate.AnnotationSyncID: "forged"} }, []string{translate.AnnotationSyncID}},
		{"a forged sync ID on an ExternalName Service", func(s *corev1.Service) {
			s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}
			s.Annotations = map[string]string{translate.AnnotationSyncID: "forged"}
		}, []string{translate.AnnotationSyncID}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := simpleService(ns, "attack-"+itoa(i), map[string]string{"app": "web"})
			tc.change(svc)
			err := virtualClient.Create(context.Background(), svc)
			if err == nil {
				t.Fatal("admitted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q: %v", w, err)
				}
			}
			if err := hostClient.Get(context.Background(), hostServiceKey(env.Options.Translate, svc), &corev1.Service{}); !apierrors.IsNotFound(err) {
				t.Errorf("host Service after the refusal: %v", err)
			}
		})
	}

	// An update that adds a hostile field is refused too, and the host
	// Service stays as it was.
	svc := simpleService(ns, "updated", map[string]string{"app": "web"})
	if err := virtualClient.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	svc.Spec.ExternalIPs = []string{"203.0.113.1"}
	if err := virtualClient.Update(context.Background(), svc); err == nil || !strings.Contains(err.Error(), "spec.externalIPs") {
		t.Errorf("update adding externalIPs: %v", err)
	}
	if host := getHostService(t, svc); len(host.Spec.ExternalIPs) > 0 {
		t.Errorf("host Service took externalIPs %v", host.Spec.ExternalIPs)
	}
}

// A tenant Service whose selector mimics podbridge's own labels, another
// virtual cluster's pods or podbridge's own pods selects none of them on
// the host: the host selector is the tenant's keys, translated, plus this
// virtual cluster's and namespace's scoping keys. The pods are made
// directly on the host as another tenant's podbridge and the platform
// would make them, in the shared host namespace.
func TestServiceSelectorsStayInTheirTenant(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	tc := env.Options.Translate
	otherTenant := tc
	otherTenant.VCluster = "selector-mimic-other"
	foreign, _, errs := translate.HostPod(simplePod(ns, "web"), otherTenant, "foreign")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// One of podbridge's own pods, labelled as the manifests label them.
	own := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "podbridge-webhook-mimicked", Namespace: tc.HostNamespace, Labels: map[string]string{
			"app.kubernetes.io/component": "webhook", "app.kubernetes.io/instance": "podbridge", "app": "web",
		}},
		Spec: corev1.PodSpec{
			Containers:         []corev1.Container{{Name: "c", Image: "podbridge"}},
			NodeSelector:       map[string]string{"no-node": "has-this"},
			ServiceAccountName: tc.HostServiceAccount, AutomountServiceAccountToken: ptr.To(false),
		},
	}
	for _, p := range []*corev1.Pod{foreign, own} {
		if err := hostClient.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hostClient.Delete(context.Background(), p, client.GracePeriodSeconds(0)) })
	}
	mine := simplePod(ns, "web")
	if err := virtualClient.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}

	for i, selector := range []map[string]string{
		{"app": "web"},
		{translate.LabelVCluster: otherTenant.VCluster, translate.LabelNamespace: ns, translate.LabelManagedBy: translate.ManagedByValue},
		{translate.TenantKey("app"): "web"},
		{translate.TenantKey("app"): "web", translate.LabelVCluster: otherTenant.VCluster},
		{"app.kubernetes.io/component": "webhook", "app.kubernetes.io/instance": "podbridge"},
	} {
		svc := simpleService(ns, "mimic-"+itoa(i), selector)
		if err := virtualClient.Create(ctx, svc); err != nil {
			t.Fatalf("selector %v: %v", selector, err)
		}
		host := getHostService(t, svc)
		for _, name := range selectedHostPods(t, host) {
			if name != hostKey(mine).Name {
				t.Errorf("selector %v became %v on the host and selects host pod %s", selector, host.Spec.Selector, name)
			}
		}
	}
}

// servicesStayWithinTheirTenant is TestTwoTenantsShareAHostNamespace's
// Service part: both tenants, one host namespace, one pod of the same name
// and labels each, one Service of the same name and selector each (tenant
// two's podbridge runs with the manifests' RBAC): each host Service
// selects its own tenant's host pod only.
func servicesStayWithinTheirTenant(t *testing.T, two *secondTenant, cfgOne translate.Config) {
	t.Helper()
	ctx := context.Background()
	for name, side := range map[string]struct {
		c  client.Client
		tc translate.Config
	}{"one": {virtualClient, cfgOne}, "two": {two.client, two.config}} {
		svc := simpleService("default", "isolation-web", map[string]string{"app": "isolation-web"})
		if err := side.c.Create(ctx, svc); err != nil {
			t.Fatalf("tenant %s Service: %v", name, err)
		}
		host := &corev1.Service{}
		if err := hostClient.Get(ctx, hostServiceKey(side.tc, svc), host); err != nil {
			t.Fatalf("tenant %s host Service: %v", name, err)
		}
		removeServiceWhileItsPodbridgeRuns(t, side.c, svc, host)
		if host.Spec.ClusterIP != svc.Spec.ClusterIP {
			t.Errorf("tenant %s: virtual ClusterIP %s, host %s", name, svc.Spec.ClusterIP, host.Spec.ClusterIP)
		}
		want := []string{translate.HostName("isolation-web", "default", side.tc.VCluster)}
		if got := selectedHostPods(t, host); !slices.Equal(got, want) {
			t.Errorf("tenant %s's host Service selects %v, want %v", name, got, want)
		}
	}
	// The manifests' host RBAC grants no more on Services than that.
	for _, attr := range []authorizationv1.ResourceAttributes{
		{Namespace: two.config.HostNamespace, Verb: "patch", Resource: "services"},
		{Namespace: two.config.HostNamespace, Verb: "update", Resource: "services", Subresource: "status"},
		{Namespace: two.config.HostNamespace, Verb: "deletecollection", Resource: "services"},
		{Namespace: "kube-system", Verb: "create", Resource: "services"},
		{Namespace: "default", Verb: "get", Resource: "services"},
	} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr}}
		if err := two.host.Create(ctx, review); err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Errorf("podbridge's host identity may %s services/%s in %q", attr.Verb, attr.Subresource, attr.Namespace)
		}
	}
}

// The tenant deletes podbridge's registration and creates Services while
// it is away (the registration keeper restores it within moments): such a
// Service is stored with the virtual apiserver's own ClusterIP and no host
// Service, and podbridge writes nothing for it, then or later, whatever it
// holds (externalIPs, NodePort): the reflector only warns. A Service
// podbridge admitted and the tenant changes while the registration is away
// is carried by the reflector through the gate: a hostile change is
// refused (the host Service keeps what it had), a selector stays scoped.
func TestServiceWebhookRegistrationDeleted(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	admitted := simpleService(ns, "admitted", map[string]string{"app": "web"})
	if err := virtualClient.Create(ctx, admitted); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Name: "podbridge"}

	// Create until one Service is stored without podbridge.
	var slipped *corev1.Service
	var stored []string
	eventually(t, 60*time.Second, "a Service stored while the registration is away", func(ctx context.Context) (bool, string) {
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: key.Name}}
		if err := virtualClient.Delete(ctx, reg); client.IgnoreNotFound(err) != nil {
			return false, err.Error()
		}
		svc := simpleService(ns, "", map[string]string{"app": "web"})
		svc.GenerateName = "slipped-"
		svc.Spec.Type = corev1.ServiceTypeNodePort
		svc.Spec.ExternalIPs = []string{"203.0.113.1"}
		if err := virtualClient.Create(ctx, svc); err != nil {
			return false, err.Error()
		}
		stored = append(stored, svc.Name)
		if svc.Annotations[translate.AnnotationSyncID] != "" {
			_ = virtualClient.Delete(ctx, svc)
			return false, "admitted by podbridge"
		}
		slipped = svc
		return true, ""
	})
	// And the admitted one is changed while the registration is away.
	changed := false
	eventually(t, 60*time.Second, "an update stored while the registration is away", func(ctx context.Context) (bool, string) {
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: key.Name}}
		if err := virtualClient.Delete(ctx, reg); client.IgnoreNotFound(err) != nil {
			return false, err.Error()
		}
		current := &corev1.Service{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(admitted), current); err != nil {
			return false, err.Error()
		}
		current.Spec.ExternalIPs = []string{"203.0.113.2"}
		current.Spec.Selector = map[string]string{translate.LabelVCluster: "other", "app": "web"}
		if err := virtualClient.Update(ctx, current); err != nil {
			return false, err.Error()
		}
		changed = true
		return true, ""
	})
	if !changed {
		t.Fatal("no update stored")
	}
	eventually(t, 30*time.Second, "the registration restored", func(ctx context.Context) (bool, string) {
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		err := virtualClient.Get(ctx, key, reg)
		return err == nil && len(reg.Webhooks) == len(webhook.Registration{}.Configuration().Webhooks), fmt.Sprint(err)
	})

	waitForServiceEvent(t, slipped, reflector.ReasonHostServiceMissing)
	waitForServiceEvent(t, admitted, reflector.ReasonHostServiceRefused)
	for _, name := range stored {
		host := &corev1.Service{}
		err := hostClient.Get(ctx, client.ObjectKey{Namespace: env.Options.Translate.HostNamespace, Name: translate.HostServiceName(name, ns, env.Options.Translate.VCluster)}, host)
		if name == slipped.Name && !apierrors.IsNotFound(err) {
			t.Errorf("host Service of a Service podbridge never admitted: %v", err)
		}
		if err == nil && (len(host.Spec.ExternalIPs) > 0 || host.Spec.Type != corev1.ServiceTypeClusterIP) {
			t.Errorf("host Service %s took the tenant's unchecked spec: %+v", host.Name, host.Spec)
		}
	}
	// Pods and Services go through podbridge again before the next test.
	eventually(t, 30*time.Second, "Services admitted by podbridge again", func(ctx context.Context) (bool, string) {
		probe := simpleService(ns, "probe", map[string]string{"app": "web"})
		err := virtualClient.Create(ctx, probe, client.DryRunAll)
		return err == nil && probe.Annotations[translate.AnnotationSyncID] != "", fmt.Sprint(err)
	})
	host := getHostService(t, admitted)
	if len(host.Spec.ExternalIPs) > 0 || host.Spec.Selector[translate.LabelVCluster] != env.Options.Translate.VCluster {
		t.Errorf("host Service after an unchecked update: %+v", host.Spec)
	}
	// Once refused, an update through podbridge is carried again: the
	// tenant takes the hostile field out.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current := &corev1.Service{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(admitted), current); err != nil {
			return err
		}
		current.Spec.ExternalIPs = nil
		return virtualClient.Update(ctx, current)
	})
	if err != nil {
		t.Fatal(err)
	}
	host = getHostService(t, admitted)
	if host.Spec.Selector[translate.LabelVCluster] != env.Options.Translate.VCluster || host.Spec.Selector[translate.TenantKey(translate.LabelVCluster)] != "other" {
		t.Errorf("host selector after the tenant's selector change: %v", host.Spec.Selector)
	}
}

// waitForServiceEvent waits for an event of reason about virtual.
func waitForServiceEvent(t *testing.T, virtual *corev1.Service, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, "a "+reason+" event on "+virtual.Name, func(ctx context.Context) (bool, string) {
		events := &eventsv1.EventList{}
		if err := virtualClient.List(ctx, events, client.InNamespace(virtual.Namespace)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.Regarding.Name == virtual.Name && e.Regarding.Kind == "Service" {
				if e.Reason == reason {
					return true, ""
				}
				seen = append(seen, e.Reason)
			}
		}
		return false, fmt.Sprintf("events %v", seen)
	})
}

// removeServiceWhileItsPodbridgeRuns deletes svc at the test's end and
// waits for its host Service to go (host Services have no deletecollection
// to sweep them afterwards): registered after the podbridge that serves
// svc started, it runs before that podbridge stops.
func removeServiceWhileItsPodbridgeRuns(t *testing.T, c client.Client, svc, host *corev1.Service) {
	t.Cleanup(func() {
		if err := c.Delete(context.Background(), svc); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting Service %s/%s: %v", svc.Namespace, svc.Name, err)
		}
		waitGone(t, hostClient, host, 30*time.Second)
	})
}

// Where the platform allows NodePort and LoadBalancer Services
// (--allowed-service-types), the node ports and the load balancer are the
// host's: the virtual Service gets the node ports the host allocated, a
// type change gets them too, a node port of the tenant's choosing is still
// refused, and the host's load-balancer status (written here as a host
// cloud controller would) is copied to the virtual Service. The cap on
// host Services refuses one past it, naming the flag.
func TestServiceTypesThePlatformAllows(t *testing.T) {
	ctx := context.Background()
	clearSecondVirtual(t)
	limits := caps.Defaults()
	limits.MaxHostServices = 3
	two := startSecondTenantWith(t, limits, func(tc *translate.Config) {
		tc.ServiceTypes = []corev1.ServiceType{corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer}
	})
	get := func(svc *corev1.Service) *corev1.Service {
		t.Helper()
		host := &corev1.Service{}
		if err := hostClient.Get(ctx, hostServiceKey(two.config, svc), host); err != nil {
			t.Fatalf("host Service of %s: %v", svc.Name, err)
		}
		return host
	}

	nodePort := simpleService("default", "np", map[string]string{"app": "web"})
	nodePort.Spec.Type = corev1.ServiceTypeNodePort
	if err := two.client.Create(ctx, nodePort); err != nil {
		t.Fatal(err)
	}
	host := get(nodePort)
	removeServiceWhileItsPodbridgeRuns(t, two.client, nodePort, host)
	if n := host.Spec.Ports[0].NodePort; n == 0 || nodePort.Spec.Ports[0].NodePort != n || nodePort.Spec.ClusterIP != host.Spec.ClusterIP {
		t.Errorf("node port: virtual %d %s, host %d %s", nodePort.Spec.Ports[0].NodePort, nodePort.Spec.ClusterIP, n, host.Spec.ClusterIP)
	}

	chosen := simpleService("default", "np-chosen", map[string]string{"app": "web"})
	chosen.Spec.Type = corev1.ServiceTypeNodePort
	chosen.Spec.Ports[0].NodePort = 30999
	if err := two.client.Create(ctx, chosen); err == nil || !strings.Contains(err.Error(), "spec.ports[0].nodePort") {
		t.Errorf("a node port of the tenant's choosing: %v", err)
	}

	// ClusterIP to NodePort by update: the host's node port again.
	changed := simpleService("default", "changed", map[string]string{"app": "web"})
	if err := two.client.Create(ctx, changed); err != nil {
		t.Fatal(err)
	}
	removeServiceWhileItsPodbridgeRuns(t, two.client, changed, get(changed))
	changed.Spec.Type = corev1.ServiceTypeNodePort
	if err := two.client.Update(ctx, changed); err != nil {
		t.Fatalf("update to NodePort: %v", err)
	}
	if host := get(changed); host.Spec.Type != corev1.ServiceTypeNodePort || host.Spec.Ports[0].NodePort == 0 || host.Spec.Ports[0].NodePort != changed.Spec.Ports[0].NodePort {
		t.Errorf("after the update: virtual node port %d, host %s %d", changed.Spec.Ports[0].NodePort, host.Spec.Type, host.Spec.Ports[0].NodePort)
	}

	lb := simpleService("default", "lb", map[string]string{"app": "web"})
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	if err := two.client.Create(ctx, lb); err != nil {
		t.Fatal(err)
	}
	host = get(lb)
	removeServiceWhileItsPodbridgeRuns(t, two.client, lb, host)
	host.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.80"}}
	if err := hostClient.Status().Update(ctx, host); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the host's load-balancer status on the virtual Service", func(ctx context.Context) (bool, string) {
		if err := two.client.Get(ctx, client.ObjectKeyFromObject(lb), lb); err != nil {
			return false, err.Error()
		}
		ingress := lb.Status.LoadBalancer.Ingress
		return len(ingress) == 1 && ingress[0].IP == "203.0.113.80", fmt.Sprint(ingress)
	})

	// Three host Services: the cap of tenant two's is met.
	over := simpleService("default", "over", map[string]string{"app": "web"})
	err := two.client.Create(ctx, over)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "--max-host-services") {
		t.Errorf("a Service past --max-host-services=3: %v", err)
	}
	if err := hostClient.Get(ctx, hostServiceKey(two.config, over), &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("host Service past the cap: %v", err)
	}
}
