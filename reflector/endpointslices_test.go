package reflector

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// selectorless is a stored virtual Service without a selector and its host Service.
func selectorless() (virtual, host *corev1.Service) {
	virtual = storedService(func(s *corev1.Service) { s.Spec.Selector = nil })
	host = hostServiceOf(virtual, time.Hour)
	host.UID = "host-svc-uid"
	return virtual, host
}

func tenantSlice(name string, addressType discoveryv1.AddressType, addresses ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{
			discoveryv1.LabelServiceName: "web", "tenant": "label",
		}},
		AddressType: addressType,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080), AppProtocol: ptr.To("http")}},
	}
	for _, a := range addresses {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			Hostname:   ptr.To("db-0"), NodeName: ptr.To("tenant-says"), Zone: ptr.To("z"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "kube-system", Name: "kube-apiserver"},
			Hints:     &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z"}}},
		})
	}
	return s
}

// tenantPods are this virtual cluster's host pods by address.
var tenantPods = map[netip.Addr]policy.EndpointPod{
	netip.MustParseAddr("10.244.0.5"): {Name: "db-x-shop-x-vc", UID: "pod-uid", NodeName: "node-a"},
	netip.MustParseAddr("fd00::5"):    {Name: "db6-x-shop-x-vc", UID: "pod6-uid", NodeName: "node-a"},
}

// hostSliceFor is what the gate would write for s now, as read back from the host.
func hostSliceFor(t *testing.T, s *discoveryv1.EndpointSlice, gate policy.Gate) *discoveryv1.EndpointSlice {
	t.Helper()
	v, h := selectorless()
	desired, _ := gate.EndpointSlices(v, h, []*discoveryv1.EndpointSlice{s}, tenantPods)
	if len(desired) != 1 {
		t.Fatalf("no host slice for %s", s.Name)
	}
	desired[0].UID, desired[0].ResourceVersion = "host-slice-uid", "7"
	return desired[0]
}

func addressesOf(s *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, e.Addresses...)
	}
	return out
}

