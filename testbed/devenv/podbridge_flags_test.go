package devenv

import (
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/vcluster"
)

// flagExceptions are the flags on which the test bed's podbridge and the
// shipped control-plane pod's may differ, each with the reason.
type flagExceptions struct {
	// differ: both set the flag, to a value of their own (an address, a
	// file, a name the deployment chooses).
	differ map[string]string
	// bedOnly: only the test bed sets it.
	bedOnly map[string]string
	// podOnly: only the pod sets it.
	podOnly map[string]string
}

// The test bed runs `podbridge webhook` and `podbridge reflector` with the
// flags the shipped control-plane pod (manifests/virtualcluster, rendered
// as `podbridge create` renders it) gives its containers: every flag both
// set has the same value, but for the differences listed here with their
// reasons, and a flag one sets and the other not is listed too. A flag
// added to either side, or a value changed, fails here until the other
// follows or the difference is listed; a listed difference that no longer
// exists fails too.
func TestFlagsMatchTheShippedPod(t *testing.T) {
	common := flagExceptions{
		differ: map[string]string{
			"virtual-kubeconfig":        "a file in the run's state folder; the pod's is on its claim, written by vcluster-init",
			"host-service-account":      "podbridge-workloads, the dev host namespace's account the tests name; the package names its own (an annotation, workloads)",
			"metrics-bind-address":      "a free loopback port (several test beds share a machine); the pod serves :8443 to its Service",
			"health-probe-bind-address": "a free loopback port; the pod's kubelet probes :8081/:8082",
			"client-ca-secret":          "the command's default name, which the tests name; the package names its own (an annotation)",
		},
		bedOnly: map[string]string{
			"host-kubeconfig":     "the processes run outside any cluster; the pod reaches the host in-cluster, as its service account",
			"metrics-cert-dir":    "a certificate the test bed's metrics scraper trusts; the pod serves a self-signed one",
			"pod-security-level":  "Options.PodSecurityLevel, baseline (the command's default) unless a test asks for another",
			"virtual-dns-service": "kube-system/kube-dns, the command's default, said explicitly",
		},
	}
	webhook := merge(common, flagExceptions{
		differ: map[string]string{
			"port":         "a free loopback port chosen before the virtual apiserver starts; the pod's own 9443",
			"register-url": "https://127.0.0.1 at that port, as the pod's at 9443",
			"cert-dir":     "a folder of the run's state folder; the pod's in its /tmp",
			"cert-secret":  "podbridge-webhook-tls, which the tests name; the package names its own (an annotation)",
		},
		bedOnly: map[string]string{
			"webhook-timeout": "Options.WebhookTimeout, 10s (the command's default) unless a test asks for another",
			"host-timeout":    "7/10 of Options.WebhookTimeout, 7s (the command's default) unless a test asks for another",
		},
	})
	reflector := merge(common, flagExceptions{
		differ: map[string]string{
			"kubelet-port":        "a free loopback port chosen before the virtual apiserver starts; the pod's own 10350",
			"kubelet-cert-dir":    "a folder of the run's state folder; the pod's in its /tmp",
			"kubelet-cert-secret": "podbridge-kubelet-tls (KubeletSecretName), which the tests name; the package names its own (an annotation)",
		},
		bedOnly: map[string]string{
			"concurrency":         "16 on the tests' 2-core machines; the pod takes the command's 32",
			"node-grace-period":   "Options.NodeGracePeriod, 3s so virtual nodes visibly follow pods in demos and tests",
			"orphan-grace-period": "Options.OrphanGracePeriod: the integration tests shorten it (the pod takes the safe default)",
			"token-refresh-after": "Options.TokenRefreshAfter: the real-node suite shortens it to see a refresh arrive",
		},
	})

	o := Defaults()
	o.StateDir, o.Podbridge = "/state", "/bin/podbridge"
	o.Translate.ClusterDomain = defaultClusterDomain
	o.OrphanGracePeriod, o.TokenRefreshAfter = 3*time.Second, 20*time.Second
	o.PodSecurityLevel = DefaultPodSecurityLevel
	kubernetesIP, dnsIP, err := serviceAddresses(controlplane.ServiceClusterIPRange)
	if err != nil {
		t.Fatal(err)
	}
	pointAtServices(&o.Translate, kubernetesIP, dnsIP)
	bedWebhook, bedReflector, err := commandLines(o, podbridgeproc.Cluster{
		Binary: o.Podbridge, HostKubeconfig: "/state/host.kubeconfig", VirtualKubeconfig: "/state/virtual.kubeconfig",
		MetricsCertDir: "/state/metrics-certs", LogDir: "/state/logs",
	}, podbridgePorts{webhook: 40001, kubelet: 40002})
	if err != nil {
		t.Fatal(err)
	}
	// The package for the same virtual cluster in the same host namespace
	// and Service range.
	objects, err := vcluster.Render(vcluster.Options{
		Name: o.Translate.VCluster, Namespace: o.Translate.HostNamespace,
		ServiceCIDR: netip.MustParsePrefix(controlplane.ServiceClusterIPRange),
		APIServerIP: netip.MustParseAddr(kubernetesIP), DNSIP: netip.MustParseAddr(dnsIP),
		HostAPIServer: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443")},
	})
	if err != nil {
		t.Fatal(err)
	}
	pod := shippedPod{configMaps: map[string]map[string]string{}}
	for _, obj := range objects {
		switch obj.GetKind() {
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, cm); err != nil {
				t.Fatal(err)
			}
			pod.configMaps[cm.Name] = cm.Data
		case "StatefulSet":
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &pod.set); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pod.set.Name == "" {
		t.Fatal("the rendered package has no StatefulSet")
	}
	for _, tt := range []struct {
		container  string
		bed        *podbridgeproc.Process
		exceptions flagExceptions
	}{
		{"webhook", bedWebhook, webhook},
		{"reflector", bedReflector, reflector},
	} {
		t.Run(tt.container, func(t *testing.T) {
			podArgs := pod.args(t, tt.container)
			if tt.bed.Args()[0] != podArgs[0] {
				t.Fatalf("the test bed runs podbridge %s, the pod's %s container podbridge %s", tt.bed.Args()[0], tt.container, podArgs[0])
			}
			compareFlags(t, flagMap(t, tt.bed.Args()[1:]), flagMap(t, podArgs[1:]), tt.exceptions)
		})
	}
}

