package vcluster

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/internal/render"
	"github.com/podbridge/podbridge/staticpolicy"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/translate"
)

func testOptions(name string) Options {
	return Options{
		Name: name, Namespace: "tenants",
		ServiceCIDR: netip.MustParsePrefix("10.0.0.0/16"),
		APIServerIP: netip.MustParseAddr("10.0.3.7"), DNSIP: netip.MustParseAddr("10.0.0.11"),
		HostAPIServer: []netip.AddrPort{netip.MustParseAddrPort("10.201.0.1:6443")},
	}
}

func renderTyped(t *testing.T, o Options) map[string]runtime.Object {
	t.Helper()
	objects, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	typed := map[string]runtime.Object{}
	for _, u := range objects {
		var obj runtime.Object
		switch u.GetKind() {
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "Service":
			obj = &corev1.Service{}
		case "Role":
			obj = &rbacv1.Role{}
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		default:
			obj = u
		}
		if obj != u {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
				t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
		typed[u.GetKind()+"/"+u.GetName()] = obj
	}
	return typed
}

func TestRenderNamesEverythingAfterTheCluster(t *testing.T) {
	objects, err := Render(testOptions("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, obj := range objects {
		kinds[obj.GetKind()]++
		if !strings.HasPrefix(obj.GetName(), "alpha-") {
			t.Errorf("%s %s: not named after the virtual cluster", obj.GetKind(), obj.GetName())
		}
		labels := obj.GetLabels()
		if labels[LabelInstance] != "alpha" || labels[LabelPartOf] != PartOfValue {
			t.Errorf("%s %s: labels %v lack the instance and part-of labels delete and list select on", obj.GetKind(), obj.GetName(), labels)
		}
		switch obj.GetKind() {
		case "ClusterRole", "ClusterRoleBinding":
			if obj.GetNamespace() != "" || labels[LabelNamespace] != "tenants" {
				t.Errorf("%s %s: namespace %q, label %q: want cluster-scoped, labelled with the host namespace", obj.GetKind(), obj.GetName(), obj.GetNamespace(), labels[LabelNamespace])
			}
		default:
			if obj.GetNamespace() != "tenants" {
				t.Errorf("%s %s: in namespace %q, want tenants", obj.GetKind(), obj.GetName(), obj.GetNamespace())
			}
		}
	}
	for kind, want := range map[string]int{"StatefulSet": 1, "PodDisruptionBudget": 1, "Service": 1, "NetworkPolicy": 2, "Role": 1, "RoleBinding": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "ServiceAccount": 2, "ConfigMap": 3} {
		if kinds[kind] != want {
			t.Errorf("%d %s objects, want %d (all: %v)", kinds[kind], kind, want, kinds)
		}
	}
}

// Two virtual clusters in one namespace share no object and select none
// of each other's pods.
func TestTwoClustersInOneNamespaceShareNothing(t *testing.T) {
	a, b := renderTyped(t, testOptions("alpha")), renderTyped(t, testOptions("beta"))
	for key := range a {
		if _, ok := b[key]; ok {
			t.Errorf("both virtual clusters render %s", key)
		}
	}
	stsA := a["StatefulSet/alpha-control-plane"].(*appsv1.StatefulSet)
	podB := b["StatefulSet/beta-control-plane"].(*appsv1.StatefulSet).Spec.Template
	for key, obj := range a {
		var selector map[string]string
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			selector = o.Spec.Selector.MatchLabels
		case *corev1.Service:
			selector = o.Spec.Selector
		case *networkingv1.NetworkPolicy:
			selector = o.Spec.PodSelector.MatchLabels
		default:
			continue
		}
		if selector[LabelInstance] != "alpha" {
			t.Errorf("%s selects %v: without the instance label it selects every virtual cluster's control plane", key, selector)
		}
		if matches(selector, podB.Labels) {
			t.Errorf("%s selects beta's control-plane pod", key)
		}
	}
	if !matches(stsA.Spec.Selector.MatchLabels, stsA.Spec.Template.Labels) {
		t.Errorf("the StatefulSet's selector %v does not select its own pods %v", stsA.Spec.Selector.MatchLabels, stsA.Spec.Template.Labels)
	}
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestControlPlanePod(t *testing.T) {
	o := testOptions("alpha")
	o.Images = map[string]string{"podbridge": "podbridge.local/podbridge:dev", "kine": "registry.example/kine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	o.PodbridgeFlags = []string{"--enforce-node-selector=pool=tenants"}
	objs := renderTyped(t, o)
	sts := objs["StatefulSet/alpha-control-plane"].(*appsv1.StatefulSet)
	if ptr.Deref(sts.Spec.Replicas, 0) != 1 {
		t.Errorf("replicas %v, want 1: kine's SQLite has one writer", sts.Spec.Replicas)
	}
	spec := sts.Spec.Template.Spec
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	if want := []string{"kube-controller-manager", "webhook", "reflector", "certs"}; !slices.Equal(names, want) {
		t.Fatalf("containers %v, want %v (Render's podbridgeContainers indexes them)", names, want)
	}
	images := map[string]string{}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		images[c.Name] = c.Image
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: requests %v, limits %v: want CPU and memory requests and a memory limit", c.Name, c.Resources.Requests, c.Resources.Limits)
		}
		sc := c.SecurityContext
		if sc == nil || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s: security context %+v: want no privilege escalation, a read-only root and every capability dropped", c.Name, sc)
		}
		// Every $(VAR) an argument names is in the container's env: an
		// unknown one stays literal.
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
		}
		for _, arg := range c.Args {
			for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(arg, -1) {
				if !env[m[1]] {
					t.Errorf("container %s: argument %q names $(%s), which its env lacks", c.Name, arg, m[1])
				}
			}
		}
	}
	for name, want := range map[string]string{
		"init": "podbridge.local/podbridge:dev", "data-owner": "podbridge.local/podbridge:dev", "webhook": "podbridge.local/podbridge:dev", "reflector": "podbridge.local/podbridge:dev",
		"kine":           "registry.example/kine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"kube-apiserver": "ghcr.io/podbridge/kube-apiserver:v1.37.2",
	} {
		if images[name] != want {
			t.Errorf("container %s: image %q, want %q", name, images[name], want)
		}
	}
	// A read-only root: whatever writes has a volume there.
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if c.Image != "podbridge.local/podbridge:dev" && c.Name != "kine" && c.Name != "kube-controller-manager" {
			continue
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
			t.Errorf("container %s has no /tmp volume: its read-only root refuses what it writes there", c.Name)
		}
	}
	// Only the first init container is root, with CAP_CHOWN alone.
	if first := spec.InitContainers[0]; first.Name != "data-owner" || !slices.Equal(first.SecurityContext.Capabilities.Add, []corev1.Capability{"CHOWN"}) {
		t.Errorf("the first init container %s adds %v, want data-owner with CHOWN only", first.Name, first.SecurityContext.Capabilities.Add)
	}
	if !ptr.Deref(spec.SecurityContext.RunAsNonRoot, false) {
		t.Error("the pod does not run as non-root")
	}
	var sidecars []string
	for _, c := range spec.InitContainers[2:] {
		if ptr.Deref(c.RestartPolicy, "") == corev1.ContainerRestartPolicyAlways {
			sidecars = append(sidecars, c.Name)
		}
	}
	if want := []string{"kine", "kube-apiserver"}; !slices.Equal(sidecars, want) {
		t.Errorf("sidecars %v, want %v, after the init containers: the others start once the apiserver is ready", sidecars, want)
	}
	if spec.InitContainers[3].StartupProbe == nil {
		t.Error("the apiserver sidecar has no startup probe: the containers after it would start at once")
	}
	for _, c := range append(slices.Clone(spec.InitContainers[1:]), spec.Containers...) {
		if len(c.SecurityContext.Capabilities.Add) > 0 {
			t.Errorf("container %s adds capabilities %v", c.Name, c.SecurityContext.Capabilities.Add)
		}
		if c.SecurityContext.RunAsUser != nil || c.SecurityContext.RunAsNonRoot != nil {
			t.Errorf("container %s overrides the pod's non-root user", c.Name)
		}
		switch c.Name {
		case "kube-apiserver", "webhook", "reflector":
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("container %s lacks a readiness or liveness probe", c.Name)
			}
		}
	}
	args := func(name string) []string {
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			if c.Name == name {
				return c.Args
			}
		}
		return nil
	}
	// What listens only on loopback: kine, the webhook, the kubelet API.
	for name, want := range map[string][]string{
		"kine":                    {"--listen-address=127.0.0.1:2379", "--endpoint=sqlite:///data/db/state.db?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate&_stmt_cache_size=20&cache=shared"},
		"webhook":                 {"--bind-address=127.0.0.1", "--register-url=https://127.0.0.1:9443", "--enforce-node-selector=pool=tenants"},
		"reflector":               {"--kubelet-bind-address=127.0.0.1", "--kubelet-advertise-address=127.0.0.1", "--kubelet-port=10350", "--enforce-node-selector=pool=tenants"},
		"kube-controller-manager": {"--controllers=" + strings.Join(controlplane.VirtualControllers, ",")},
	} {
		for _, arg := range want {
			if !slices.Contains(args(name), arg) {
				t.Errorf("container %s: arguments %v lack %s", name, args(name), arg)
			}
		}
	}
	// podbridge's webhook and reflector mount their own kubeconfig's
	// folder of the claim alone, the certs container the apiserver's
	// copies alone: neither reaches the CAs' keys or another identity.
	for name, want := range map[string]string{"webhook": "pki/" + PodbridgeDir, "reflector": "pki/" + PodbridgeDir, "certs": "pki/" + CertCopiesDir} {
		for _, c := range spec.Containers {
			if c.Name != name {
				continue
			}
			for _, m := range c.VolumeMounts {
				if m.Name == "data" && (m.SubPath != want || m.MountPath != "/data/"+want) {
					t.Errorf("container %s mounts the claim's %q at %s, want only %s at /data/%s", name, m.SubPath, m.MountPath, want, want)
				}
			}
		}
	}
	if !slices.Contains(args("webhook"), "--virtual-kubeconfig=/data/pki/"+PodbridgeDir+"/podbridge.kubeconfig") ||
		!slices.Contains(args("reflector"), "--virtual-kubeconfig=/data/pki/"+PodbridgeDir+"/podbridge.kubeconfig") {
		t.Errorf("the webhook's and the reflector's kubeconfig: %v, %v", args("webhook"), args("reflector"))
	}
	// The grants are applied after the apiserver is ready and before
	// podbridge starts: a regular init container after the apiserver.
	last := spec.InitContainers[len(spec.InitContainers)-1]
	if last.Name != "rbac" || last.RestartPolicy != nil || !slices.Contains(last.Args, "--bootstrap-rbac") || spec.InitContainers[len(spec.InitContainers)-2].Name != "kube-apiserver" {
		t.Errorf("the last init container is %s %v (restart policy %v), want rbac with --bootstrap-rbac right after kube-apiserver", last.Name, last.Args, last.RestartPolicy)
	}
	if !slices.Contains(args("certs"), "--keep-copies=1m") {
		t.Errorf("the certs container's arguments %v: want --keep-copies=1m", args("certs"))
	}
	// The apiserver reads the copies the certs container writes: the
	// client certificate and key from one file.
	pair := "/data/pki/" + CertCopiesDir + "/" + WebhookClientFile
	for _, arg := range []string{"--kubelet-client-certificate=" + pair, "--kubelet-client-key=" + pair, "--kubelet-certificate-authority=/data/pki/" + CertCopiesDir + "/" + KubeletCAFile} {
		if !slices.Contains(args("kube-apiserver"), arg) {
			t.Errorf("kube-apiserver's arguments lack %s", arg)
		}
	}
	admission := objs["ConfigMap/alpha-admission"].(*corev1.ConfigMap)
	webhookClient, err := clientcmd.Load([]byte(admission.Data["webhook-client.kubeconfig"]))
	if err != nil {
		t.Fatal(err)
	}
	if user := webhookClient.AuthInfos["127.0.0.1:9443"]; user == nil || user.ClientCertificate != pair || user.ClientKey != pair {
		t.Errorf("the webhook client kubeconfig's user %+v, want certificate and key from %s", user, pair)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Labels[LabelInstance] != "alpha" {
		t.Errorf("claim templates %+v: want one, labelled with the instance (delete finds its claim by it)", sts.Spec.VolumeClaimTemplates)
	}
	svc := objs["Service/alpha-apiserver"].(*corev1.Service)
	if svc.Spec.ClusterIP != "10.0.3.7" {
		t.Errorf("the apiserver Service's ClusterIP is %q, want the address the webhook pins on default/kubernetes", svc.Spec.ClusterIP)
	}
	config := objs["ConfigMap/alpha-config"].(*corev1.ConfigMap)
	for key, want := range map[string]string{"vcluster-name": "alpha", "apiserver-service-ip": "10.0.3.7", "dns-service-ip": "10.0.0.11", "service-cidr": "10.0.0.0/16", "cluster-domain": "cluster.local"} {
		if config.Data[key] != want {
			t.Errorf("config %s = %q, want %q", key, config.Data[key], want)
		}
	}
	if owner := objs["ServiceAccount/alpha-workloads"].(*corev1.ServiceAccount).Annotations["podbridge.io/owner"]; owner != "alpha" {
		t.Errorf("the workloads account's owner is %q, want alpha", owner)
	}
	if ann := sts.Spec.Template.Annotations; ann["podbridge.io/host-service-account"] != "alpha-workloads" || ann["podbridge.io/kubeconfig-secret"] != "alpha-kubeconfig" {
		t.Errorf("the names the arguments read are %v: want them prefixed", ann)
	}
}