// The EndpointSlice reconciler's decision: what reaches the host, what is
// refused and reported, and which host slices go.
func TestDecideEndpointSlices(t *testing.T) {
	gate := svcGate()
	gate.Config.EndpointCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("169.254.0.0/16")}
	virtual, host := selectorless()
	withSelector, withSelectorHost := storedService(), hostServiceOf(storedService(), time.Hour)
	withSelectorHost.UID = "host-svc-uid"
	carried := hostSliceFor(t, tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5"), gate)
	many := make([]*discoveryv1.EndpointSlice, policy.MaxHostSlicesPerService+1)
	for i := range many {
		many[i] = tenantSlice(fmt.Sprintf("web-%02d", i), discoveryv1.AddressTypeIPv4, "10.244.0.5")
	}
	cases := []struct {
		name          string
		virtual, host *corev1.Service // nil, nil: the selector-less pair, unless gone
		gone          bool
		slices, hosts []*discoveryv1.EndpointSlice
		pods          map[netip.Addr]policy.EndpointPod
		// want: "create <addresses>", "update <addresses>", "delete <name>", "refused <substring>".
		want []string
	}{
		{name: "this virtual cluster's pod IP is carried", slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5")},
			want: []string{"create 10.244.0.5"}},
		{name: "an address no pod of this virtual cluster holds (another tenant's, the node's, the apiserver's, podbridge's own pod's) is refused",
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5", "10.244.1.9")},
			want:   []string{"create 10.244.0.5", "refused 10.244.1.9 (not a pod of this virtual cluster, not in --allowed-endpoint-cidrs)"}},
		{name: "an address in --allowed-endpoint-cidrs is carried", slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "192.0.2.10", "198.51.100.1")},
			want: []string{"create 192.0.2.10", "refused 198.51.100.1 (not a pod"}},
		{name: "loopback and the metadata address are refused, even inside an allowed range",
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1")},
			want:   []string{"create ", "refused 127.0.0.1 (loopback", "refused 169.254.169.254 (loopback, link-local", "refused 0.0.0.0", "refused 224.0.0.1"}},
		{name: "an IPv4-mapped IPv6 form of a pod's address is refused",
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv6, "::ffff:10.244.0.5", "::ffff:192.0.2.10", "fd00::5")},
			want:   []string{"create fd00::5", "refused ::ffff:10.244.0.5 (an IPv4-mapped", "refused ::ffff:192.0.2.10 (an IPv4-mapped"}},
		{name: "non-canonical forms and the wrong family are refused",
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "010.244.0.5", "fd00::5", "fe80::1%eth0")},
			want:   []string{"create ", "refused 010.244.0.5 (not an IP address in canonical form", "refused fd00::5 (not an IPv4 address", "refused fe80::1%eth0 (not an IP"}},
		{name: "an FQDN slice is not carried: the host would resolve it",
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeFQDN, "metadata.google.internal")},
			want:   []string{"refused slice web-1 (addressType FQDN"}},
		{name: "an address that stopped being a tenant pod's is dropped from the host slice (its IP may be another tenant's now)",
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5")},
			hosts:  []*discoveryv1.EndpointSlice{carried}, pods: map[netip.Addr]policy.EndpointPod{},
			want: []string{"update ", "refused 10.244.0.5 (not a pod"}},
		{name: "in sync: nothing written", slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5")},
			hosts: []*discoveryv1.EndpointSlice{carried}},
		{name: "a Service with a selector is the host controller's: nothing written, ours removed",
			virtual: withSelector, host: withSelectorHost,
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5")}, hosts: []*discoveryv1.EndpointSlice{carried},
			want: []string{"delete " + carried.Name}},
		{name: "the virtual slice was deleted: the host slice goes", hosts: []*discoveryv1.EndpointSlice{carried}, want: []string{"delete " + carried.Name}},
		{name: "the virtual Service was deleted: the host slice goes", gone: true,
			slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5")}, hosts: []*discoveryv1.EndpointSlice{carried},
			want: []string{"delete " + carried.Name}},
		{name: "slices of the virtual endpointslice controller and of another Service are not this Service's",
			slices: []*discoveryv1.EndpointSlice{
				func() *discoveryv1.EndpointSlice {
					s := tenantSlice("web-ctrl", discoveryv1.AddressTypeIPv4, "10.244.0.5")
					s.Labels[discoveryv1.LabelManagedBy] = translate.EndpointSliceControllerName
					return s
				}(),
				func() *discoveryv1.EndpointSlice {
					s := tenantSlice("db-1", discoveryv1.AddressTypeIPv4, "10.244.0.5")
					s.Labels[discoveryv1.LabelServiceName] = "db"
					return s
				}(),
			}},
		{name: "the mirroring controller's slices are the tenant's",
			slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
				s := tenantSlice("web-mirror", discoveryv1.AddressTypeIPv4, "10.244.0.5")
				s.Labels[discoveryv1.LabelManagedBy] = "endpointslicemirroring-controller.k8s.io"
				return s
			}()}, want: []string{"create 10.244.0.5"}},
		{name: "at most MaxHostSlicesPerService slices per Service", slices: many,
			want: append(slices.Repeat([]string{"create 10.244.0.5"}, policy.MaxHostSlicesPerService), "refused slice web-16 (over 16 slices")},
		{name: "an address type change makes the host slice again", slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv6, "fd00::5")},
			hosts: []*discoveryv1.EndpointSlice{carried}, want: []string{"delete " + carried.Name}},
		{name: "a host Service of another sync ID: nothing carried", virtual: virtual, host: func() *corev1.Service {
			_, h := selectorless()
			h.Annotations[translate.AnnotationSyncID] = "other"
			return h
		}(), slices: []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, h := tc.virtual, tc.host
			if v == nil && h == nil && !tc.gone {
				v, h = virtual, host
			}
			pods := tc.pods
			if pods == nil {
				pods = tenantPods
			}
			d := decideEndpointSlices(v, h, tc.slices, tc.hosts, pods, gate)
			var got []string
			for _, s := range d.create {
				got = append(got, "create "+strings.Join(addressesOf(s), ","))
			}
			for _, s := range d.update {
				got = append(got, "update "+strings.Join(addressesOf(s), ","))
			}
			for _, s := range d.delete {
				got = append(got, "delete "+s.Name)
			}
			for _, r := range d.refused {
				got = append(got, "refused "+r)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("got %q, want %q", got, tc.want)
					break
				}
			}
		})
	}
}

