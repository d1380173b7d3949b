package policy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/translate"
)

// Every ServiceSpec field has a decision, so a field a new Kubernetes
// version adds fails this test rather than reaching the host unexamined.
func TestEveryServiceSpecFieldIsClassified(t *testing.T) {
	checkEveryFieldClassified(t, "serviceSpecFields", serviceSpecFields, jsonFieldNames("", reflect.TypeFor[corev1.ServiceSpec]()))
}

var serviceTestConfig = translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "sa"}

func gateService(mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	return s
}

// The decision on each hostile field: what is refused names the field
// (and the platform flag for allow-lists); what the host allocated may
// come back on the virtual Service, nothing else.
func TestCheckService(t *testing.T) {
	allocated := gateService(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.0.0.7", []string{"10.0.0.7"}
		s.Spec.Ports[0].NodePort = 31000
		s.Spec.HealthCheckNodePort = 32000
	})
	cases := []struct {
		name    string
		types   []corev1.ServiceType
		svc     func(*corev1.Service)
		current *corev1.Service
		want    []string // substrings of the errors; none: admitted
	}{
		{name: "ClusterIP", svc: nil},
		{name: "headless", svc: func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }},
		{name: "ExternalName", svc: func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName, s.Spec.Selector, s.Spec.Ports = corev1.ServiceTypeExternalName, "db.example.com", nil, nil
		}},
		{name: "externalIPs always refused", types: []corev1.ServiceType{corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer},
			svc: func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.1"} }, want: []string{"spec.externalIPs[0]", "CVE-2020-8554"}},
		{name: "NodePort not allowed", svc: func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort },
			want: []string{"spec.type", "--allowed-service-types"}},
		{name: "LoadBalancer not allowed", types: []corev1.ServiceType{corev1.ServiceTypeNodePort}, svc: func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer },
			want: []string{"spec.type", "--allowed-service-types"}},
		{name: "NodePort allowed", types: []corev1.ServiceType{corev1.ServiceTypeNodePort}, svc: func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }},
		{name: "a node port of the tenant's choosing", types: []corev1.ServiceType{corev1.ServiceTypeNodePort},
			svc: func(s *corev1.Service) { s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeNodePort, 30000 }, want: []string{"spec.ports[0].nodePort"}},
		{name: "the node port the host allocated", types: []corev1.ServiceType{corev1.ServiceTypeLoadBalancer}, current: allocated,
			svc: func(s *corev1.Service) { s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeLoadBalancer, 31000 }},
		{name: "a ClusterIP of the tenant's choosing", svc: func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.0.0.10", []string{"10.0.0.10"} },
			want: []string{"spec.clusterIP", "spec.clusterIPs[0]"}},
		{name: "the ClusterIP the host allocated", current: allocated, svc: func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.0.0.7", []string{"10.0.0.7"} }},
		{name: "a health-check port of the tenant's choosing", types: []corev1.ServiceType{corev1.ServiceTypeLoadBalancer}, current: allocated,
			svc: func(s *corev1.Service) {
				s.Spec.Type, s.Spec.HealthCheckNodePort = corev1.ServiceTypeLoadBalancer, 32001
			}, want: []string{"spec.healthCheckNodePort"}},
		{name: "loadBalancerIP", types: []corev1.ServiceType{corev1.ServiceTypeLoadBalancer},
			svc: func(s *corev1.Service) {
				s.Spec.Type, s.Spec.LoadBalancerIP = corev1.ServiceTypeLoadBalancer, "192.0.2.9"
			}, want: []string{"spec.loadBalancerIP"}},
		{name: "loadBalancerClass", types: []corev1.ServiceType{corev1.ServiceTypeLoadBalancer},
			svc: func(s *corev1.Service) {
				s.Spec.Type, s.Spec.LoadBalancerClass = corev1.ServiceTypeLoadBalancer, ptr.To("internal.example.com/lb")
			}, want: []string{"spec.loadBalancerClass"}},
		{name: "loadBalancerSourceRanges carried", types: []corev1.ServiceType{corev1.ServiceTypeLoadBalancer},
			svc: func(s *corev1.Service) {
				s.Spec.Type, s.Spec.LoadBalancerSourceRanges = corev1.ServiceTypeLoadBalancer, []string{"192.0.2.0/24"}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := serviceTestConfig
			cfg.ServiceTypes = tc.types
			g := Gate{Config: cfg}
			svc := gateService(tc.svc)
			host, errs := translate.HostService(svc, cfg, "id")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			errs = g.CheckService(svc, tc.current, host)
			got := errs.ToAggregate()
			checkRefusal(t, got, tc.want)
		})
	}
}

