package translate

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

var serviceConfig = Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "sa"}

func virtualService(mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"service.beta.kubernetes.io/aws-load-balancer-internal": "false"}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{"app": "web", "example.com/tier": "front"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP, NodePort: 30080}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// The host Service carries the spec the tenant wrote, minus what the host
// allocates; its selector is the tenant's under tenant keys plus the keys
// that scope it to this virtual cluster and namespace; no tenant
// annotation reaches it.
func TestHostService(t *testing.T) {
	host, errs := HostService(virtualService(), serviceConfig, "id-1")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if host.Name != "web-x-shop-x-vc" || host.Namespace != "host" {
		t.Errorf("host Service %s/%s", host.Namespace, host.Name)
	}
	wantSelector := map[string]string{
		"tenant.podbridge.io/app": "web", "example.com.tenant.podbridge.io/tier": "front",
		LabelManagedBy: ManagedByValue, LabelVCluster: "vc", LabelNamespace: "shop",
	}
	if !labels.Equals(host.Spec.Selector, wantSelector) {
		t.Errorf("selector %v, want %v", host.Spec.Selector, wantSelector)
	}
	if host.Labels["tenant.podbridge.io/app"] != "web" || host.Labels[LabelVCluster] != "vc" || host.Labels[LabelManagedBy] != ManagedByValue {
		t.Errorf("labels %v", host.Labels)
	}
	for k := range host.Annotations {
		if !IsReserved(k) {
			t.Errorf("tenant annotation %q reached the host", k)
		}
	}
	if host.Annotations[AnnotationSyncID] != "id-1" || host.Annotations[AnnotationSelectorScheme] != SelectorScheme {
		t.Errorf("annotations %v", host.Annotations)
	}
	if host.Spec.Ports[0].NodePort != 0 || host.Spec.ClusterIP != "" {
		t.Errorf("allocated fields carried: %+v", host.Spec)
	}
}

func TestHostServiceKinds(t *testing.T) {
	cases := []struct {
		name  string
		svc   *corev1.Service
		check func(t *testing.T, host *corev1.Service)
	}{
		{"ExternalName has no host Service", virtualService(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName, s.Spec.Selector = corev1.ServiceTypeExternalName, "db.example.com", nil
		}), func(t *testing.T, host *corev1.Service) {
			if host != nil {
				t.Errorf("host Service %v", host)
			}
		}},
		{"headless stays headless", virtualService(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
			func(t *testing.T, host *corev1.Service) {
				if host.Spec.ClusterIP != "None" || len(host.Spec.ClusterIPs) != 1 || host.Spec.ClusterIPs[0] != "None" {
					t.Errorf("clusterIP %q %v", host.Spec.ClusterIP, host.Spec.ClusterIPs)
				}
			}},
		{"no selector stays none", virtualService(func(s *corev1.Service) { s.Spec.Selector = nil }), func(t *testing.T, host *corev1.Service) {
			if host.Spec.Selector != nil {
				t.Errorf("selector %v", host.Spec.Selector)
			}
		}},
		{"a selector naming podbridge's keys stays a tenant selector", virtualService(func(s *corev1.Service) {
			s.Spec.Selector = map[string]string{LabelVCluster: "other", LabelNamespace: "other", LabelManagedBy: ManagedByValue}
		}), func(t *testing.T, host *corev1.Service) {
			if host.Spec.Selector[LabelVCluster] != "vc" || host.Spec.Selector[LabelNamespace] != "shop" {
				t.Errorf("selector %v: scoping keys overridden", host.Spec.Selector)
			}
			if host.Spec.Selector["podbridge.io.tenant.podbridge.io/vcluster"] != "other" {
				t.Errorf("selector %v: tenant key not translated", host.Spec.Selector)
			}
		}},
		{"carried fields", virtualService(func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.PublishNotReadyAddresses = true
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
			s.Spec.TrafficDistribution = ptr.To("PreferClose")
		}), func(t *testing.T, host *corev1.Service) {
			if host.Spec.SessionAffinity != corev1.ServiceAffinityClientIP || !host.Spec.PublishNotReadyAddresses ||
				*host.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal || *host.Spec.TrafficDistribution != "PreferClose" {
				t.Errorf("spec %+v", host.Spec)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host, errs := HostService(tc.svc, serviceConfig, "id")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			tc.check(t, host)
		})
	}
}

func TestHostServiceRefusesReservedMetadata(t *testing.T) {
	for name, svc := range map[string]*corev1.Service{
		"metadata.labels[podbridge.io/vcluster]":  virtualService(func(s *corev1.Service) { s.Labels[LabelVCluster] = "x" }),
		"metadata.labels":                         virtualService(func(s *corev1.Service) { s.Labels[LabelManagedBy] = ManagedByValue }),
		"metadata.annotations[podbridge.io/name]": virtualService(func(s *corev1.Service) { s.Annotations[AnnotationName] = "x" }),
		"spec.selector[not a key!]":               virtualService(func(s *corev1.Service) { s.Spec.Selector["not a key!"] = "x" }),
		"metadata.name":                           virtualService(func(s *corev1.Service) { s.Name = "9web" }),
	} {
		_, errs := HostService(svc, serviceConfig, "id")
		if !strings.Contains(errs.ToAggregate().Error(), name) {
			t.Errorf("%s: errors %v", name, errs)
		}
	}
}

// Host Service names are DNS-1035 labels, as Service names must be, for
// every valid virtual name, readable or hashed.
func TestHostServiceNameIsDNS1035(t *testing.T) {
	for _, n := range []struct{ name, namespace, vcluster string }{
		{"web", "shop", "vc"},
		{"a", "b", "0vc"},
		{strings.Repeat("a", 63), strings.Repeat("b", 63), strings.Repeat("c", 63)},
		{"a-x", "b", "vc"},
		{"a", "x-b", "vc"},
		{"w", "shop-x", "x-vc"},
	} {
		got := HostServiceName(n.name, n.namespace, n.vcluster)
		if errs := validation.IsDNS1035Label(got); len(errs) > 0 {
			t.Errorf("HostServiceName(%q, %q, %q) = %q: %v", n.name, n.namespace, n.vcluster, got, errs)
		}
	}
}

// An update keeps what the host allocated: its ClusterIPs always, node
// ports of ports that stay.
func TestOverHostServiceKeepsAllocation(t *testing.T) {
	current, _ := HostService(virtualService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }), serviceConfig, "id")
	current.Spec.ClusterIP, current.Spec.ClusterIPs = "10.0.0.7", []string{"10.0.0.7"}
	current.Spec.Ports[0].NodePort = 31000
	current.Finalizers = []string{"service.kubernetes.io/load-balancer-cleanup"}
	desired, _ := HostService(virtualService(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP})
	}), serviceConfig, "id")
	got := OverHostService(desired, current)
	if got.Spec.ClusterIP != "10.0.0.7" || got.Spec.Ports[0].NodePort != 31000 || got.Spec.Ports[1].NodePort != 0 || len(got.Finalizers) != 1 {
		t.Errorf("update %+v", got)
	}
	if SameHostService(desired, current) {
		t.Error("a new port is no change")
	}
	if again, _ := HostService(virtualService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }), serviceConfig, "id"); !SameHostService(again, current) {
		t.Error("the same Service is a change")
	}
}
