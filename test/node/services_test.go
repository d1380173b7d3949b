//go:build node

package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
)

// The test bed's service network: a host Service (ClusterIP, with a
// selector), created straight on the host apiserver as a platform's would
// be, in front of two pods on the real node. A third pod reaches it at its
// ClusterIP (kube-proxy's DNAT, EndpointSlices from the host's
// controllers). A pod that turns unready drops out of the EndpointSlice
// and of kube-proxy's rules while the other still answers; with neither
// ready the ClusterIP answers nothing, though both pods still serve at
// their own addresses. The node's firewall stays first in INPUT and
// FORWARD all along.
func TestHostServiceRoutesToReadyPodsOnTheRealNode(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	var backends []*corev1.Pod
	for _, name := range []string{"svc-a", "svc-b"} {
		p := realPod(ns, name, "serve::8080")
		p.Labels["svc"] = "web"
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
			PeriodSeconds: 1, FailureThreshold: 1,
		}
		create(t, p)
		backends = append(backends, p)
	}
	caller := realPod(ns, "svc-client", "pause")
	create(t, caller)
	ips := map[string]string{}
	for _, p := range backends {
		waitVirtualReady(t, p)
		ips[p.Name] = hostPodIP(t, p)
	}
	waitVirtualReady(t, caller)

	tc := env.Options.Translate
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: tc.HostNamespace, GenerateName: "web-"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP,
			// The host pods' labels: the tenant's under their host keys,
			// scoped to this virtual cluster and namespace.
			Selector: map[string]string{translate.TenantKey("svc"): "web", translate.LabelNamespace: ns, translate.LabelVCluster: tc.VCluster},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := hostClient.Create(ctx, svc); err != nil {
		t.Fatalf("creating the host Service: %v", err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), svc) })
	if ip := net.ParseIP(svc.Spec.ClusterIP); ip == nil || !env.RealNode.ServiceCIDR().Contains(ip) {
		t.Fatalf("ClusterIP %q is not in the real node's service range %s", svc.Spec.ClusterIP, env.RealNode.ServiceCIDR())
	}
	url := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	get := func() string { return strings.TrimSpace(execWorkload(t, caller, "", "get:"+url)) }
	a, b := ips["svc-a"]+":8080", ips["svc-b"]+":8080"

	waitEndpoints(t, svc, a, b)
	if out := get(); out != "get=200" {
		t.Fatalf("the Service at its ClusterIP %s, from another pod: %q, want get=200", url, out)
	}

	unready(t, backends[0], ips["svc-a"])
	waitEndpoints(t, svc, b)
	for range 3 {
		if out := get(); out != "get=200" {
			t.Fatalf("the Service with svc-a unready: %q, want get=200 from svc-b", out)
		}
	}

	unready(t, backends[1], ips["svc-b"])
	waitEndpoints(t, svc)
	if out := get(); !strings.HasPrefix(out, "get-error=") {
		t.Errorf("the Service with no ready pod: %q, want no answer", out)
	}
	// Out of the Service, not gone: each still serves at its own address
	// (on the bridge).
	for name, ip := range ips {
		resp, err := http.Get("http://" + net.JoinHostPort(ip, "8080") + "/")
		if err != nil {
			t.Errorf("%s at %s: %v", name, ip, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s at %s: %s", name, ip, resp.Status)
		}
	}
	if err := realnode.FirewallFirst(); err != nil {
		t.Error(err)
	}
}

