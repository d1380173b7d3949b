package integration

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/translate"
)

// allowedEndpointCIDR is the dev virtual cluster's --allowed-endpoint-cidrs.
var allowedEndpointCIDR = netip.MustParsePrefix("203.0.113.0/24")

func virtualSlice(namespace, name, service string, addresses ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	for _, a := range addresses {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "kube-system", Name: "kube-apiserver"}})
	}
	return s
}

func hostSliceKey(virtual *discoveryv1.EndpointSlice) client.ObjectKey {
	tc := env.Options.Translate
	return client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostEndpointSliceName(virtual.Name, virtual.Namespace, tc.VCluster)}
}

// waitHostSliceAddresses waits until virtual's host slice holds exactly want.
func waitHostSliceAddresses(t *testing.T, virtual *discoveryv1.EndpointSlice, want ...string) *discoveryv1.EndpointSlice {
	t.Helper()
	host := &discoveryv1.EndpointSlice{}
	eventually(t, 30*time.Second, fmt.Sprintf("host slice of %s to hold %v", virtual.Name, want), func(ctx context.Context) (bool, string) {
		if err := hostClient.Get(ctx, hostSliceKey(virtual), host); err != nil {
			return false, err.Error()
		}
		var got []string
		for _, e := range host.Endpoints {
			got = append(got, e.Addresses...)
		}
		return slices.Equal(got, want), fmt.Sprint(got)
	})
	return host
}

// waitRefusalEvent waits for an EndpointsRefused event on svc whose
// message names every one of want.
func waitRefusalEvent(t *testing.T, svc *corev1.Service, want ...string) {
	t.Helper()
	eventually(t, 30*time.Second, "an EndpointsRefused event naming "+strings.Join(want, ", "), func(ctx context.Context) (bool, string) {
		events := &eventsv1.EventList{}
		if err := virtualClient.List(ctx, events, client.InNamespace(svc.Namespace)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.Regarding.Kind != "Service" || e.Regarding.Name != svc.Name || e.Reason != reflector.ReasonEndpointsRefused {
				continue
			}
			if e.Type == corev1.EventTypeWarning && !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(e.Note, w) }) {
				return true, ""
			}
			seen = append(seen, e.Note)
		}
		return false, fmt.Sprint(seen)
	})
}

// waitEndpointsCondition waits until svc's ConditionEndpointsCarried is
// False naming every one of want, or, with none, absent.
func waitEndpointsCondition(t *testing.T, svc *corev1.Service, want ...string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%s condition naming %v", translate.ConditionEndpointsCarried, want), func(ctx context.Context) (bool, string) {
		current := &corev1.Service{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(svc), current); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(current.Status.Conditions, translate.ConditionEndpointsCarried)
		if len(want) == 0 {
			return c == nil, fmt.Sprintf("%+v", c)
		}
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == reflector.ReasonEndpointsRefused &&
			!slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(c.Message, w) }), fmt.Sprintf("%+v", c)
	})
}

// plantHostPod runs a host pod podbridge did not make for this virtual
// cluster on a kwok node (another tenant's, labelled with another
// virtual cluster's name, or the platform's own, with no podbridge
// label) and returns its IP.
func plantHostPod(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	tc := env.Options.Translate
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tc.HostNamespace, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName: "kwok-node-0", ServiceAccountName: tc.HostServiceAccount, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "app", Image: "nginx"}},
		},
	}
	if err := hostClient.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := hostClient.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			t.Error(err)
		}
	})
	eventually(t, 30*time.Second, "planted host pod "+name+" to get an IP", func(ctx context.Context) (bool, string) {
		err := hostClient.Get(ctx, client.ObjectKeyFromObject(pod), pod)
		return err == nil && pod.Status.PodIP != "", fmt.Sprint(err, pod.Status.PodIP)
	})
	return pod.Status.PodIP
}