// compareFlags reports every flag on which bed and pod differ that e does
// not list, and every entry of e that no longer applies.
func compareFlags(t *testing.T, bed, pod map[string]string, e flagExceptions) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(bed)) {
		podValue, inPod := pod[name]
		switch {
		case !inPod && e.bedOnly[name] == "":
			t.Errorf("--%s=%s: the test bed sets it, the shipped pod does not; set it there too, or list it as the bed's own with the reason", name, bed[name])
		case inPod && bed[name] != podValue && e.differ[name] == "":
			t.Errorf("--%s: the test bed's %q, the shipped pod's %q; make them the same, or list the difference with the reason", name, bed[name], podValue)
		case inPod && bed[name] == podValue && e.differ[name] != "":
			t.Errorf("--%s: both %q now; the listed difference (%s) no longer exists", name, podValue, e.differ[name])
		case inPod && e.bedOnly[name] != "":
			t.Errorf("--%s: listed as the bed's own (%s), but the shipped pod sets it too", name, e.bedOnly[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pod)) {
		if _, inBed := bed[name]; !inBed && e.podOnly[name] == "" {
			t.Errorf("--%s=%s: the shipped pod sets it, the test bed does not; set it in devenv too, or list it as the pod's own with the reason", name, pod[name])
		}
	}
	for name, why := range e.bedOnly {
		if _, ok := bed[name]; !ok {
			t.Errorf("--%s is listed as the bed's own (%s), but the test bed does not set it", name, why)
		}
	}
	for name, why := range e.differ {
		if _, ok := bed[name]; !ok {
			t.Errorf("--%s is listed as differing (%s), but the test bed does not set it", name, why)
		}
	}
	for name, why := range e.podOnly {
		if _, ok := pod[name]; !ok {
			t.Errorf("--%s is listed as the pod's own (%s), but the pod does not set it", name, why)
		}
	}
}

// flagMap maps each --name=value of args to its value; a flag given twice
// or in another form fails the test.
func flagMap(t *testing.T, args []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, arg := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if !strings.HasPrefix(arg, "--") || !ok {
			t.Fatalf("argument %q: want --name=value", arg)
		}
		if _, dup := flags[name]; dup {
			t.Fatalf("--%s given twice in %v", name, args)
		}
		flags[name] = value
	}
	return flags
}

// shippedPod is the rendered control-plane StatefulSet and the ConfigMaps
// its containers' environment reads.
type shippedPod struct {
	set        appsv1.StatefulSet
	configMaps map[string]map[string]string
}

var envReference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// args are the container's arguments with $(VAR) expanded from its
// environment, as the kubelet expands them: values, ConfigMap keys, the
// pod's namespace and annotations.
func (p shippedPod) args(t *testing.T, container string) []string {
	t.Helper()
	spec := p.set.Spec.Template
	i := slices.IndexFunc(spec.Spec.Containers, func(c corev1.Container) bool { return c.Name == container })
	if i < 0 {
		t.Fatalf("the shipped pod has no %s container", container)
	}
	c := spec.Spec.Containers[i]
	env := map[string]string{}
	for _, v := range c.Env {
		switch {
		case v.ValueFrom == nil:
			env[v.Name] = v.Value
		case v.ValueFrom.ConfigMapKeyRef != nil:
			ref := v.ValueFrom.ConfigMapKeyRef
			data, ok := p.configMaps[ref.Name]
			if !ok {
				t.Fatalf("%s's %s reads ConfigMap %s, not in the package", container, v.Name, ref.Name)
			}
			env[v.Name] = data[ref.Key]
		case v.ValueFrom.FieldRef != nil:
			switch path := v.ValueFrom.FieldRef.FieldPath; {
			case path == "metadata.namespace":
				env[v.Name] = p.set.Namespace
			case strings.HasPrefix(path, "metadata.annotations['"):
				env[v.Name] = spec.Annotations[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.annotations['"), "']")]
			default:
				env[v.Name] = "$(" + v.Name + ")" // the pod's IP: known only when it runs.
			}
		}
	}
	args := make([]string, len(c.Args))
	for j, arg := range c.Args {
		args[j] = envReference.ReplaceAllStringFunc(arg, func(ref string) string {
			name := envReference.FindStringSubmatch(ref)[1]
			value, ok := env[name]
			if !ok {
				t.Errorf("%s's argument %q names $(%s), not in its environment", container, arg, name)
			}
			return value
		})
	}
	return args
}

func merge(a, b flagExceptions) flagExceptions {
	out := flagExceptions{differ: map[string]string{}, bedOnly: map[string]string{}, podOnly: map[string]string{}}
	for _, e := range []flagExceptions{a, b} {
		maps.Copy(out.differ, e.differ)
		maps.Copy(out.bedOnly, e.bedOnly)
		maps.Copy(out.podOnly, e.podOnly)
	}
	return out
}
