//go:build node

package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/vcluster"
)

// createOptions are `podbridge create NAME -n namespace` as the test bed
// runs it: the offline images (make vc-images), the control-plane pod and
// every tenant pod on the real node.
func createOptions(t *testing.T, name, namespace string) vcluster.CreateOptions {
	t.Helper()
	root, err := controlplane.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "vc", "images.tar")); err != nil {
		t.Fatalf("no control-plane images (run make vc-images): %v", err)
	}
	placement := fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: control-plane
spec:
  template:
    spec:
      nodeSelector:
        %s: "true"
      tolerations:
      - {key: %s, operator: Exists, effect: NoSchedule}
`, realnode.LabelRealNode, realnode.TaintRealNode)
	return vcluster.CreateOptions{
		Options: vcluster.Options{
			Name: name, Namespace: namespace,
			Images: map[string]string{
				"podbridge": "podbridge.local/podbridge:dev", "kine": "podbridge.local/kine:v0.17.5",
				"kube-apiserver": "podbridge.local/kube-apiserver:v1.37.2", "kube-controller-manager": "podbridge.local/kube-controller-manager:v1.37.2",
			},
			Patches: []string{placement},
			PodbridgeFlags: []string{
				"--enforce-node-selector=" + realnode.LabelRealNode + "=true",
				`--enforce-tolerations=[{"key":"` + realnode.TaintRealNode + `","operator":"Exists","effect":"NoSchedule"}]`,
			},
		},
		DNSImage: realnode.CoreDNSImage,
		Timeout:  6 * time.Minute,
	}
}

// connected runs fn with a client of virtual cluster name through a
// port-forward, as `podbridge connect` gives it.
func connected(t *testing.T, name, namespace string, fn func(cfg *rest.Config, c client.Client)) {
	t.Helper()
	connectedFor(t, name, namespace, 3*time.Minute, fn)
}

// connectedFor is connected with a port-forward that lasts up to d.
func connectedFor(t *testing.T, name, namespace string, d time.Duration, fn func(cfg *rest.Config, c client.Client)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	fwd, err := vcluster.Forward(ctx, env.Host.Config, hostClient, name, namespace, 0)
	if err != nil {
		t.Fatalf("connecting to %s: %v", name, err)
	}
	defer func() {
		if err := fwd.Close(); err != nil {
			t.Errorf("the port-forward to %s ended with %v", name, err)
		}
	}()
	kubeconfig, err := vcluster.ConnectKubeconfig(ctx, hostClient, name, namespace, fwd.Server())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	fn(cfg, c)
}

// tenantLogs reads a tenant pod's output through the host (its host pod's
// log), whichever virtual cluster it is of.
func tenantLogs(ctx context.Context, vc, hostNamespace string, pod *corev1.Pod) (string, error) {
	b, err := hostSet.CoreV1().Pods(hostNamespace).GetLogs(translate.HostName(pod.Name, pod.Namespace, vc), &corev1.PodLogOptions{Container: "w"}).DoRaw(ctx)
	return string(b), err
}

func tenantPod(name string, steps ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			Containers:                    []corev1.Container{{Name: "w", Image: realnode.WorkloadImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: steps}},
		},
	}
}

// waitTenantOutput waits until the tenant pod's output has lines lines.
func waitTenantOutput(t *testing.T, vc, hostNamespace string, pod *corev1.Pod, lines int) []string {
	t.Helper()
	var out string
	eventually(t, 2*time.Minute, fmt.Sprintf("%d lines of %s's output", lines, pod.Name), func(ctx context.Context) (bool, string) {
		var err error
		if out, err = tenantLogs(ctx, vc, hostNamespace, pod); err != nil {
			return false, err.Error()
		}
		return strings.TrimSpace(out) != "" && len(strings.Split(strings.TrimSpace(out), "\n")) >= lines, out
	})
	return strings.Split(strings.TrimSpace(out), "\n")
}

// hostUIDs are the UIDs of the host pods of virtual cluster vc.
func hostUIDs(t *testing.T, vc, namespace string) map[string]types.UID {
	t.Helper()
	var pods corev1.PodList
	if err := hostClient.List(context.Background(), &pods, client.InNamespace(namespace), client.MatchingLabels{translate.LabelVCluster: vc, translate.LabelManagedBy: translate.ManagedByValue}); err != nil {
		t.Fatal(err)
	}
	uids := map[string]types.UID{}
	for _, p := range pods.Items {
		uids[p.Name] = p.UID
	}
	return uids
}

// `podbridge create` brings a virtual cluster up whose control plane runs
// on the real node: a tenant Deployment and Service reach Ready and answer
// by DNS name; the control-plane pod deleted comes back with every tenant
// object and host pod; a second virtual cluster beside it stays apart;
// tenant pods reach neither the host apiserver nor the other cluster's;
// and `podbridge delete` leaves nothing of either on the host.
func TestVirtualClusterCreateRestartDelete(t *testing.T) {
	const alpha, beta, gamma, nsA, nsB = "alpha", "beta", "gamma", "vc-alpha", "vc-beta"
	ctx := context.Background()
	t.Cleanup(func() {
		for name, ns := range map[string]string{alpha: nsA, beta: nsB, gamma: nsA} {
			if t.Failed() {
				controlPlaneLogs(t, name, ns)
			}
			// What a failed run left (a passed one deleted both).
			if left, err := vcluster.Remains(ctx, hostClient, name, ns); err == nil && len(left) > 0 {
				delCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
				if err := vcluster.Delete(delCtx, hostClient, name, ns, testWriter{t}); err != nil {
					t.Logf("cleaning up %s: %v", name, err)
				}
				cancel()
			}
		}
	})
	res, err := vcluster.Create(ctx, env.Host.Config, createOptions(t, alpha, nsA), testWriter{t})
	if err != nil {
		t.Fatalf("podbridge create %s: %v", alpha, err)
	}
	t.Logf("FIGURE podbridge create to a working kubeconfig: %s (to its DNS server available: %s)", res.Ready.Round(time.Millisecond), res.DNSReady.Round(time.Millisecond))
	var made corev1.Namespace
	if err := hostClient.Get(ctx, client.ObjectKey{Name: nsA}, &made); err != nil || made.Annotations[vcluster.AnnotationCreatedFor] != alpha {
		t.Errorf("host namespace %s, which create made: annotations %v (%v), want %s=%s", nsA, made.Annotations, err, vcluster.AnnotationCreatedFor, alpha)
	}
	var cp corev1.Pod
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: nsA, Name: vcluster.ControlPlane(alpha) + "-0"}, &cp); err != nil {
		t.Fatal(err)
	}
	if cp.Spec.NodeName != env.RealNode.Name() {
		t.Fatalf("the control-plane pod runs on %q, want the real node", cp.Spec.NodeName)
	}
	rules, err := realnode.ControlPlaneRules()
	if err != nil || !strings.Contains(rules, "-s "+cp.Status.PodIP+"/32") {
		t.Errorf("the real node's control-plane exception %q (%v) does not name the control-plane pod %s", rules, err, cp.Status.PodIP)
	}

	var deployUID types.UID
	connected(t, alpha, nsA, func(_ *rest.Config, c client.Client) {
		web := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec:       tenantPod("web", "serve::8080").Spec,
				},
			},
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
		for _, obj := range []client.Object{web, svc} {
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("creating tenant %T: %v", obj, err)
			}
		}
		eventually(t, 3*time.Minute, "tenant Deployment web available", func(ctx context.Context) (bool, string) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(web), web); err != nil {
				return false, err.Error()
			}
			return web.Status.AvailableReplicas == 2, fmt.Sprintf("%+v", web.Status)
		})
		deployUID = web.UID
		caller := tenantPod("caller", "fetch:http://web.default.svc.cluster.local/", "pause")
		if err := c.Create(ctx, caller); err != nil {
			t.Fatal(err)
		}
		lines := waitTenantOutput(t, alpha, nsA, caller, 1)
		if !strings.HasPrefix(lines[0], "fetched http://web.default.svc.cluster.local/=hostname=web-") {
			t.Errorf("fetching the tenant Service by name: %q", lines[0])
		}
	})

	// Tenant pods reach neither the host apiserver (its Service address,
	// nor where that leads on the bridge) while the control plane does.
	hostPort := strings.TrimPrefix(env.Host.Config.Host[strings.LastIndex(env.Host.Config.Host, ":"):], ":")
	hostTargets := []string{"https://" + firstServiceAddress(t) + ":443/version", "https://" + net.JoinHostPort(env.RealNode.IP.String(), hostPort) + "/version"}
	connected(t, alpha, nsA, func(_ *rest.Config, c client.Client) {
		prober := tenantPod("host-prober", "get:"+hostTargets[0], "get:"+hostTargets[1], "pause")
		if err := c.Create(ctx, prober); err != nil {
			t.Fatal(err)
		}
		for i, line := range waitTenantOutput(t, alpha, nsA, prober, 2) {
			if !strings.HasPrefix(line, "get-error=") {
				t.Errorf("a tenant pod reached the host apiserver at %s: %q", hostTargets[i], line)
			}
		}
	})

	before := hostUIDs(t, alpha, nsA)
	if len(before) < 4 { // web x2, caller, host-prober, and the DNS server
		t.Fatalf("host pods of %s: %v", alpha, before)
	}
	// The control-plane pod deleted: the StatefulSet makes it again, with
	// its claim; every tenant object and host pod is still there.
	if err := hostClient.Delete(ctx, &cp); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	eventually(t, 5*time.Minute, "a new control-plane pod ready", func(ctx context.Context) (bool, string) {
		var p corev1.Pod
		if err := hostClient.Get(ctx, client.ObjectKeyFromObject(&cp), &p); err != nil {
			return false, err.Error()
		}
		return p.UID != cp.UID && ready(&p) == corev1.ConditionTrue, fmt.Sprintf("uid %s, phase %s", p.UID, p.Status.Phase)
	})
	t.Logf("FIGURE control-plane pod deleted to its successor ready: %s", time.Since(restarted).Round(time.Millisecond))
	connected(t, alpha, nsA, func(_ *rest.Config, c client.Client) {
		var web appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web"}, &web); err != nil || web.UID != deployUID {
			t.Errorf("after the restart, Deployment web: uid %s (%v), want %s", web.UID, err, deployUID)
		}
		eventually(t, 2*time.Minute, "web available again", func(ctx context.Context) (bool, string) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(&web), &web); err != nil {
				return false, err.Error()
			}
			return web.Status.AvailableReplicas == 2, fmt.Sprintf("%+v", web.Status)
		})
		// A dry-run create still passes the webhook: the kept client
		// certificate and registration work after the restart.
		if err := c.Create(ctx, tenantPod("after-restart", "pause"), client.DryRunAll); err != nil {
			t.Errorf("a pod create after the restart: %v", err)
		}
	})
	after := hostUIDs(t, alpha, nsA)
	for name, uid := range before {
		if after[name] != uid {
			t.Errorf("host pod %s: uid %s before the restart, %q after: the restart lost or replaced it", name, uid, after[name])
		}
	}

	// A second virtual cluster in another namespace stays apart. Its
	// namespace is the platform's, not podbridge's: delete keeps it.
	if err := hostClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsB, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "baseline",
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := vcluster.Create(ctx, env.Host.Config, createOptions(t, beta, nsB), testWriter{t}); err != nil {
		t.Fatalf("podbridge create %s: %v", beta, err)
	}
	var betaSvc corev1.Service
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: nsB, Name: vcluster.APIServerService(beta)}, &betaSvc); err != nil {
		t.Fatal(err)
	}
	connected(t, alpha, nsA, func(_ *rest.Config, c client.Client) {
		// alpha's tenant, with its own token, at beta's apiserver: its CA
		// does not vouch for beta's certificate, so the token is never
		// sent; and beta's names do not resolve in alpha.
		prober := tenantPod("beta-prober", "lookup:kubernetes.default.svc.cluster.local", "whoami:"+betaSvc.Spec.ClusterIP+":443")
		if err := c.Create(ctx, prober); err != nil {
			t.Fatal(err)
		}
		lines := waitTenantOutput(t, alpha, nsA, prober, 2)
		var alphaSvc corev1.Service
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: nsA, Name: vcluster.APIServerService(alpha)}, &alphaSvc); err != nil {
			t.Fatal(err)
		}
		if want := "lookup kubernetes.default.svc.cluster.local=" + alphaSvc.Spec.ClusterIP; lines[0] != want {
			t.Errorf("alpha's DNS: %q, want %q (its own apiserver's Service, not beta's)", lines[0], want)
		}
		if !strings.HasPrefix(lines[1], "error=whoami:") || !strings.Contains(lines[1], "certificate") {
			t.Errorf("alpha's tenant at beta's apiserver: %q, want a certificate refusal", lines[1])
		}
	})
	connected(t, beta, nsB, func(_ *rest.Config, c client.Client) {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace("default")); err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 0 {
			t.Errorf("beta's default namespace shows %d pods: alpha's?", len(pods.Items))
		}
	})
	clusters, err := vcluster.List(ctx, hostClient, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range clusters {
		names = append(names, c.Namespace+"/"+c.Name)
	}
	if !slices.Contains(names, nsA+"/"+alpha) || !slices.Contains(names, nsB+"/"+beta) {
		t.Errorf("podbridge list: %v", names)
	}

	sideBySide(t, alpha, gamma, nsA)

	// The control plane's idle use: alpha's tenants made their last write
	// before gamma came; nothing writes to alpha while it is sampled.
	logIdleUsage(t, nsA, vcluster.ControlPlane(alpha)+"-0")

	// podbridge delete leaves nothing of alpha, and all of beta; the
	// namespace create made for alpha goes once the test's own object in
	// it is gone, while beta's, the platform's, stays.
	betaBefore, err := vcluster.Remains(ctx, hostClient, beta, nsB)
	if err != nil {
		t.Fatal(err)
	}
	delCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := vcluster.Delete(delCtx, hostClient, alpha, nsA, testWriter{t}); err != nil {
		t.Fatalf("podbridge delete %s: %v", alpha, err)
	}
	if left, err := vcluster.Remains(ctx, hostClient, alpha, nsA); err != nil || len(left) > 0 {
		t.Errorf("after podbridge delete, left of %s: %v (%v)", alpha, left, err)
	}
	if betaAfter, err := vcluster.Remains(ctx, hostClient, beta, nsB); err != nil || !slices.Equal(betaAfter, betaBefore) {
		t.Errorf("deleting %s changed %s's objects: %v before, %v after (%v)", alpha, beta, betaBefore, betaAfter, err)
	}
	if err := hostClient.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: bystander}}); err != nil {
		t.Error(err)
	}
	if deleted, err := vcluster.ReleaseNamespace(delCtx, env.Host.Config, nsA, testWriter{t}); err != nil || !deleted {
		t.Errorf("the namespace create made for %s, empty: deleted %t (%v), want deleted", alpha, deleted, err)
	}
	if err := vcluster.Delete(delCtx, hostClient, beta, nsB, testWriter{t}); err != nil {
		t.Fatalf("podbridge delete %s: %v", beta, err)
	}
	if deleted, err := vcluster.ReleaseNamespace(delCtx, env.Host.Config, nsB, testWriter{t}); err != nil || deleted {
		t.Errorf("the platform's namespace %s, empty: deleted %t (%v), want kept", nsB, deleted, err)
	}
	if err := hostClient.Get(ctx, client.ObjectKey{Name: nsB}, &made); err != nil || made.DeletionTimestamp != nil {
		t.Errorf("the platform's namespace %s after delete: %v, deleting %v", nsB, err, made.DeletionTimestamp)
	}
	if rules, err := realnode.ControlPlaneRules(); err != nil || strings.Contains(rules, "-A") {
		eventually(t, 10*time.Second, "the control-plane exception emptied", func(context.Context) (bool, string) {
			rules, err := realnode.ControlPlaneRules()
			return err == nil && !strings.Contains(rules, "-A"), rules
		})
	}
}

// bystander is an object of the shared namespace that is no virtual
// cluster's: it stays through every delete.
const bystander = "platform-settings"

// sideBySide puts virtual cluster other beside first in first's host
// namespace, where the platform keeps an object of its own, and checks
// they stay apart: each tenant sees only its own objects and names, a
// tenant of other is refused by first's apiserver before its token is
// sent, the NetworkPolicies podbridge writes for each select and admit
// only its own pods (no dataplane here enforces them: their selectors are
// what is checked), and podbridge delete of other leaves first, its host
// pods and the platform's object exactly as they were, and the namespace
// (first's are still in it).
func sideBySide(t *testing.T, first, other, namespace string) {
	ctx := context.Background()
	if err := hostClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: bystander}, Data: map[string]string{"kept": "yes"}}); err != nil {
		t.Fatal(err)
	}
	firstBefore, err := vcluster.Remains(ctx, hostClient, first, namespace)
	if err != nil {
		t.Fatal(err)
	}
	firstPods := hostUIDs(t, first, namespace)
	res, err := vcluster.Create(ctx, env.Host.Config, createOptions(t, other, namespace), testWriter{t})
	if err != nil {
		t.Fatalf("podbridge create %s beside %s: %v", other, first, err)
	}
	t.Logf("FIGURE podbridge create of a cluster beside another in its namespace: %s (DNS %s)", res.Ready.Round(time.Millisecond), res.DNSReady.Round(time.Millisecond))
	if after, err := vcluster.Remains(ctx, hostClient, first, namespace); err != nil || !slices.Equal(after, firstBefore) {
		t.Errorf("creating %s changed %s's objects: %v before, %v after (%v)", other, first, firstBefore, after, err)
	}
	services := map[string]corev1.Service{}
	for _, name := range []string{first, other} {
		var svc corev1.Service
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: vcluster.APIServerService(name)}, &svc); err != nil {
			t.Fatal(err)
		}
		services[name] = svc
	}
	connected(t, other, namespace, func(_ *rest.Config, c client.Client) {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace("default")); err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 0 {
			t.Errorf("%s's default namespace shows %d pods: %s's?", other, len(pods.Items), first)
		}
		// Its own apiserver by name; first's Service web is no name of
		// its; first's apiserver refuses it at the handshake.
		prober := tenantPod("side-prober", "lookup:kubernetes.default.svc.cluster.local", "lookup:web.default.svc.cluster.local",
			"whoami:"+services[first].Spec.ClusterIP+":443", "pause")
		if err := c.Create(ctx, prober); err != nil {
			t.Fatal(err)
		}
		lines := waitTenantOutput(t, other, namespace, prober, 3)
		if want := "lookup kubernetes.default.svc.cluster.local=" + services[other].Spec.ClusterIP; lines[0] != want {
			t.Errorf("%s's DNS: %q, want %q", other, lines[0], want)
		}
		if !strings.HasPrefix(lines[1], "lookup-error web.default.svc.cluster.local=") {
			t.Errorf("%s's tenant looked up %s's Service web: %q", other, first, lines[1])
		}
		if !strings.HasPrefix(lines[2], "error=whoami:") || !strings.Contains(lines[2], "certificate") {
			t.Errorf("%s's tenant at %s's apiserver: %q, want a certificate refusal", other, first, lines[2])
		}
	})
	policiesKeepApart(t, namespace, first, other)

	if err := vcluster.Delete(ctx, hostClient, other, namespace, testWriter{t}); err != nil {
		t.Fatalf("podbridge delete %s: %v", other, err)
	}
	if left, err := vcluster.Remains(ctx, hostClient, other, namespace); err != nil || len(left) > 0 {
		t.Errorf("after podbridge delete, left of %s: %v (%v)", other, left, err)
	}
	if after, err := vcluster.Remains(ctx, hostClient, first, namespace); err != nil || !slices.Equal(after, firstBefore) {
		t.Errorf("deleting %s changed %s's objects: %v before, %v after (%v)", other, first, firstBefore, after, err)
	}
	if after := hostUIDs(t, first, namespace); !maps.Equal(after, firstPods) {
		t.Errorf("deleting %s changed %s's host pods: %v before, %v after", other, first, firstPods, after)
	}
	var cm corev1.ConfigMap
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: bystander}, &cm); err != nil || cm.Data["kept"] != "yes" {
		t.Errorf("the platform's ConfigMap after deleting %s: %v %v", other, cm.Data, err)
	}
	var log strings.Builder
	deleted, err := vcluster.ReleaseNamespace(ctx, env.Host.Config, namespace, &log)
	t.Log(strings.TrimSpace(log.String()))
	if err != nil || deleted || !strings.Contains(log.String(), "ConfigMap "+first+"-admission") {
		t.Errorf("the namespace create made, still holding %s: deleted %t (%v), said %q; want kept, naming %s's ConfigMap", first, deleted, err, log.String(), first)
	}
	connected(t, first, namespace, func(_ *rest.Config, c client.Client) {
		if err := c.Create(ctx, tenantPod("after-side", "pause"), client.DryRunAll); err != nil {
			t.Errorf("a pod create in %s after %s's delete: %v", first, other, err)
		}
	})
}

// policiesKeepApart checks, against the host pods of both clusters, what
// the NetworkPolicies podbridge writes select: each cluster's isolation
// policy and control-plane policies select its own pods only and admit
// none of the other's.
func policiesKeepApart(t *testing.T, namespace string, clusters ...string) {
	t.Helper()
	ctx := context.Background()
	var pods corev1.PodList
	if err := hostClient.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		t.Fatal(err)
	}
	clusterOf := func(p *corev1.Pod) string {
		if p.Labels[translate.LabelManagedBy] == translate.ManagedByValue && p.Labels[translate.LabelVCluster] != "" {
			return p.Labels[translate.LabelVCluster]
		}
		return p.Labels[vcluster.LabelInstance] // a control-plane pod
	}
	for _, vc := range clusters {
		for _, name := range []string{translate.IsolationPolicyName(vc), vcluster.ControlPlane(vc), vcluster.ControlPlane(vc) + "-tenants"} {
			var np networkingv1.NetworkPolicy
			if err := hostClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &np); err != nil {
				t.Errorf("%s's NetworkPolicy %s: %v", vc, name, err)
				continue
			}
			selected, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				t.Fatal(err)
			}
			var peers []labels.Selector
			for _, rule := range np.Spec.Ingress {
				for _, peer := range rule.From {
					if peer.PodSelector != nil && peer.NamespaceSelector == nil {
						s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
						if err != nil {
							t.Fatal(err)
						}
						peers = append(peers, s)
					}
				}
			}
			var mine int
			for i := range pods.Items {
				p := &pods.Items[i]
				own := clusterOf(p) == vc
				if selected.Matches(labels.Set(p.Labels)) {
					if !own {
						t.Errorf("%s's NetworkPolicy %s selects pod %s of %q", vc, name, p.Name, clusterOf(p))
					}
					mine++
				}
				for _, s := range peers {
					if s.Matches(labels.Set(p.Labels)) && !own {
						t.Errorf("%s's NetworkPolicy %s admits pod %s of %q", vc, name, p.Name, clusterOf(p))
					}
				}
			}
			if mine == 0 {
				t.Errorf("%s's NetworkPolicy %s selects none of its pods", vc, name)
			}
		}
	}
}

// idleWindow is how long logIdleUsage samples.
const idleWindow = 30 * time.Second

// logIdleUsage logs the control-plane pod's CPU as the rate of its
// cumulative CPU time over idleWindow or a little more, twice: from its
// cgroups on the real node, read directly at both ends (the figure to
// use), and from two readings of the kubelet's summary API (each with its
// own timestamps; its pod-level reading has run high, its containers'
// agree with the cgroups); and each container's memory working set at
// the end, from the summary.
func logIdleUsage(t *testing.T, namespace, pod string) {
	t.Helper()
	const window = idleWindow
	var p corev1.Pod
	if err := hostClient.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: pod}, &p); err != nil {
		t.Fatal(err)
	}
	cgroupsBefore, err := readCgroupCPU(&p)
	if err != nil {
		t.Fatalf("reading the pod's cgroups: %v", err)
	}
	first, err := readUsage(context.Background(), namespace, pod)
	if err != nil {
		t.Fatalf("reading the kubelet's summary: %v", err)
	}
	// Every 2 s, not eventually's tenth of a second: the kubelet's
	// readings change every few seconds, and the reads themselves must
	// not be what is measured.
	var second podUsage
	err = wait.PollUntilContextTimeout(context.Background(), 2*time.Second, window+time.Minute, false, func(ctx context.Context) (bool, error) {
		var err error
		second, err = readUsage(ctx, namespace, pod)
		return err == nil && second.CPU.Time.Sub(first.CPU.Time.Time) >= window && time.Since(cgroupsBefore.at) >= window, nil
	})
	if err != nil {
		t.Fatalf("no kubelet reading of %s %s after the first (%s; last %s): %v", pod, window, first.CPU.Time, second.CPU.Time, err)
	}
	cgroupsAfter, err := readCgroupCPU(&p)
	if err != nil {
		t.Fatalf("reading the pod's cgroups: %v", err)
	}
	dt := cgroupsAfter.at.Sub(cgroupsBefore.at)
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(cgroupsAfter.usage)) {
		if name != "" {
			parts = append(parts, fmt.Sprintf("%s %dm", name, int64(float64(cgroupsAfter.usage[name]-cgroupsBefore.usage[name])/dt.Seconds()/1e6)))
		}
	}
	t.Logf("FIGURE control-plane pod %s CPU over %s from its cgroups (cpuacct): pod %dm; %s", pod, dt.Round(time.Second),
		int64(float64(cgroupsAfter.usage[""]-cgroupsBefore.usage[""])/dt.Seconds()/1e6), strings.Join(parts, ", "))
	rate := func(a, b cpuStats) int64 {
		dt := b.Time.Sub(a.Time.Time)
		if dt <= 0 {
			return -1
		}
		return int64(float64(b.UsageCoreNanoSeconds-a.UsageCoreNanoSeconds) / dt.Seconds() / 1e6)
	}
	t.Logf("FIGURE control-plane pod %s idle over %s: CPU %dm (cumulative CPU time's rate), memory working set %d MiB",
		pod, second.CPU.Time.Sub(first.CPU.Time.Time).Round(time.Second), rate(first.CPU, second.CPU), second.Memory.WorkingSetBytes>>20)
	for _, c := range second.Containers {
		for _, b := range first.Containers {
			if b.Name == c.Name {
				t.Logf("FIGURE   %s: CPU %dm, memory %d MiB", c.Name, rate(b.CPU, c.CPU), c.Memory.WorkingSetBytes>>20)
			}
		}
	}
}

// cgroupCPU is the cumulative CPU time (ns) of a pod's cgroup (key "")
// and of each of its running containers', read at one moment.
type cgroupCPU struct {
	at    time.Time
	usage map[string]uint64
}

// readCgroupCPU reads the real node's cgroups of a pod directly, as the
// kubelet's cAdvisor does (cgroup v1 cpuacct or v2 cpu.stat, cgroupfs
// driver: kubepods/<qos>/pod<uid>/<container id>).
func readCgroupCPU(p *corev1.Pod) (cgroupCPU, error) {
	qos := ""
	if p.Status.QOSClass != corev1.PodQOSGuaranteed {
		qos = strings.ToLower(string(p.Status.QOSClass))
	}
	ids := map[string]string{"": ""}
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if cs.State.Running != nil {
			_, id, _ := strings.Cut(cs.ContainerID, "://")
			ids[cs.Name] = id
		}
	}
	out := cgroupCPU{at: time.Now(), usage: map[string]uint64{}}
	for name, id := range ids {
		v1 := filepath.Join("/sys/fs/cgroup/cpuacct/kubepods", qos, "pod"+string(p.UID), id, "cpuacct.usage")
		if b, err := os.ReadFile(v1); err == nil {
			n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				return out, fmt.Errorf("%s: %w", v1, err)
			}
			out.usage[name] = n
			continue
		}
		v2 := filepath.Join("/sys/fs/cgroup/kubepods", qos, "pod"+string(p.UID), id, "cpu.stat")
		b, err := os.ReadFile(v2)
		if err != nil {
			return out, fmt.Errorf("no cgroup v1 %s nor v2 %s: %w", v1, v2, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return out, fmt.Errorf("%s: %w", v2, err)
				}
				out.usage[name] = n * 1000
			}
		}
	}
	return out, nil
}

type cpuStats struct {
	Time                 metav1.Time
	UsageCoreNanoSeconds uint64
}

type podUsage struct {
	PodRef     struct{ Name, Namespace string }
	CPU        cpuStats
	Memory     struct{ WorkingSetBytes uint64 }
	Containers []struct {
		Name   string
		CPU    cpuStats
		Memory struct{ WorkingSetBytes uint64 }
	}
}

// readUsage reads a pod's stats from the real kubelet's summary API.
func readUsage(ctx context.Context, namespace, pod string) (podUsage, error) {
	b, err := hostSet.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", env.RealNode.Name(), "proxy/stats/summary").DoRaw(ctx)
	if err != nil {
		return podUsage{}, err
	}
	var summary struct{ Pods []podUsage }
	if err := json.Unmarshal(b, &summary); err != nil {
		return podUsage{}, fmt.Errorf("decoding the kubelet's summary: %w", err)
	}
	for _, p := range summary.Pods {
		if p.PodRef.Name == pod && p.PodRef.Namespace == namespace {
			return p, nil
		}
	}
	return podUsage{}, fmt.Errorf("the kubelet's summary has no pod %s/%s", namespace, pod)
}

// controlPlaneLogs logs the last lines of each container of a virtual
// cluster's control-plane pod: what a failed test needs to find its cause.
func controlPlaneLogs(t *testing.T, name, namespace string) {
	pod := vcluster.ControlPlane(name) + "-0"
	for _, c := range []string{"init", "kine", "kube-apiserver", "rbac", "kube-controller-manager", "webhook", "reflector", "certs"} {
		b, err := hostSet.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: c, TailLines: ptr.To[int64](15)}).DoRaw(context.Background())
		t.Logf("last lines of %s/%s %s (%v):\n%s", namespace, pod, c, err, b)
	}
}

// firstServiceAddress is the host kubernetes Service's address.
func firstServiceAddress(t *testing.T) string {
	t.Helper()
	var svc corev1.Service
	if err := hostClient.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "kubernetes"}, &svc); err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// testWriter writes podbridge create's and delete's progress to the test
// log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