// A carried slice holds what the host acts on only as podbridge decides:
// its labels name the host Service and podbridge, the ports are the
// tenant's, the target and node are the host pod's, and the tenant's
// hostname, zone, hints, labels and target are dropped.
func TestHostEndpointSliceFields(t *testing.T) {
	gate := svcGate()
	gate.Config.EndpointCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	v, h := selectorless()
	desired, _ := gate.EndpointSlices(v, h, []*discoveryv1.EndpointSlice{tenantSlice("web-1", discoveryv1.AddressTypeIPv4, "10.244.0.5", "192.0.2.10")}, tenantPods)
	if len(desired) != 1 {
		t.Fatalf("want one host slice, got %d", len(desired))
	}
	s := desired[0]
	wantLabels := map[string]string{
		discoveryv1.LabelServiceName: h.Name, discoveryv1.LabelManagedBy: translate.EndpointSliceManagedBy,
		translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "vc", translate.LabelNamespace: "shop",
	}
	if fmt.Sprint(s.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels %v, want %v", s.Labels, wantLabels)
	}
	// The slices the host's endpointslice controller makes for a host
	// Service with a selector carry the Service's labels, podbridge's
	// included, and are never podbridge's to delete.
	hostControllers := s.DeepCopy()
	hostControllers.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
	if !translate.IsOwnEndpointSlice(s, "vc") || translate.IsOwnEndpointSlice(hostControllers, "vc") || translate.IsOwnEndpointSlice(s, "other") {
		t.Error("IsOwnEndpointSlice does not tell podbridge's host slices from the host controller's and another virtual cluster's")
	}
	if s.Namespace != "host" || s.Name != translate.HostEndpointSliceName("web-1", "shop", "vc") || translate.HostEndpointSliceKey(s).String() != "shop/web" {
		t.Errorf("host slice %s/%s, key %s", s.Namespace, s.Name, translate.HostEndpointSliceKey(s))
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != h.UID || s.OwnerReferences[0].Name != h.Name {
		t.Errorf("owner references %+v", s.OwnerReferences)
	}
	if len(s.Ports) != 1 || *s.Ports[0].Port != 8080 || *s.Ports[0].Name != "http" || *s.Ports[0].AppProtocol != "http" {
		t.Errorf("ports not carried: %+v", s.Ports)
	}
	pod, cidr := s.Endpoints[0], s.Endpoints[1]
	if pod.TargetRef == nil || pod.TargetRef.Name != "db-x-shop-x-vc" || pod.TargetRef.Namespace != "host" || ptr.Deref(pod.NodeName, "") != "node-a" {
		t.Errorf("pod endpoint's target and node are not the host pod's: %+v %v", pod.TargetRef, pod.NodeName)
	}
	if cidr.TargetRef != nil || cidr.NodeName != nil {
		t.Errorf("an address in an allowed range names %+v on %v", cidr.TargetRef, cidr.NodeName)
	}
	for _, e := range s.Endpoints {
		if e.Hostname != nil || e.Zone != nil || e.Hints != nil || !ptr.Deref(e.Conditions.Ready, false) {
			t.Errorf("endpoint %+v", e)
		}
	}
}

// Only this virtual cluster's running host pods lend their addresses.
func TestTenantPodAddresses(t *testing.T) {
	cfg := svcGate().Config
	pod := func(mutate func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "host", Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "vc"}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5", PodIPs: []corev1.PodIP{{IP: "10.244.0.5"}, {IP: "fd00::5"}}},
		}
		if mutate != nil {
			mutate(p)
		}
		return p
	}
	if got := fmt.Sprint(policy.TenantPodAddresses(pod(nil), cfg)); got != "[10.244.0.5 fd00::5]" {
		t.Errorf("running tenant pod: %s", got)
	}
	for name, mutate := range map[string]func(*corev1.Pod){
		"another tenant's pod":           func(p *corev1.Pod) { p.Labels[translate.LabelVCluster] = "other" },
		"podbridge's own or a host pod":  func(p *corev1.Pod) { delete(p.Labels, translate.LabelManagedBy) },
		"another namespace":              func(p *corev1.Pod) { p.Namespace = "other" },
		"on the host network (the node)": func(p *corev1.Pod) { p.Spec.HostNetwork = true },
		"finished: its IP is free":       func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"failed":                         func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed },
		"being deleted":                  func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: svcNow} },
	} {
		if got := policy.TenantPodAddresses(pod(mutate), cfg); len(got) > 0 {
			t.Errorf("%s lends %v", name, got)
		}
	}
}
