package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/devenv"
	"github.com/podbridge/podbridge/translate"
)

// The virtual default/kubernetes Service holds the address of the host
// Service in front of the virtual apiserver, never its range's first
// address, which is the host's own kubernetes Service: host pods' variables
// name the same address, and one stored with another address while the
// tenant had podbridge's registration away (the tenant is cluster-admin)
// is replaced by one at the platform's address.
func TestKubernetesServiceIsTheVirtualAPIServer(t *testing.T) {
	ctx := context.Background()
	tc := env.Options.Translate
	front := &corev1.Service{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: tc.HostNamespace, Name: devenv.APIServerServiceName}, front); err != nil {
		t.Fatal(err)
	}
	if front.Spec.ClusterIP != tc.KubernetesServiceIP || tc.APIServerHost != tc.KubernetesServiceIP || tc.APIServerPort != 443 {
		t.Fatalf("host Service at %s, configured %s (variables %s:%d)", front.Spec.ClusterIP, tc.KubernetesServiceIP, tc.APIServerHost, tc.APIServerPort)
	}
	hostKubernetes := &corev1.Service{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, hostKubernetes); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: "default", Name: "kubernetes"}
	pinned := func(what string) {
		eventually(t, 60*time.Second, what, func(ctx context.Context) (bool, string) {
			svc := &corev1.Service{}
			if err := virtualClient.Get(ctx, key, svc); err != nil {
				return false, err.Error()
			}
			return svc.Spec.ClusterIP == tc.KubernetesServiceIP && slices.Equal(svc.Spec.ClusterIPs, []string{tc.KubernetesServiceIP}), "ClusterIPs " + strings.Join(svc.Spec.ClusterIPs, ",")
		})
	}
	pinned("default/kubernetes at the virtual apiserver's host Service")

	// The host pod of a tenant pod names that address.
	ns := namespace(t)
	pod := simplePod(ns, "client")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range host.Spec.Containers[0].Env {
		if strings.HasPrefix(e.Name, "KUBERNETES_") && strings.Contains(e.Value, hostKubernetes.Spec.ClusterIP) {
			t.Errorf("%s=%s names the host's kubernetes Service", e.Name, e.Value)
		}
		if e.Name == "KUBERNETES_SERVICE_HOST" && e.Value != tc.KubernetesServiceIP {
			t.Errorf("KUBERNETES_SERVICE_HOST=%s, want %s", e.Value, tc.KubernetesServiceIP)
		}
	}

	// The tenant stores one at the host's kubernetes address while
	// podbridge's registration is away.
	eventually(t, 60*time.Second, "default/kubernetes stored at the host's address without podbridge", func(ctx context.Context) (bool, string) {
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "podbridge"}}
		if err := virtualClient.Delete(ctx, reg); client.IgnoreNotFound(err) != nil {
			return false, err.Error()
		}
		current := &corev1.Service{}
		if err := virtualClient.Get(ctx, key, current); err == nil {
			if current.Spec.ClusterIP == hostKubernetes.Spec.ClusterIP {
				return true, ""
			}
			if err := virtualClient.Delete(ctx, current, client.Preconditions{UID: &current.UID}); client.IgnoreNotFound(err) != nil {
				return false, err.Error()
			}
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
			Spec: corev1.ServiceSpec{
				ClusterIP: hostKubernetes.Spec.ClusterIP,
				Ports:     []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(443)}},
			},
		}
		err := virtualClient.Create(ctx, svc)
		return err == nil && svc.Spec.ClusterIP == hostKubernetes.Spec.ClusterIP, fmt.Sprintf("%v, ClusterIP %s", err, svc.Spec.ClusterIP)
	})
	pinned("default/kubernetes back at the virtual apiserver's host Service")
}

// The virtual cluster's DNS Service (--virtual-dns-service) gets the
// nameserver address host pods resolve through, on the host and in the
// virtual cluster; no other Service may take that address.
func TestDNSServiceGetsTheNameserverAddress(t *testing.T) {
	ctx := context.Background()
	tc := env.Options.Translate
	ns := namespace(t)
	squatter := simpleService(ns, "squatter", map[string]string{"app": "web"})
	squatter.Spec.ClusterIP = tc.DNSNameserver
	err := virtualClient.Create(ctx, squatter)
	if err == nil || !strings.Contains(err.Error(), "spec.clusterIP") {
		t.Fatalf("a Service asking the nameserver's address: %v, want a refusal naming spec.clusterIP", err)
	}

	dns := simpleService(tc.DNSService.Namespace, tc.DNSService.Name, map[string]string{"k8s-app": "kube-dns"})
	dns.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
	existing := &corev1.Service{}
	if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(dns), existing); err == nil {
		dns = existing // installed by the test bed
	} else if err := virtualClient.Create(ctx, dns); err != nil {
		t.Fatal(err)
	} else {
		removeServiceWhileItsPodbridgeRuns(t, virtualClient, dns, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: tc.HostNamespace, Name: translate.HostServiceName(dns.Name, dns.Namespace, tc.VCluster)}})
	}
	if dns.Spec.ClusterIP != tc.DNSNameserver {
		t.Errorf("virtual DNS Service at %s, want %s", dns.Spec.ClusterIP, tc.DNSNameserver)
	}
	if host := getHostService(t, dns); host.Spec.ClusterIP != tc.DNSNameserver {
		t.Errorf("host DNS Service at %s, want %s", host.Spec.ClusterIP, tc.DNSNameserver)
	}
	pod := simplePod(ns, "resolver")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if host.Spec.DNSPolicy != corev1.DNSNone || host.Spec.DNSConfig == nil || !slices.Equal(host.Spec.DNSConfig.Nameservers, []string{tc.DNSNameserver}) {
		t.Errorf("host pod DNS %s %+v, want None with nameserver %s", host.Spec.DNSPolicy, host.Spec.DNSConfig, tc.DNSNameserver)
	}
}
