package translate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVirtualNodeStatusAddresses(t *testing.T) {
	host := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.7"}, {Type: corev1.NodeHostName, Address: "n1"}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		},
	}
	cases := []struct {
		name          string
		kubelet       KubeletEndpoint
		wantAddresses []corev1.NodeAddress
		wantPort      int32
	}{
		{name: "no endpoint: no address, never the host's", wantAddresses: nil},
		{name: "an IP", kubelet: KubeletEndpoint{Address: "127.0.0.1", Port: 4321},
			wantAddresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}, wantPort: 4321},
		{name: "a DNS name", kubelet: KubeletEndpoint{Address: "podbridge-kubelet.t.svc", Port: 10350},
			wantAddresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "podbridge-kubelet.t.svc"}}, wantPort: 10350},
		{name: "an address without a port is no endpoint", kubelet: KubeletEndpoint{Address: "127.0.0.1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := VirtualNode(host, tc.kubelet, nil).Status
			if !apiequality.Semantic.DeepEqual(tc.wantAddresses, got.Addresses) {
				t.Errorf("addresses %v, want %v", got.Addresses, tc.wantAddresses)
			}
			if got.DaemonEndpoints.KubeletEndpoint.Port != tc.wantPort {
				t.Errorf("kubelet port %d, want %d", got.DaemonEndpoints.KubeletEndpoint.Port, tc.wantPort)
			}
		})
	}
}

func TestTenantNode(t *testing.T) {
	cfg := Config{
		NodeSelector:   map[string]string{"pool": "tenants"},
		Tolerations:    []corev1.Toleration{{Key: "platform/tenants", Operator: corev1.TolerationOpExists}},
		TolerationKeys: []string{"gpu"},
	}
	taint := func(key string, effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: key, Effect: effect}
	}
	cases := []struct {
		name   string
		labels map[string]string
		taints []corev1.Taint
		want   bool
	}{
		{name: "selected, untainted", labels: map[string]string{"pool": "tenants"}, want: true},
		{name: "not selected", labels: map[string]string{"pool": "control-plane"}, want: false},
		{name: "no labels", want: false},
		{name: "a control-plane taint", labels: map[string]string{"pool": "tenants"},
			taints: []corev1.Taint{taint("node-role.kubernetes.io/control-plane", corev1.TaintEffectNoSchedule)}, want: false},
		{name: "draining: an untolerated NoExecute taint", labels: map[string]string{"pool": "tenants"},
			taints: []corev1.Taint{taint("platform/drain", corev1.TaintEffectNoExecute)}, want: false},
		{name: "a preference only", labels: map[string]string{"pool": "tenants"},
			taints: []corev1.Taint{taint("platform/drain", corev1.TaintEffectPreferNoSchedule)}, want: true},
		{name: "the node's own conditions", labels: map[string]string{"pool": "tenants"},
			taints: []corev1.Taint{taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoSchedule), taint(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)}, want: true},
		{name: "tolerated by the platform", labels: map[string]string{"pool": "tenants"},
			taints: []corev1.Taint{taint("platform/tenants", corev1.TaintEffectNoSchedule)}, want: true},
		{name: "a key tenants may tolerate", labels: map[string]string{"pool": "tenants"},
			taints: []corev1.Taint{taint("gpu", corev1.TaintEffectNoSchedule)}, want: true},
		{name: "one tolerable, one not", labels: map[string]string{"pool": "tenants"},
			taints: []corev1.Taint{taint("gpu", corev1.TaintEffectNoSchedule), taint("platform/system", corev1.TaintEffectNoSchedule)}, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: tc.labels}, Spec: corev1.NodeSpec{Taints: tc.taints}}
			if got := TenantNode(node, cfg); got != tc.want {
				t.Errorf("TenantNode = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestVirtualNodeHidesOnlyWhatThePlatformTolerates(t *testing.T) {
	platform := corev1.Taint{Key: "platform/tenants", Value: "yes", Effect: corev1.TaintEffectNoSchedule}
	gpu := corev1.Taint{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}
	notReady := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}
	host := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{platform, gpu, notReady}, Unschedulable: true, ProviderID: "cloud://secret"},
	}
	enforced := []corev1.Toleration{{Key: "platform/tenants", Operator: corev1.TolerationOpEqual, Value: "yes", Effect: corev1.TaintEffectNoSchedule}}
	want := corev1.NodeSpec{Taints: []corev1.Taint{gpu, notReady}, Unschedulable: true}
	if got := VirtualNode(host, KubeletEndpoint{}, enforced).Spec; !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("spec %+v, want %+v", got, want)
	}
}
