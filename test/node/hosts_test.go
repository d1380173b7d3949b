//go:build node

package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
)

// A pod with a hostname and a subdomain behind a headless Service of that
// name: `hostname -f` in its init container and in its containers prints
// <hostname>.<subdomain>.<VIRTUAL namespace>.svc.cluster.local (podbridge's
// hosts-file init container, --hosts-image, rewrote the host kubelet's
// line, which names the host namespace), a container mounting its own
// /etc/hosts keeps it, and that FQDN and the StatefulSet-style
// <pod>.<service> short name resolve through the tenant's DNS, from
// another pod, to the pod's IP.
func TestHostnameFQDNIsTheVirtualOne(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "web"},
			// The pod's fqdn containers exit: it is never Ready.
			PublishNotReadyAddresses: true,
			Ports:                    []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := virtualClient.Create(ctx, headless); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), headless) })

	printFQDN := func(name string) corev1.Container {
		return corev1.Container{Name: name, Image: realnode.HostsImage, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"/podbridge-hosts", "--print-fqdn"}}
	}
	pod := realPod(ns, "web", "cat:/etc/hosts", "serve::8080")
	pod.Labels = map[string]string{"app": "web"}
	pod.Spec.Hostname, pod.Spec.Subdomain = "web-0", "db"
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.InitContainers = []corev1.Container{printFQDN("fqdn-init")}
	pod.Spec.Containers = append(pod.Spec.Containers, printFQDN("fqdn"))
	// A container with a hosts file of its own keeps it, as the kubelet
	// leaves it on any cluster.
	own := printFQDN("own-hosts")
	own.VolumeMounts = []corev1.VolumeMount{{Name: "own", MountPath: "/etc/hosts", SubPath: "hosts"}}
	pod.Spec.Containers = append(pod.Spec.Containers, own)
	pod.Spec.Volumes = []corev1.Volume{{Name: "own", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "own-hosts"},
	}}}}
	ownHosts := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-hosts"},
		Data:       map[string]string{"hosts": "127.0.0.1\tlocalhost\n10.255.255.1\tweb-0.tenant.example\tweb-0\n"},
	}
	if err := virtualClient.Create(ctx, ownHosts); err != nil {
		t.Fatal(err)
	}
	create(t, pod)
	t.Cleanup(func() {
		if t.Failed() {
			logHostPod(t, pod)
		}
	})

	fqdn := fmt.Sprintf("web-0.db.%s.svc.cluster.local", ns)
	waitForContainerLog(t, pod, "fqdn-init", 90*time.Second, fqdn)
	waitForContainerLog(t, pod, "fqdn", 30*time.Second, fqdn)
	waitForContainerLog(t, pod, "own-hosts", 30*time.Second, "web-0.tenant.example")

	var running *corev1.Pod
	eventually(t, 60*time.Second, "virtual pod "+pod.Name+" with an IP and w running", func(ctx context.Context) (bool, string) {
		var err error
		if running, err = virtualPod(ctx, pod); err != nil {
			return false, err.Error()
		}
		for _, s := range running.Status.ContainerStatuses {
			if s.Name == "w" && s.State.Running != nil && running.Status.PodIP != "" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("phase %s ip %q", running.Status.Phase, running.Status.PodIP)
	})
	// The file w sees: the pod's line names the virtual namespace, never
	// the host's; podbridge's init container is not the tenant's to see.
	waitForLog(t, pod, 30*time.Second, running.Status.PodIP+"\t"+fqdn+"\tweb-0")
	out, err := logs(ctx, pod, false)
	if err != nil {
		t.Fatal(err)
	}
	if hostNS := env.Options.Translate.HostNamespace; strings.Contains(out, "."+hostNS+".svc") {
		t.Errorf("w's /etc/hosts names the host namespace %s:\n%s", hostNS, out)
	}
	for _, s := range running.Status.InitContainerStatuses {
		if s.Name == translate.HostsContainerName {
			t.Errorf("the virtual pod's status shows podbridge's init container: %+v", running.Status.InitContainerStatuses)
		}
	}
	host := &corev1.Pod{}
	if err := hostClient.Get(ctx, hostKey(pod), host); err != nil {
		t.Fatal(err)
	}
	if len(host.Spec.InitContainers) != 2 || host.Spec.InitContainers[0].Name != translate.HostsContainerName {
		t.Errorf("host pod's init containers: %+v", host.Spec.InitContainers)
	}

	// Through the tenant's DNS, from another pod: the FQDN and the
	// <pod>.<service> short name (search domains) are the pod's IP.
	caller := realPod(ns, "caller", "pause")
	create(t, caller)
	waitVirtualReady(t, caller)
	for _, name := range []string{fqdn, "web-0.db"} {
		if got, want := strings.TrimSpace(execWorkload(t, caller, "", "lookup:"+name)), "lookup "+name+"="+running.Status.PodIP; got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// A pod without a subdomain gets no init container: the kubelet's file
// names only the hostname, as on any cluster, and `hostname -f` is the
// hostname.
func TestHostnameWithoutSubdomainKeepsKubeletFile(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := realPod(ns, "plain", "pause")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
		Name: "fqdn", Image: realnode.HostsImage, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"/podbridge-hosts", "--print-fqdn"},
	})
	create(t, pod)
	waitForContainerLog(t, pod, "fqdn", 90*time.Second, "plain")
	host := &corev1.Pod{}
	if err := hostClient.Get(ctx, hostKey(pod), host); err != nil {
		t.Fatal(err)
	}
	if len(host.Spec.InitContainers) != 0 {
		t.Errorf("host pod's init containers: %+v", host.Spec.InitContainers)
	}
}

// logHostPod logs the host pod's containers' states and its events: what a
// failed wait on one of its containers needs.
func logHostPod(t *testing.T, pod *corev1.Pod) {
	ctx := context.Background()
	host := &corev1.Pod{}
	if err := hostClient.Get(ctx, hostKey(pod), host); err != nil {
		t.Logf("host pod: %v", err)
		return
	}
	t.Logf("host pod %s: phase %s, gates %v, init %+v, containers %+v", host.Name, host.Status.Phase, host.Spec.SchedulingGates, host.Status.InitContainerStatuses, host.Status.ContainerStatuses)
	events := &corev1.EventList{}
	if err := hostClient.List(ctx, events, client.InNamespace(host.Namespace)); err == nil {
		for _, e := range events.Items {
			if e.InvolvedObject.Name == host.Name {
				t.Logf("host event: %s %s: %s", e.Reason, e.InvolvedObject.FieldPath, e.Message)
			}
		}
	}
	virtualEvents := &corev1.EventList{}
	if err := virtualClient.List(ctx, virtualEvents, client.InNamespace(pod.Namespace)); err == nil {
		for _, e := range virtualEvents.Items {
			t.Logf("virtual event: %s %s %s: %s", e.InvolvedObject.Name, e.Reason, e.InvolvedObject.FieldPath, e.Message)
		}
	}
}