// The admission ConfigMap carries podbridge's static policies for the
// kubelet API on the pod's loopback, as podbridge renders them.
func TestStaticPoliciesAreCurrent(t *testing.T) {
	objs := renderTyped(t, testOptions("alpha"))
	want, err := staticpolicy.YAML(translate.KubeletEndpoint{Address: "127.0.0.1", Port: 10350})
	if err != nil {
		t.Fatal(err)
	}
	got := objs["ConfigMap/alpha-admission-policies"].(*corev1.ConfigMap).Data["podbridge.yaml"]
	if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
		t.Errorf("manifests/virtualcluster/base/admission.yaml's policies differ from staticpolicy.YAML:\n%s\nwant:\n%s", got, want)
	}
}

// The control-plane pod's egress names the host apiserver's endpoints and
// this cluster's own tenant pods, nothing wider; its ingress admits only
// those tenants to the apiserver.
func TestNetworkPolicies(t *testing.T) {
	o := testOptions("alpha")
	o.HostAPIServer = append(o.HostAPIServer, netip.MustParseAddrPort("[fd00::1]:6443"))
	objs := renderTyped(t, o)
	for key, obj := range objs {
		np, ok := obj.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("%s: policy types %v, want both", key, np.Spec.PolicyTypes)
		}
		for i, rule := range np.Spec.Egress {
			if len(rule.To) == 0 {
				t.Errorf("%s: egress rule %d has no peers: it allows every destination", key, i)
			}
			for _, peer := range rule.To {
				if peer.IPBlock != nil && !strings.HasSuffix(peer.IPBlock.CIDR, "/32") && !strings.HasSuffix(peer.IPBlock.CIDR, "/128") {
					t.Errorf("%s: egress to %s: wider than one address", key, peer.IPBlock.CIDR)
				}
				if peer.PodSelector != nil && len(peer.PodSelector.MatchLabels) > 0 {
					t.Errorf("%s: peer selector %v has matchLabels: kustomize's instance label would land in them", key, peer.PodSelector.MatchLabels)
				}
			}
		}
		for i, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				t.Errorf("%s: ingress rule %d admits every source", key, i)
			}
		}
	}
	np := objs["NetworkPolicy/alpha-control-plane-tenants"].(*networkingv1.NetworkPolicy)
	var blocks []string
	for _, rule := range np.Spec.Egress {
		for _, peer := range rule.To {
			if peer.IPBlock != nil {
				blocks = append(blocks, peer.IPBlock.CIDR+":"+rule.Ports[0].Port.String())
			}
		}
	}
	if want := []string{"10.201.0.1/32:6443", "fd00::1/128:6443"}; !slices.Equal(blocks, want) {
		t.Errorf("egress to %v, want the host apiserver's endpoints %v", blocks, want)
	}
	tenants := np.Spec.Ingress[0].From[0].PodSelector.MatchExpressions
	if len(tenants) != 2 || tenants[0].Key != translate.LabelVCluster || !slices.Equal(tenants[0].Values, []string{"alpha"}) {
		t.Errorf("ingress from %v: want alpha's tenant pods only", tenants)
	}
}

