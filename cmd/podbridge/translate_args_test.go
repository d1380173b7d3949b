package main

import (
	"flag"
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/testbed/podbridgeproc"
	"github.com/podbridge/podbridge/translate"
)

// The test bed runs the webhook and the reflector as processes of this
// binary, telling them its translate.Config by flags
// (podbridgeproc.TranslateArgs): every field, set to a value that is not
// the default, comes back as it went, so the processes run with the
// configuration the test bed reports. A field added to translate.Config
// without a flag, or left out of TranslateArgs, fails here.
func TestTranslateArgsRoundTrip(t *testing.T) {
	want := translate.Config{
		VCluster: "vc", HostNamespace: "ns", HostServiceAccount: "sa",
		APIServerHost: "10.0.0.1", APIServerPort: 443, HostAPIServicePort: 6443,
		KubernetesServiceIP: "10.0.0.1", DNSNameserver: "10.0.0.10",
		DNSService:    types.NamespacedName{Namespace: "dns", Name: "resolver"},
		ClusterDomain: "example.internal", HostsImage: "hosts:1",
		NodeSelector: map[string]string{"pool": "tenants", "zone": "a"},
		Tolerations: []corev1.Toleration{
			{Key: "pool", Operator: corev1.TolerationOpEqual, Value: "tenants", Effect: corev1.TaintEffectNoSchedule},
			{Key: "gone", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](30)},
		},
		PriorityClasses: []string{"low", "high"}, RuntimeClasses: []string{"gvisor"},
		CSIDrivers: []string{"csi.example"}, StorageClasses: []string{"fast", "slow"},
		CSIVolumeAttributes: map[string][]string{"csi.example": {"size", "mode"}, "other.example": {"x"}},
		TolerationKeys:      []string{"pool"},
		AllowNodePinning:    true, AllowDefaultStorageClass: true,
		HostAnnotations: []string{"example.com/a"},
		ServiceTypes:    []corev1.ServiceType{corev1.ServiceTypeNodePort},
		EndpointCIDRs:   []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		ReservedCIDRs:   []string{"10.244.0.0/16", "10.0.0.0/24"},
	}
	v := reflect.ValueOf(want)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("the fixture leaves translate.Config.%s at its zero value: give it one a flag must carry", v.Type().Field(i).Name)
		}
	}
	args, err := podbridgeproc.TranslateArgs(want)
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--vcluster-name="+want.VCluster, "--host-namespace="+want.HostNamespace, "--host-service-account="+want.HostServiceAccount)
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var cf clusterFlags
	cf.bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %v: %v", args, err)
	}
	if !reflect.DeepEqual(cf.translate, want) {
		t.Errorf("flags %v\nparsed into %+v\nwant %+v", args, cf.translate, want)
	}
}