// unready turns pod's readiness probe failing and waits for the virtual
// pod to say so.
func unready(t *testing.T, pod *corev1.Pod, ip string) {
	t.Helper()
	resp, err := http.Post("http://"+net.JoinHostPort(ip, "8080")+"/unready", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, 30*time.Second, pod.Name+" unready", func(ctx context.Context) (bool, string) {
		p, err := virtualPod(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		return ready(p) == corev1.ConditionFalse, string(ready(p))
	})
}

// waitEndpoints waits until the Service's EndpointSlices hold exactly want
// (IP:port) as ready endpoints, and kube-proxy's rules DNAT its ClusterIP
// to exactly those.
func waitEndpoints(t *testing.T, svc *corev1.Service, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, 60*time.Second, fmt.Sprintf("Service %s's ready endpoints and kube-proxy's DNAT rules to be %v", svc.Name, want), func(ctx context.Context) (bool, string) {
		list, err := hostSet.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
		if err != nil {
			return false, err.Error()
		}
		var readyEndpoints []string
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					for _, addr := range e.Addresses {
						for _, p := range s.Ports {
							readyEndpoints = append(readyEndpoints, fmt.Sprintf("%s:%d", addr, *p.Port))
						}
					}
				}
			}
		}
		slices.Sort(readyEndpoints)
		dnat, err := dnatTargets(client.ObjectKeyFromObject(svc).String())
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(readyEndpoints, want) && slices.Equal(dnat, want), fmt.Sprintf("slices %v, DNAT %v", readyEndpoints, dnat)
	})
}

// dnatTargets are the destinations kube-proxy's nat rules DNAT the
// Service named (namespace/name) to.
func dnatTargets(service string) ([]string, error) {
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
	if err != nil {
		return nil, err
	}
	var targets []string
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		c := slices.Index(fields, "--comment")
		if c < 0 || c+1 >= len(fields) || !strings.HasPrefix(strings.Trim(fields[c+1], `"`), service+":") || !slices.Contains(fields, "DNAT") {
			continue
		}
		if i := slices.Index(fields, "--to-destination"); i >= 0 && i+1 < len(fields) {
			targets = append(targets, fields[i+1])
		}
	}
	slices.Sort(targets)
	return targets, nil
}

// A host Service's endpoints are no way round the node's firewall:
// kube-proxy DNATs a ClusterIP to whatever an EndpointSlice names, and the
// firewall filters after the DNAT. Two selector-less host Services with
// hand-made EndpointSlices, one naming a listener of this machine (bound
// to 0.0.0.0, at the bridge address), one an address off the machine: a
// pod's connection to the first is refused and the listener sees nothing;
// its packets to the second are counted by the node's drop rule and never
// reach the test's backstop at the end of POSTROUTING.
func TestServiceEndpointsOffTheBridgeAreNeverReached(t *testing.T) {
	port, accepted := machineListener(t, "tcp4", "0.0.0.0:0")
	if err := realnode.FirewallFirst(); err != nil {
		t.Fatalf("%v: not sending anything", err)
	}
	backstop := []string{"-t", "mangle", "-A", "POSTROUTING", "-d", offMachine + "/32", "-m", "comment", "--comment", "podbridge test backstop", "-j", "DROP"}
	if out, err := exec.Command("iptables", append([]string{"-w"}, backstop...)...).CombinedOutput(); err != nil {
		t.Fatalf("adding the test's backstop: %v: %s", err, out)
	}
	t.Cleanup(func() {
		backstop[2] = "-D"
		if out, err := exec.Command("iptables", append([]string{"-w"}, backstop...)...).CombinedOutput(); err != nil {
			t.Errorf("removing the test's backstop: %v: %s", err, out)
		}
	})

	ns := namespace(t)
	caller := realPod(ns, "endpoint-caller", "pause")
	create(t, caller)
	waitVirtualReady(t, caller)

	machinePort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	machine := selectorless(t, "to-machine", env.RealNode.IP.String(), int32(machinePort))
	off := selectorless(t, "off-machine", offMachine, 80)
	dropped, err := realnode.DroppedOffMachine()
	if err != nil {
		t.Fatal(err)
	}

	out := strings.TrimSpace(execWorkload(t, caller, "", "get:http://"+net.JoinHostPort(machine.Spec.ClusterIP, "80")+"/"))
	if !strings.HasPrefix(out, "get-error=") || !strings.Contains(out, "connection refused") {
		t.Errorf("a Service whose endpoint is this machine's listener on 0.0.0.0: %q, want the connection refused", out)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the machine's listener accepted %d connections through the Service", n)
	}

	out = strings.TrimSpace(execWorkload(t, caller, "", "get:http://"+net.JoinHostPort(off.Spec.ClusterIP, "80")+"/"))
	if !strings.HasPrefix(out, "get-error=") {
		t.Errorf("a Service whose endpoint is off the machine: %q, want no answer", out)
	}
	eventually(t, 10*time.Second, "the pod's packets to the off-machine endpoint counted by the node's drop rule", func(context.Context) (bool, string) {
		n, err := realnode.DroppedOffMachine()
		if err != nil {
			return false, err.Error()
		}
		return n > dropped, fmt.Sprintf("%d dropped (before: %d)", n, dropped)
	})
	listing, err := exec.Command("iptables", "-w", "-t", "mangle", "-L", "POSTROUTING", "-v", "-x", "-n").Output()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(listing)) {
		if strings.Contains(line, "podbridge test backstop") && strings.Fields(line)[0] != "0" {
			t.Errorf("the pod's packet got past the node's firewall to the test's backstop: %s", line)
		}
	}
}

