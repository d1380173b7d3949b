//go:build node

package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	const alpha, beta, nsA, nsB = "alpha", "beta", "vc-alpha", "vc-beta"
	ctx := context.Background()
	t.Cleanup(func() {
		for name, ns := range map[string]string{alpha: nsA, beta: nsB} {
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

	// A second virtual cluster in another namespace stays apart.
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
	logControlPlaneUsage(t, nsA, vcluster.ControlPlane(alpha)+"-0")

	// podbridge delete leaves nothing of alpha, and all of beta.
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
	if err := vcluster.Delete(delCtx, hostClient, beta, nsB, testWriter{t}); err != nil {
		t.Fatalf("podbridge delete %s: %v", beta, err)
	}
	if rules, err := realnode.ControlPlaneRules(); err != nil || strings.Contains(rules, "-A") {
		eventually(t, 10*time.Second, "the control-plane exception emptied", func(context.Context) (bool, string) {
			rules, err := realnode.ControlPlaneRules()
			return err == nil && !strings.Contains(rules, "-A"), rules
		})
	}
}

// logControlPlaneUsage logs the control-plane pod's CPU and memory as the
// real kubelet's summary API reports them.
func logControlPlaneUsage(t *testing.T, namespace, pod string) {
	t.Helper()
	b, err := hostSet.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", env.RealNode.Name(), "proxy/stats/summary").DoRaw(context.Background())
	if err != nil {
		t.Logf("reading the kubelet's summary: %v", err)
		return
	}
	var summary struct {
		Pods []struct {
			PodRef     struct{ Name, Namespace string }
			CPU        struct{ UsageNanoCores uint64 }
			Memory     struct{ WorkingSetBytes uint64 }
			Containers []struct {
				Name   string
				CPU    struct{ UsageNanoCores uint64 }
				Memory struct{ WorkingSetBytes uint64 }
			}
		}
	}
	if err := json.Unmarshal(b, &summary); err != nil {
		t.Logf("decoding the kubelet's summary: %v", err)
		return
	}
	for _, p := range summary.Pods {
		if p.PodRef.Name != pod || p.PodRef.Namespace != namespace {
			continue
		}
		t.Logf("FIGURE control-plane pod idle: CPU %dm, memory working set %d MiB", p.CPU.UsageNanoCores/1e6, p.Memory.WorkingSetBytes>>20)
		for _, c := range p.Containers {
			t.Logf("FIGURE   %s: CPU %dm, memory %d MiB", c.Name, c.CPU.UsageNanoCores/1e6, c.Memory.WorkingSetBytes>>20)
		}
	}
}

// controlPlaneLogs logs the last lines of each container of a virtual
// cluster's control-plane pod: what a failed test needs to find its cause.
func controlPlaneLogs(t *testing.T, name, namespace string) {
	pod := vcluster.ControlPlane(name) + "-0"
	for _, c := range []string{"init", "kine", "kube-apiserver", "kube-controller-manager", "webhook", "reflector"} {
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
