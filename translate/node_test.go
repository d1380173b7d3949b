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
			got := VirtualNode(host, tc.kubelet).Status
			if !apiequality.Semantic.DeepEqual(tc.wantAddresses, got.Addresses) {
				t.Errorf("addresses %v, want %v", got.Addresses, tc.wantAddresses)
			}
			if got.DaemonEndpoints.KubeletEndpoint.Port != tc.wantPort {
				t.Errorf("kubelet port %d, want %d", got.DaemonEndpoints.KubeletEndpoint.Port, tc.wantPort)
			}
		})
	}
}
