//go:build node

package node

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/realnode"
)

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// The container reads the virtual pod's name, namespace, UID, a label and
// an annotation through the downward API, and its hostname is the virtual
// name: not the host pod's.
func TestDownwardAPIReadsVirtualValues(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "downward", "env", "pause")
	pod.Labels["tier"] = "web"
	pod.Annotations = map[string]string{"example.com/note": "hello"}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("POD_UID", "metadata.uid"), fieldEnv("POD_TIER", "metadata.labels['tier']"),
		fieldEnv("POD_NOTE", "metadata.annotations['example.com/note']"),
	}
	create(t, pod)
	waitVirtualReady(t, pod)
	waitForLog(t, pod, 30*time.Second,
		"POD_NAME=downward", "POD_NAMESPACE="+ns, "POD_UID="+string(pod.UID),
		"POD_TIER=web", "POD_NOTE=hello", "HOSTNAME=downward")
}

// The projected token authenticates against the virtual apiserver, found
// through KUBERNETES_SERVICE_HOST/PORT (the bridge address) and trusted
// through the mounted CA: SelfSubjectReview names the virtual service
// account the pod runs as.
func TestTokenAuthenticatesAgainstVirtualAPIServer(t *testing.T) {
	ns := namespace(t)
	if err := virtualClient.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	pod := realPod(ns, "token", "env", "whoami", "pause")
	pod.Spec.ServiceAccountName = "reader"
	create(t, pod)
	waitVirtualReady(t, pod)
	tc := env.Options.Translate
	waitForLog(t, pod, 30*time.Second,
		"KUBERNETES_SERVICE_HOST="+tc.APIServerHost,
		"KUBERNETES_SERVICE_PORT="+strconv.Itoa(int(tc.APIServerPort)),
		"whoami=system:serviceaccount:"+ns+":reader")
}

// The reflector refreshes a pod's projected token (here tokenRefreshAfter
// after issue) and the kubelet writes the new token into the running
// container's volume: the container sees its token file change, and the
// new token authenticates against the virtual apiserver as the pod's
// virtual service account.
func TestRefreshedTokenReachesTheContainer(t *testing.T) {
	ns := namespace(t)
	if err := virtualClient.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "rotator", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	pod := realPod(ns, "refresh", "whoami", "refresh:2m", "pause")
	pod.Spec.ServiceAccountName = "rotator"
	create(t, pod)
	waitVirtualReady(t, pod)
	user := "system:serviceaccount:" + ns + ":rotator"
	started := time.Now()
	values := map[string]string{}
	eventually(t, 2*time.Minute, "a refreshed token in the container, and who it is", func(ctx context.Context) (bool, string) {
		out, err := logs(ctx, pod, false)
		if err != nil {
			return false, err.Error()
		}
		for _, line := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				values[k] = v
			}
		}
		return values["whoami-refreshed"] != "" || values["error"] != "", out
	})
	t.Logf("token %s refreshed to %s within %s of the pod being Ready", values["token"], values["token-refreshed"], time.Since(started).Round(time.Second))
	if values["error"] != "" {
		t.Fatalf("the container: %s", values["error"])
	}
	if values["whoami"] != user {
		t.Errorf("first token is %q, want %q", values["whoami"], user)
	}
	if values["token"] == "" || values["token-refreshed"] == values["token"] {
		t.Errorf("token file did not change: %q then %q", values["token"], values["token-refreshed"])
	}
	if values["whoami-refreshed"] != user {
		t.Errorf("refreshed token is %q, want %q", values["whoami-refreshed"], user)
	}
}