// Whatever translation produced, a host Service is refused unless its
// selector is scoped to this virtual cluster and the Service's namespace
// and it carries no tenant annotation.
func TestCheckServiceHostRules(t *testing.T) {
	g := Gate{Config: serviceTestConfig}
	svc := gateService(nil)
	for name, mutate := range map[string]func(*corev1.Service){
		"unscoped selector":     func(h *corev1.Service) { delete(h.Spec.Selector, translate.LabelVCluster) },
		"another vcluster":      func(h *corev1.Service) { h.Spec.Selector[translate.LabelVCluster] = "other" },
		"another namespace":     func(h *corev1.Service) { h.Spec.Selector[translate.LabelNamespace] = "other" },
		"a tenant annotation":   func(h *corev1.Service) { h.Annotations["service.beta.kubernetes.io/x"] = "y" },
		"an external address":   func(h *corev1.Service) { h.Spec.ExternalIPs = []string{"192.0.2.1"} },
		"an address of its own": func(h *corev1.Service) { h.Spec.ClusterIP, h.Spec.ClusterIPs = "10.0.0.10", []string{"10.0.0.10"} },
		"selector without one":  nil,
	} {
		t.Run(name, func(t *testing.T) {
			v := svc
			host, _ := translate.HostService(v, g.Config, "id")
			if mutate == nil {
				v = gateService(func(s *corev1.Service) { s.Spec.Selector = nil })
			} else {
				mutate(host)
			}
			if errs := g.CheckService(v, nil, host); len(errs) == 0 {
				t.Error("admitted")
			}
		})
	}
}

// The DNS Service (Config.DNSService) gets the platform's nameserver
// address on the host, and only it: the same address asked by another
// Service is refused, as any address the host did not allocate.
func TestCheckServiceDNSAddress(t *testing.T) {
	cfg := serviceTestConfig
	cfg.DNSNameserver, cfg.DNSService = "10.0.0.10", types.NamespacedName{Namespace: "kube-system", Name: "kube-dns"}
	g := Gate{Config: cfg}
	dns := func(mutate func(*corev1.Service)) *corev1.Service {
		return gateService(func(s *corev1.Service) {
			s.Namespace, s.Name = "kube-system", "kube-dns"
			if mutate != nil {
				mutate(s)
			}
		})
	}
	askFor := func(ip string) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = ip, []string{ip} }
	}
	for _, tc := range []struct {
		name    string
		virtual *corev1.Service
		admit   bool
	}{
		{"the DNS Service", dns(nil), true},
		{"the DNS Service asking the nameserver's address", dns(askFor("10.0.0.10")), true},
		{"the DNS Service asking another address", dns(askFor("10.0.0.11")), false},
		{"another Service asking the nameserver's address", gateService(askFor("10.0.0.10")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, errs := translate.HostService(tc.virtual, cfg, "id")
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			errs = g.CheckService(tc.virtual, nil, host)
			if (len(errs) == 0) != tc.admit {
				t.Errorf("admitted %v, want %v: %v", len(errs) == 0, tc.admit, errs)
			}
			if tc.admit && host.Spec.ClusterIP != "10.0.0.10" {
				t.Errorf("host ClusterIP %q, want the nameserver's", host.Spec.ClusterIP)
			}
		})
	}
}

// docs/services.md's table lists every field with the code's treatment.
func TestDocsListEveryServiceSpecField(t *testing.T) {
	checkDocsListEveryField(t, "../docs/services.md", serviceSpecFields)
}
