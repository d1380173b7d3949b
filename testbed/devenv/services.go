package devenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/manifests/virtualcluster"
	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
)

// APIServerServiceName is the host Service in front of the virtual
// apiserver, made as a platform would make it: the virtual
// `default/kubernetes` Service gets its address
// (translate.Config.KubernetesServiceIP), and host pods reach the virtual
// apiserver through it.
const APIServerServiceName = "podbridge-virtual-apiserver"

// DNSService is the virtual Service of the test bed's DNS server
// (coredns.yaml), to which the webhook gives the nameserver address.
var DNSService = types.NamespacedName{Namespace: "kube-system", Name: "kube-dns"}

// Offsets in the host's Service range of the two addresses the test bed
// fixes: both in the range's static band, which the host allocates only
// once the rest is used, as kube-dns's tenth address is.
const (
	apiServerServiceOffset = 2
	dnsServiceOffset       = 10
)

// serviceAddresses returns the addresses of the virtual apiserver's host
// Service and of the virtual cluster's DNS Service in the host Service
// range cidr.
func serviceAddresses(cidr string) (apiServer, dns string, err error) {
	network, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", "", fmt.Errorf("service range %q: %w", cidr, err)
	}
	nth := func(n int) (string, error) {
		addr := network.Masked().Addr()
		for range n {
			addr = addr.Next()
		}
		if !network.Contains(addr) {
			return "", fmt.Errorf("service range %s has no address %d", cidr, n)
		}
		return addr.String(), nil
	}
	if apiServer, err = nth(apiServerServiceOffset); err != nil {
		return "", "", err
	}
	dns, err = nth(dnsServiceOffset)
	return apiServer, dns, err
}

// kubernetesServingNames are the names the virtual apiserver's serving
// certificate holds for pods that reach it as any cluster's apiserver:
// its Service address and kubernetes.default.svc's names.
func kubernetesServingNames(ip, domain string) []string {
	if domain == "" {
		domain = "cluster.local"
	}
	return []string{ip, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + domain}
}

// exposeVirtualAPIServer makes the host Service in front of the virtual
// apiserver at tc.KubernetesServiceIP, port 443, and, when endpoint is
// set (a real node, whose pods reach the apiserver on its bridge), the
// EndpointSlice that sends it there.
func exposeVirtualAPIServer(ctx context.Context, c client.Client, tc translate.Config, apiServerPort int32, endpoint string) error {
	objects := []client.Object{&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: APIServerServiceName, Namespace: tc.HostNamespace},
		Spec: corev1.ServiceSpec{
			ClusterIP: tc.KubernetesServiceIP, ClusterIPs: []string{tc.KubernetesServiceIP},
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(apiServerPort)}},
		},
	}}
	if endpoint != "" {
		objects = append(objects, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: APIServerServiceName, Namespace: tc.HostNamespace, Labels: map[string]string{
				discoveryv1.LabelServiceName: APIServerServiceName,
				discoveryv1.LabelManagedBy:   "podbridge-dev",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{endpoint}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(apiServerPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
		})
	}
	for _, obj := range objects {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating host %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// pinKubernetesService makes the virtual default/kubernetes hold ip. The
// virtual apiserver made it with its range's first address before
// podbridge's webhook was registered; the reflector deletes such a one and
// the apiserver makes it again within seconds (its own interval), through
// the webhook. Creating it here, as the apiserver does, saves that wait.
func pinKubernetesService(ctx context.Context, c client.Client, ip string, apiServerPort int32) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	key := client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}
	var last string
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		svc, err := kube.GetOrNil[corev1.Service](ctx, c, key)
		switch {
		case err != nil:
			last = err.Error()
			return false, nil //nolint:nilerr // keep waiting; said at the end.
		case svc != nil && svc.Spec.ClusterIP == ip:
			return true, nil
		case svc != nil:
			last = "ClusterIP " + svc.Spec.ClusterIP
			err = c.Delete(ctx, svc, client.Preconditions{UID: &svc.UID})
		default:
			last = "no Service"
			err = c.Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: map[string]string{"provider": "kubernetes", "component": "apiserver"}},
				Spec: corev1.ServiceSpec{
					Ports:          []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(apiServerPort)}},
					IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
				},
			})
		}
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) {
			last = err.Error()
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the virtual default/kubernetes Service at %s (%s): %w", ip, last, err)
	}
	return nil
}

// installDNS creates the virtual cluster's DNS server (coredns.yaml) in the
// virtual cluster, its pods on the real node, and waits until it answers
// (its Deployment available).
func installDNS(ctx context.Context, c client.Client) error {
	objects, err := dnsObjects()
	if err != nil {
		return err
	}
	var deployment *appsv1.Deployment
	for _, obj := range objects {
		if d, ok := obj.(*appsv1.Deployment); ok {
			d.Spec.Template.Spec.NodeSelector = map[string]string{realnode.LabelRealNode: "true"}
			d.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: realnode.TaintRealNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
			deployment = d
		}
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating virtual %T %s: %w", obj, obj.GetName(), err)
		}
	}
	if deployment == nil {
		return errors.New("coredns.yaml holds no Deployment")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(deployment), deployment); err != nil {
			return false, nil //nolint:nilerr // keep waiting; the status says why at the end.
		}
		return deployment.Status.AvailableReplicas > 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the virtual cluster's DNS server (kube-system/coredns available; status %+v): %w", deployment.Status, err)
	}
	return nil
}

// dnsObjects decodes coredns.yaml.
func dnsObjects() ([]client.Object, error) {
	decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(corednsYAML), 4096)
	var objects []client.Object
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); errors.Is(err, io.EOF) {
			return objects, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding coredns.yaml: %w", err)
		}
		obj, _, err := serializer.NewCodecFactory(kube.Scheme).UniversalDeserializer().Decode(raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding coredns.yaml: %w", err)
		}
		objects = append(objects, obj.(client.Object))
	}
}

// corednsYAML is the tenant DNS server `podbridge create` installs too
// (manifests/virtualcluster/dns): one copy for both.
var corednsYAML = virtualcluster.CoreDNS

// firstAddress is the first address of the Service range cidr: its
// kubernetes Service's.
func firstAddress(cidr string) (string, error) {
	network, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("service range %q: %w", cidr, err)
	}
	return network.Masked().Addr().Next().String(), nil
}