// A running pod keeps reaching its gateway, the node IP where the virtual
// apiserver listens, while other pods come and go on the bridge. A port
// with the lowest possible MAC joins and then leaves (as a pod's veth
// does): a bridge that took its ports' lowest MAC would change address
// twice, and the pod's connections would hang on its stale ARP entry.
func TestPodKeepsItsGatewayWhilePodsComeAndGo(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "gateway", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	bridgeMAC := func() string {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", realnode.DefaultBridge, "address"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	ipLink := func(args ...string) error {
		out, err := exec.Command("ip", append([]string{"link"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip link %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	const port, peer = "pbgwtest0", "pbgwtest1"
	_ = ipLink("del", port) // left by a killed run
	before := bridgeMAC()
	if err := ipLink("add", port, "address", "00:00:00:00:00:01", "type", "veth", "peer", "name", peer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ipLink("del", port) })
	for _, args := range [][]string{{"set", port, "master", realnode.DefaultBridge}, {"set", port, "up"}, {"set", peer, "up"}} {
		if err := ipLink(args...); err != nil {
			t.Fatal(err)
		}
	}
	if mac := bridgeMAC(); mac != before {
		t.Errorf("the bridge's MAC changed from %s to %s when a port joined", before, mac)
	}
	want := "whoami=system:serviceaccount:" + ns + ":default\n"
	if out := execWorkload(t, pod, "", "whoami"); out != want {
		t.Fatalf("whoami with the port joined: %q, want %q", out, want)
	}
	if err := ipLink("del", port); err != nil {
		t.Fatal(err)
	}
	if mac := bridgeMAC(); mac != before {
		t.Errorf("the bridge's MAC changed from %s to %s when a port left", before, mac)
	}
	if out := execWorkload(t, pod, "", "whoami"); out != want {
		t.Fatalf("whoami with the port gone: %q, want %q", out, want)
	}
}

// A mounted ConfigMap holds the virtual content, and an update of the
// virtual ConfigMap reaches the file in the running container.
func TestConfigMapContentAndUpdateArrive(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns}, Data: map[string]string{"mode": "first"}}
	if err := virtualClient.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	pod := realPod(ns, "configmap", "watch:/etc/settings/mode")
	pod.Spec.Volumes = []corev1.Volume{{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "settings", MountPath: "/etc/settings"}}
	create(t, pod)
	waitVirtualReady(t, pod)
	waitForLog(t, pod, 30*time.Second, "first")
	cm.Data["mode"] = "second"
	if err := virtualClient.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, pod, 2*time.Minute, "first", "second")
}

// Files of the whole label and annotation maps hold the virtual pod's, as
// the kubelet formats them (the host pod's maps hold host keys), and follow
// the tenant's updates of them.
func TestDownwardAPIFilesOfWholeMapsFollowTheVirtualPod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := realPod(ns, "maps", "watch:/etc/podinfo/labels")
	pod.Labels["tier"] = "web"
	pod.Annotations = map[string]string{"note": `say "hi"`}
	pod.Spec.Volumes = []corev1.Volume{{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		},
	}}}}
	mount := []corev1.VolumeMount{{Name: "podinfo", MountPath: "/etc/podinfo"}}
	pod.Spec.Containers[0].VolumeMounts = mount
	annotations := pod.Spec.Containers[0]
	annotations.Name, annotations.Args = "a", []string{"watch:/etc/podinfo/annotations"}
	pod.Spec.Containers = append(pod.Spec.Containers, annotations)
	create(t, pod)
	waitVirtualReady(t, pod)
	waitForLog(t, pod, 30*time.Second, `app="maps"`, `tier="web"`)
	waitForContainerLog(t, pod, "a", 30*time.Second, `note="say \"hi\""`)

	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), current); err != nil {
			return err
		}
		current.Labels["tier"], current.Annotations["note"] = "db", "bye"
		return virtualClient.Update(ctx, current)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitForLog(t, pod, 2*time.Minute, `tier="db"`)
	waitForContainerLog(t, pod, "a", 2*time.Minute, `note="bye"`)
}

// A mounted Secret holds the virtual Secret's content (through its host
// copy).
func TestSecretContentArrives(t *testing.T) {
	ns := namespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, StringData: map[string]string{"password": "s3cret"}}
	if err := virtualClient.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	pod := realPod(ns, "secret", "cat:/etc/creds/password", "pause")
	pod.Spec.Volumes = []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "creds", MountPath: "/etc/creds"}}
	create(t, pod)
	waitVirtualReady(t, pod)
	waitForLog(t, pod, 30*time.Second, "== /etc/creds/password", "s3cret")
}

// /etc/resolv.conf in the container has the virtual cluster's DNS
// settings: its nameserver and the virtual namespace's search domains.
func TestResolvConfHasVirtualDNS(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "dns", "cat:/etc/resolv.conf", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	waitForLog(t, pod, 30*time.Second,
		"nameserver "+env.Options.Translate.DNSNameserver,
		"search "+ns+".svc.cluster.local svc.cluster.local cluster.local",
		"options ndots:5")
}

// A container that crashes again and again shows its restart count, the
// last termination (exit code 2 of a Go panic) and CrashLoopBackOff in the
// virtual pod's status.
func TestCrashLoopReachesVirtualPod(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "crash", "crash")
	create(t, pod)
	eventually(t, 2*time.Minute, "CrashLoopBackOff in the virtual pod", func(ctx context.Context) (bool, string) {
		p, err := virtualPod(ctx, pod)
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, fmt.Sprint(err)
		}
		s := p.Status.ContainerStatuses[0]
		last := s.LastTerminationState.Terminated
		return s.RestartCount >= 1 && last != nil && last.ExitCode == 2 && s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff",
			fmt.Sprintf("%+v", s)
	})
	eventually(t, 30*time.Second, "the crashed container's output", func(ctx context.Context) (bool, string) {
		out, err := logs(ctx, pod, true)
		return err == nil && strings.Contains(out, "crashing=true"), fmt.Sprint(out, err)
	})
}