// selectorless creates a host Service without a selector and an
// EndpointSlice for it naming ip:port, and waits until kube-proxy DNATs
// the Service's ClusterIP there.
func selectorless(t *testing.T, name, ip string, port int32) *corev1.Service {
	t.Helper()
	ctx := context.Background()
	ns := env.Options.Translate.HostNamespace
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: name + "-"},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := hostClient.Create(ctx, svc); err != nil {
		t.Fatalf("creating the host Service: %v", err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), svc) })
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, GenerateName: name + "-",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "podbridge-test"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	slice, err := hostSet.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the EndpointSlice: %v", err)
	}
	t.Cleanup(func() {
		_ = hostSet.DiscoveryV1().EndpointSlices(ns).Delete(context.Background(), slice.Name, metav1.DeleteOptions{})
	})
	want := []string{net.JoinHostPort(ip, strconv.Itoa(int(port)))}
	eventually(t, 60*time.Second, fmt.Sprintf("kube-proxy's DNAT of %s to %v", svc.Name, want), func(context.Context) (bool, string) {
		dnat, err := dnatTargets(client.ObjectKeyFromObject(svc).String())
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(dnat, want), fmt.Sprint(dnat)
	})
	return svc
}

// A tenant's Service, created through the virtual apiserver (podbridge
// creates the host Service in admission and pins its ClusterIP on the
// virtual one), routes on the real node: another tenant pod reaches the
// tenant's pod at the virtual Service's ClusterIP, which is the host's.
func TestTenantServiceAnswersAtItsClusterIP(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	backend := realPod(ns, "tenant-web", "serve::8080")
	backend.Labels["svc"] = "tenant-web"
	create(t, backend)
	caller := realPod(ns, "tenant-caller", "pause")
	create(t, caller)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"svc": "tenant-web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := virtualClient.Create(ctx, svc); err != nil {
		t.Fatalf("creating the tenant's Service: %v", err)
	}
	t.Cleanup(func() { _ = virtualClient.Delete(context.Background(), svc) })
	if ip := net.ParseIP(svc.Spec.ClusterIP); ip == nil || !env.RealNode.ServiceCIDR().Contains(ip) {
		t.Fatalf("the tenant Service's ClusterIP %q is not in the host's range %s", svc.Spec.ClusterIP, env.RealNode.ServiceCIDR())
	}
	waitVirtualReady(t, backend)
	waitVirtualReady(t, caller)
	url := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	eventually(t, 60*time.Second, "the tenant's Service answering at "+url, func(context.Context) (bool, string) {
		out := strings.TrimSpace(execWorkload(t, caller, "", "get:"+url))
		return out == "get=200", out
	})
}