// The control plane's host Role grants what manifests/host/base's podbridge
// Role does, no more.
func TestRoleIsTheHostBaseRole(t *testing.T) {
	base, err := render.Kustomization("../manifests/host/base")
	if err != nil {
		t.Fatal(err)
	}
	var want rbacv1.Role
	for _, u := range base {
		if u.GetKind() == "Role" && u.GetName() == "podbridge" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &want); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := renderTyped(t, testOptions("alpha"))["Role/alpha-control-plane"].(*rbacv1.Role)
	if len(got.Rules) != len(want.Rules) {
		t.Fatalf("%d rules, want manifests/host/base's %d", len(got.Rules), len(want.Rules))
	}
	for i := range want.Rules {
		if !slices.Equal(got.Rules[i].Verbs, want.Rules[i].Verbs) || !slices.Equal(got.Rules[i].Resources, want.Rules[i].Resources) || !slices.Equal(got.Rules[i].APIGroups, want.Rules[i].APIGroups) {
			t.Errorf("rule %d: %+v, want %+v", i, got.Rules[i], want.Rules[i])
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"bad name", func(o *Options) { o.Name = "Alpha_1" }, "NAME"},
		{"long name", func(o *Options) { o.Name = strings.Repeat("a", 41) }, "NAME"},
		{"bad namespace", func(o *Options) { o.Namespace = "" }, "--namespace"},
		{"no service range", func(o *Options) { o.ServiceCIDR = netip.Prefix{} }, "--service-cidr"},
		{"dns outside range", func(o *Options) { o.DNSIP = netip.MustParseAddr("192.168.0.10") }, "--dns-ip"},
		{"dns is the apiserver's", func(o *Options) { o.DNSIP = o.APIServerIP }, "--dns-ip"},
		{"unknown image", func(o *Options) { o.Images = map[string]string{"etcd": "x"} }, "--image[etcd]"},
		{"bad flag", func(o *Options) { o.PodbridgeFlags = []string{"enforce"} }, "--podbridge-flag[0]"},
		{"no host apiserver", func(o *Options) { o.HostAPIServer = nil }, "host apiserver endpoints"},
		{"bad domain", func(o *Options) { o.ClusterDomain = "Not A Domain" }, "--cluster-domain"},
		{"podbridge's own name", func(o *Options) { o.Name = "podbridge" }, "podbridge's own host objects"},
		{"a name of podbridge's own objects", func(o *Options) { o.Name = "podbridge-isolation" }, "podbridge's own host objects"},
		{"a tenant host name's separator", func(o *Options) { o.Name = "a-x-b-x-c" }, "-x-"},
		{"the separator's end", func(o *Options) { o.Name = "a-x" }, "-x-"},
		{"the separator's start", func(o *Options) { o.Name = "x-a" }, "-x-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions("alpha")
			tc.change(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	o := testOptions("alpha")
	if err := o.Validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}

func TestStaticBand(t *testing.T) {
	for cidr, want := range map[string]int{"10.0.0.0/24": 16, "10.0.0.0/20": 256, "10.0.0.0/16": 256, "10.0.0.0/28": 16, "fd00::/108": 256, "10.96.0.0/22": 64} {
		if got := staticBand(netip.MustParsePrefix(cidr)); got != want {
			t.Errorf("staticBand(%s) = %d, want %d", cidr, got, want)
		}
	}
}

func TestSplitReference(t *testing.T) {
	for ref, want := range map[string][3]string{
		"podbridge.local/kine:v0.17.5":   {"podbridge.local/kine", "v0.17.5", ""},
		"localhost:5000/kine":            {"localhost:5000/kine", "", ""},
		"localhost:5000/kine:v1":         {"localhost:5000/kine", "v1", ""},
		"registry.example/kine@sha256:0": {"registry.example/kine", "", "sha256:0"},
	} {
		name, tag, digest := splitReference(ref)
		if [3]string{name, tag, digest} != want {
			t.Errorf("splitReference(%q) = %q %q %q, want %q", ref, name, tag, digest, want)
		}
	}
}

// The host objects a virtual cluster owns by name: the package's, its
// pod and claim, and the Secrets its control plane makes.
func TestOwnedNames(t *testing.T) {
	objects, err := Render(testOptions("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range ownedNames(objects) {
		got = append(got, h.String())
	}
	for _, want := range []string{
		"StatefulSet tenants/alpha-control-plane", "Pod tenants/alpha-control-plane-0", "PersistentVolumeClaim tenants/data-alpha-control-plane-0",
		"Secret tenants/alpha-kubeconfig", "Secret tenants/alpha-webhook-tls", "Secret tenants/alpha-webhook-client-tls", "Secret tenants/alpha-kubelet-tls",
		"ClusterRole alpha-cluster-grants", "NetworkPolicy tenants/alpha-control-plane-tenants",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("owned names lack %s: %v", want, got)
		}
	}
	// The claim the StatefulSet makes carries the instance label, so a
	// second create sees it as its own and delete finds it.
	sts := renderTyped(t, testOptions("alpha"))["StatefulSet/alpha-control-plane"].(*appsv1.StatefulSet)
	for _, tmpl := range sts.Spec.VolumeClaimTemplates {
		if tmpl.Labels[LabelInstance] != "alpha" || tmpl.Labels[LabelName] != NameValue {
			t.Errorf("claim template %s: labels %v lack the instance label", tmpl.Name, tmpl.Labels)
		}
	}
	// The pod and the claim carry the labels delete finds them by.
	if sts.Spec.Template.Labels[LabelInstance] != "alpha" || sts.Spec.Template.Labels[LabelName] != NameValue {
		t.Errorf("the control-plane pod's labels %v lack the instance and name labels", sts.Spec.Template.Labels)
	}
}

// Virtual clusters side by side in one namespace own no host name in
// common, whatever their names (names that extend another's by a suffix
// of the package included), none owns a name podbridge gives its own
// objects or a tenant's host object (which has -x- inside), and none is
// refused for another's name.
func TestClustersInOneNamespaceOwnDisjointNames(t *testing.T) {
	names := []string{"a", "a-webhook", "a-webhook-client", "a-control", "a-control-plane", "a-control-plane-0", "a-admission",
		"a-cluster", "a-kubelet", "a-config", "a-apiserver", "data-a", "a-0", "alpha", "beta", "c-apiserver", "isolation"}
	owner := map[string]string{}
	for _, name := range names {
		objects, err := Render(testOptions(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, h := range ownedNames(objects) {
			key := h.gvk.Kind + " " + h.namespace + "/" + h.name
			if other, ok := owner[key]; ok {
				t.Errorf("%s is owned by both %s and %s", key, other, name)
			}
			owner[key] = name
			if strings.HasPrefix(h.name, "podbridge-") || strings.Contains(h.name, "-x-") {
				t.Errorf("%s of %s has a name podbridge gives its own or a tenant's host objects", key, name)
			}
		}
	}
	for _, name := range names {
		for key := range owner {
			if strings.HasSuffix(key, "/"+translate.IsolationPolicyName(name)) {
				t.Errorf("%s is %s's isolation policy's name", key, name)
			}
		}
	}
}

// What create counts as its own when it runs again: podbridge's mark
// decides when there is one; the instance label (part-of or, on what the
// StatefulSet makes, name) otherwise, with the namespace label when
// cluster-scoped.
func TestNotOwn(t *testing.T) {
	own := map[string]string{LabelInstance: "a", LabelPartOf: PartOfValue}
	for _, tc := range []struct {
		name        string
		namespace   string
		labels      map[string]string
		annotations map[string]string
		want        string // "" when own
	}{
		{"the package's object", "tenants", own, nil, ""},
		{"the control-plane pod or claim", "tenants", map[string]string{LabelInstance: "a", LabelName: NameValue}, nil, ""},
		{"the webhook's certificate Secret: the mark only", "tenants", map[string]string{"app.kubernetes.io/managed-by": "podbridge"}, map[string]string{"podbridge.io/owner": "a"}, ""},
		{"the platform's object", "tenants", nil, nil, `labels app.kubernetes.io/instance=""`},
		{"another cluster's", "tenants", map[string]string{LabelInstance: "b", LabelPartOf: PartOfValue}, nil, `instance="b"`},
		{"labelled as a's but marked as b's", "tenants", own, map[string]string{"podbridge.io/owner": "b"}, `marked podbridge.io/owner="b"`},
		{"the instance label alone", "tenants", map[string]string{LabelInstance: "a"}, nil, "labels"},
		{"cluster-scoped, of another namespace", "", map[string]string{LabelInstance: "a", LabelPartOf: PartOfValue, LabelNamespace: "other"}, nil, `of host namespace "other"`},
		{"cluster-scoped, of this namespace", "", map[string]string{LabelInstance: "a", LabelPartOf: PartOfValue, LabelNamespace: "tenants"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &corev1.ConfigMap{}
			obj.Namespace, obj.Labels, obj.Annotations = tc.namespace, tc.labels, tc.annotations
			got := notOwn(obj, "a", "tenants")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("notOwn: %q, want %q", got, tc.want)
			}
		})
	}
}