// A readiness probe that starts failing in the container turns the
// virtual pod's Ready condition False.
func TestFailingReadinessProbeFlipsVirtualReady(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "probe", "serve::8080")
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
	create(t, pod)
	p := waitVirtualReady(t, pod)
	// The pod's address is on the test bed's bridge.
	if ip := net.ParseIP(p.Status.PodIP); ip == nil || !env.RealNode.Subnet().Contains(ip) {
		t.Fatalf("virtual pod IP %q is not on the real node's bridge", p.Status.PodIP)
	}
	resp, err := http.Post("http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/unready", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, 30*time.Second, "virtual Ready False", func(ctx context.Context) (bool, string) {
		p, err := virtualPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		return ready(p) == corev1.ConditionFalse, string(ready(p))
	})
	waitForLog(t, pod, 10*time.Second, "unready=true")
}

// An image the node does not have shows its waiting reason in the
// virtual pod (PullNever: nothing is fetched from off this machine).
func TestMissingImageShowsWaitingReason(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "missing")
	pod.Spec.Containers[0].Image = "podbridge.local/missing:1"
	pod.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
	create(t, pod)
	eventually(t, 90*time.Second, "ErrImageNeverPull in the virtual pod", func(ctx context.Context) (bool, string) {
		p, err := virtualPod(ctx, pod)
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, fmt.Sprint(err)
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "ErrImageNeverPull", fmt.Sprintf("%+v", p.Status.ContainerStatuses[0].State)
	})
}

// A pod that makes the node pull (pullPolicy Always, an image nowhere on
// the machine) gets ErrImagePull/ImagePullBackOff in the virtual pod, and
// the kubelet's Failed event, copied to the virtual pod, shows why: the
// pull went to the node's loopback proxy and was refused there, neither
// looked up in DNS nor sent to a remote address. The proxy saw the
// registry containerd tried.
func TestImagePullsNeverLeaveTheMachine(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "pull")
	pod.Spec.Containers[0].Image = "registry.invalid.example/none:1"
	pod.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	create(t, pod)
	eventually(t, 90*time.Second, "ErrImagePull or ImagePullBackOff in the virtual pod", func(ctx context.Context) (bool, string) {
		p, err := virtualPod(ctx, pod)
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false, fmt.Sprint(err)
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff"), fmt.Sprintf("%+v", p.Status.ContainerStatuses[0].State)
	})
	proxy := strings.TrimPrefix(env.RealNode.PullProxy(), "http://")
	var message string
	eventually(t, 60*time.Second, "the pull's Failed event on the virtual pod", func(ctx context.Context) (bool, string) {
		events := &corev1.EventList{}
		if err := virtualClient.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.InvolvedObject.Name == pod.Name && e.Reason == "Failed" && strings.Contains(e.Message, "registry.invalid.example/none:1") {
				message = e.Message
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "\n")
	})
	t.Logf("pull failure: %s", message)
	if !strings.Contains(message, "refused by the real node's registry proxy at "+proxy) || !strings.Contains(message, "image pulls never leave this machine") {
		t.Errorf("the pull failed for another reason than the loopback proxy's refusal at %s: %s", proxy, message)
	}
	for _, other := range []string{"lookup", "no such host", "dial tcp", "i/o timeout"} {
		if strings.Contains(message, other) {
			t.Errorf("the pull looked up or dialled a registry (%q): %s", other, message)
		}
	}
	if refused := env.RealNode.RefusedPulls(); !slices.Contains(refused, "registry.invalid.example:443") {
		t.Errorf("the proxy refused %v, want registry.invalid.example:443 among them", refused)
	}
}

// Deleting the virtual pod delivers SIGTERM to the container, which may
// finish its work within the pod's grace period, carried to the host pod.
func TestDeletionDeliversSIGTERMWithinGracePeriod(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := realPod(ns, "graceful", "pause:3s") // on SIGTERM: report, work 3 s, exit 0
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](20)
	create(t, pod)
	waitVirtualReady(t, pod)
	k := hostKey(pod)
	stream, err := hostSet.CoreV1().Pods(k.Namespace).GetLogs(k.Name, &corev1.PodLogOptions{Container: "w", Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	lines := make(chan []string, 1)
	go func() {
		var got []string
		s := bufio.NewScanner(stream)
		for s.Scan() {
			got = append(got, s.Text())
		}
		lines <- got
	}()
	if err := virtualClient.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the host pod terminating with the pod's grace period", func(ctx context.Context) (bool, string) {
		h := &corev1.Pod{}
		if err := hostClient.Get(ctx, k, h); err != nil {
			return false, err.Error()
		}
		return h.DeletionTimestamp != nil && ptr.Deref(h.DeletionGracePeriodSeconds, -1) == 20, fmt.Sprint(h.DeletionGracePeriodSeconds)
	})
	// The stream ends when the container does.
	var got []string
	select {
	case got = <-lines:
	case <-time.After(40 * time.Second):
		t.Fatal("the container's output did not end within 40 s of the deletion")
	}
	if !containsLine(got, "signal=terminated") || !containsLine(got, "stopped=true") {
		t.Fatalf("container output %q: want SIGTERM received and the work finished", got)
	}
	eventually(t, 60*time.Second, "both pods gone", func(ctx context.Context) (bool, string) {
		errV := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		errH := hostClient.Get(ctx, k, &corev1.Pod{})
		return apierrors.IsNotFound(errV) && apierrors.IsNotFound(errH), fmt.Sprint(errV, errH)
	})
}