// The tenant's EndpointSlices of a Service without a selector reach the
// host only with addresses the platform allows: its own pod's IP and the
// allowed range are carried; another tenant's pod, the platform's own pod,
// an address off the allowed range, the metadata address and an FQDN slice
// are not, and the virtual Service gets an EndpointsRefused event and a
// False podbridge.io/EndpointsCarried condition naming them, which goes
// once nothing is refused. Slices of a Service with a selector, or labelled for one, never
// reach the host. An address that stops being the tenant pod's is dropped;
// deleting the virtual slice, then the Service, removes the host slices.
func TestSelectorlessServiceEndpointSlices(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	tc := env.Options.Translate

	backend := simplePod(ns, "backend")
	if err := virtualClient.Create(ctx, backend); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "backend pod IP", func(ctx context.Context) (bool, string) {
		err := virtualClient.Get(ctx, client.ObjectKeyFromObject(backend), backend)
		return err == nil && backend.Status.PodIP != "", fmt.Sprint(err)
	})
	own := backend.Status.PodIP
	otherTenant := plantHostPod(t, "other-tenant-"+ns, map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: "slices-other"})
	platform := plantHostPod(t, "platform-"+ns, map[string]string{"app.kubernetes.io/name": "podbridge"})
	inRange, offRange := "203.0.113.10", "198.51.100.7"

	svc := simpleService(ns, "db", nil)
	if err := virtualClient.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	hostSvc := getHostService(t, svc)
	first := virtualSlice(ns, "db-1", "db", own, otherTenant, platform, inRange, offRange)
	second := virtualSlice(ns, "db-2", "db", "203.0.113.11")
	fqdn := virtualSlice(ns, "db-names", "db", "metadata.google.internal")
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	for _, s := range []*discoveryv1.EndpointSlice{first, second, fqdn} {
		if err := virtualClient.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	host := waitHostSliceAddresses(t, first, own, inRange)
	if host.Labels[discoveryv1.LabelServiceName] != hostSvc.Name || host.Labels[discoveryv1.LabelManagedBy] != translate.EndpointSliceManagedBy {
		t.Errorf("host slice labels %v: want the host Service %s, managed by %s", host.Labels, hostSvc.Name, translate.EndpointSliceManagedBy)
	}
	if ref := host.Endpoints[0].TargetRef; ref == nil || ref.Namespace != tc.HostNamespace || ref.Name != translate.HostName("backend", ns, tc.VCluster) {
		t.Errorf("the tenant pod's endpoint targets %+v, want its host pod", ref)
	}
	if ref := host.Endpoints[1].TargetRef; ref != nil {
		t.Errorf("the allowed range's endpoint targets %+v, want nothing", ref)
	}
	waitHostSliceAddresses(t, second, "203.0.113.11")
	waitEndpointsCondition(t, svc, otherTenant, platform, offRange, "slice db-names", "--allowed-endpoint-cidrs")
	waitRefusalEvent(t, svc, "not carried to the host", "--allowed-endpoint-cidrs")
	if err := hostClient.Get(ctx, hostSliceKey(fqdn), &discoveryv1.EndpointSlice{}); !apierrors.IsNotFound(err) {
		t.Errorf("host slice of the FQDN slice: %v", err)
	}

	// A Service with a selector is the host's endpointslice controller's:
	// a slice the tenant writes for it, or points at it, never reaches the host.
	web := simpleService(ns, "web", map[string]string{"app": "backend"})
	if err := virtualClient.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	removeServiceWhileItsPodbridgeRuns(t, virtualClient, web, getHostService(t, web))
	forWeb := virtualSlice(ns, "web-manual", "web", own)
	if err := virtualClient.Create(ctx, forWeb); err != nil {
		t.Fatal(err)
	}

	violations, err := check.RunEndpointSlices(ctx, hostClient, virtualClient, check.Options{Config: tc})
	if err != nil || len(violations) > 0 {
		t.Errorf("check: %v %v", violations, err)
	}

	// The backend pod goes: its address may be another tenant's next, so
	// the host slice drops it.
	if err := virtualClient.Delete(ctx, backend); err != nil {
		t.Fatal(err)
	}
	waitHostSliceAddresses(t, first, inRange)
	waitEndpointsCondition(t, svc, own+" (not a pod of this virtual cluster")
	if err := hostClient.Get(ctx, hostSliceKey(forWeb), &discoveryv1.EndpointSlice{}); !apierrors.IsNotFound(err) {
		t.Errorf("host slice of a Service with a selector: %v", err)
	}

	// Deletion: the virtual slice's host slice goes, then the Service's.
	if err := virtualClient.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: hostSliceKey(first).Name, Namespace: tc.HostNamespace}}, 30*time.Second)
	waitHostSliceAddresses(t, second, "203.0.113.11")
	if err := virtualClient.Delete(ctx, fqdn); err != nil {
		t.Fatal(err)
	}
	waitEndpointsCondition(t, svc) // nothing refused any more
	if err := virtualClient.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: hostSliceKey(second).Name, Namespace: tc.HostNamespace}}, 30*time.Second)
	waitGone(t, hostClient, hostSvc, 30*time.Second)
}
