package reflector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

var svcNow = time.Unix(10000, 0)

func svcGate() policy.Gate {
	return policy.Gate{Config: translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "sa"}}
}

func storedService(mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: map[string]string{translate.AnnotationSyncID: "id"}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"},
			ClusterIP: "10.0.0.7", ClusterIPs: []string{"10.0.0.7"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func hostServiceOf(virtual *corev1.Service, age time.Duration) *corev1.Service {
	h, errs := translate.HostService(virtual, svcGate().Config, virtual.Annotations[translate.AnnotationSyncID])
	if len(errs) > 0 || h == nil {
		panic(fmt.Sprint(errs))
	}
	h.CreationTimestamp = metav1.NewTime(svcNow.Add(-age))
	h.Spec.ClusterIP, h.Spec.ClusterIPs = "10.0.0.7", []string{"10.0.0.7"}
	return h
}

// The Service reconciler's decision for each state of a pair.
func TestDecideService(t *testing.T) {
	grace := 30 * time.Second
	stored := storedService()
	cases := []struct {
		name          string
		virtual, host *corev1.Service
		want          string
	}{
		{"in sync", stored, hostServiceOf(stored, time.Hour), ""},
		{"orphan past the grace period", nil, hostServiceOf(stored, time.Minute), "DeleteOrphan"},
		{"orphan still young: wait", nil, hostServiceOf(stored, time.Second), "requeue"},
		{"host Service of an earlier virtual Service of the same name", storedService(func(s *corev1.Service) { s.Annotations[translate.AnnotationSyncID] = "new" }),
			hostServiceOf(stored, time.Minute), "DeleteOrphan DeleteVirtual"},
		{"host Service gone: the virtual Service goes", stored, nil, "DeleteVirtual"},
		{"never admitted by podbridge: nothing on the host, an event", storedService(func(s *corev1.Service) { s.Annotations = nil }), nil, "NotAdmitted"},
		{"the apiserver's own Service: left alone", storedService(func(s *corev1.Service) { s.Name, s.Namespace, s.Annotations = "kubernetes", "default", nil }), nil, ""},
		{"a change the webhook did not see is carried", storedService(func(s *corev1.Service) { s.Spec.Selector["tier"] = "front" }), hostServiceOf(stored, time.Hour), "UpdateHost"},
		{"a change just after the webhook wrote: wait, the update may be under way", storedService(func(s *corev1.Service) { s.Spec.Selector["tier"] = "front" }), func() *corev1.Service {
			h := hostServiceOf(stored, time.Hour)
			h.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: translate.FieldManagerWebhook, Time: ptr.To(metav1.NewTime(svcNow.Add(-5 * time.Second)))}}
			return h
		}(), "requeue"},
		{"a hostile change the webhook did not see is refused", storedService(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.1"} }), hostServiceOf(stored, time.Hour), "Refused"},
		{"became ExternalName: the host Service goes", storedService(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "x.example"
		}),
			hostServiceOf(stored, time.Hour), "DeleteHost"},
		{"a ClusterIP other than the host's (a tenant webhook after podbridge's)", storedService(func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.0.0.99", []string{"10.0.0.99"}
		}), hostServiceOf(stored, time.Hour), "Refused AddressDiffers"},
		{"just made by an update from ExternalName the cache does not show yet: wait", storedService(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "x.example"
		}),
			func() *corev1.Service {
				h := hostServiceOf(stored, time.Second)
				h.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: translate.FieldManagerWebhook, Time: ptr.To(metav1.NewTime(svcNow.Add(-time.Second)))}}
				return h
			}(), "requeue"},
		{"load-balancer status copied", stored, func() *corev1.Service {
			h := hostServiceOf(stored, time.Hour)
			h.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.50"}}
			return h
		}(), "Status"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := decideService(tc.virtual, tc.host, svcGate(), svcNow, grace)
			var got []string
			for _, s := range d.steps {
				got = append(got, s.String())
			}
			if d.requeue > 0 {
				got = append(got, "requeue")
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("steps %q, want %q", g, tc.want)
			}
			if d.desired != nil && d.desired.Spec.ClusterIP != "10.0.0.7" {
				t.Errorf("update drops the host's ClusterIP: %+v", d.desired.Spec)
			}
		})
	}
}

// default/kubernetes follows the platform's address for it: one made with
// another (the apiserver's first address, before podbridge's webhook was
// registered) is deleted for the apiserver to make it again through the
// webhook; it never gets a host Service.
func TestDecideKubernetesService(t *testing.T) {
	kubernetes := func(ip string) *corev1.Service {
		return storedService(func(s *corev1.Service) {
			s.Name, s.Namespace, s.Annotations, s.Spec.Selector = "kubernetes", "default", nil, nil
			s.Spec.ClusterIP, s.Spec.ClusterIPs = ip, []string{ip}
		})
	}
	pinned := svcGate()
	pinned.Config.KubernetesServiceIP = "10.0.0.2"
	cases := []struct {
		name    string
		virtual *corev1.Service
		gate    policy.Gate
		want    string
	}{
		{"no address configured: left alone", kubernetes("10.0.0.1"), svcGate(), ""},
		{"the platform's address: left alone", kubernetes("10.0.0.2"), pinned, ""},
		{"the apiserver's first address: made again", kubernetes("10.0.0.1"), pinned, "RecreateKubernetes"},
		{"being deleted: left alone", func() *corev1.Service {
			s := kubernetes("10.0.0.1")
			s.DeletionTimestamp = ptr.To(metav1.NewTime(svcNow))
			return s
		}(), pinned, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := decideService(tc.virtual, nil, tc.gate, svcNow, time.Minute)
			var got []string
			for _, s := range d.steps {
				got = append(got, s.String())
			}
			if g := strings.Join(got, " "); g != tc.want || d.requeue != 0 {
				t.Errorf("steps %q requeue %v, want %q", g, d.requeue, tc.want)
			}
		})
	}
}