// A Job whose container exits 0 completes; one whose container exits 1 is
// retried (a second pod) until its backoff limit fails it.
func TestJobExitCodesDriveTheVirtualJob(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	job := func(name, code string) *batchv1.Job {
		p := realPod(ns, name, "exit:"+code)
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](1), Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: p.Labels}, Spec: p.Spec,
			}},
		}
	}
	ok, fail := job("succeeds", "0"), job("fails", "1")
	for _, j := range []*batchv1.Job{ok, fail} {
		if err := virtualClient.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = virtualClient.Delete(context.Background(), j, client.PropagationPolicy(metav1.DeletePropagationBackground))
		})
	}
	condition := func(j *batchv1.Job, want batchv1.JobConditionType) func(ctx context.Context) (bool, string) {
		return func(ctx context.Context) (bool, string) {
			got := &batchv1.Job{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(j), got); err != nil {
				return false, err.Error()
			}
			for _, c := range got.Status.Conditions {
				if c.Type == want && c.Status == corev1.ConditionTrue {
					return want != batchv1.JobFailed || got.Status.Failed >= 2, fmt.Sprintf("%+v", got.Status)
				}
			}
			return false, fmt.Sprintf("%+v", got.Status)
		}
	}
	eventually(t, 2*time.Minute, "Job succeeds Complete", condition(ok, batchv1.JobComplete))
	eventually(t, 3*time.Minute, "Job fails retried then Failed", condition(fail, batchv1.JobFailed))
}

// A hostile pod on the real node cannot use the kubelet on the bridge: the
// node's firewall refuses the pod's connections to its port (and the
// kubelet would accept only the host apiserver's client certificate
// anyway: no anonymous read of other pods, no exec); the read-only port is
// closed.
func TestPodCannotUseTheKubeletAPI(t *testing.T) {
	ns := namespace(t)
	node := net.JoinHostPort(env.RealNode.IP.String(), "10250")
	pod := realPod(ns, "hostile", "get:https://"+node+"/pods", "get:https://"+node+"/run/"+ns+"/hostile/w", "get:http://"+net.JoinHostPort(env.RealNode.IP.String(), "10255")+"/pods", "pause")
	create(t, pod)
	waitVirtualReady(t, pod)
	eventually(t, 30*time.Second, "the kubelet's ports refused to the pod", func(ctx context.Context) (bool, string) {
		out, err := logs(ctx, pod, false)
		if err != nil {
			return false, err.Error()
		}
		lines := strings.Split(out, "\n")
		if len(lines) < 3 {
			return false, out
		}
		for _, l := range lines[:3] {
			if !strings.HasPrefix(l, "get-error=") || !strings.Contains(l, "connection refused") {
				return false, out
			}
		}
		return true, ""
	})
}

// A second real node on the machine is refused while one runs: the
// kubelet's ports and fixed paths cannot be shared.
func TestSecondRealNodeIsRefused(t *testing.T) {
	opts := *env.Options.RealNode
	opts.StateDir = t.TempDir()
	n, err := realnode.Start(context.Background(), opts)
	if err == nil {
		_ = n.Stop()
		t.Fatal("a second real node started beside the first")
	}
	if !strings.Contains(err.Error(), "another real node runs on this machine") {
		t.Errorf("refusal: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", realnode.DefaultBridge)); err != nil {
		t.Errorf("the first node's bridge went with the refused start: %v", err)
	}
}

// A privileged pod asking for the real node is refused at create, so it
// never reaches the host, where it would really run privileged.
func TestPrivilegedPodNeverStarts(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := realPod(ns, "privileged", "pause")
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	err := virtualClient.Create(ctx, pod)
	if err == nil {
		_ = virtualClient.Delete(ctx, pod)
		t.Fatal("a privileged pod was admitted")
	}
	if !strings.Contains(err.Error(), "privileged") {
		t.Errorf("refusal does not name privileged: %v", err)
	}
	if err := hostClient.Get(ctx, hostKey(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("host pod of the refused pod: %v, want NotFound", err)
	}
}
