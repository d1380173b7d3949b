package podbridgeproc

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// TranslateArgs are the flags of `podbridge webhook` and `podbridge
// reflector` that give them tc, but for the names Cluster passes
// (--host-namespace, --vcluster-name, --host-service-account). A field at
// its zero value is left to the command's default. cmd/podbridge's tests
// parse them back into tc, so no field is left out or mistyped.
func TranslateArgs(tc translate.Config) ([]string, error) {
	var args []string
	add := func(name, value string) { args = append(args, "--"+name+"="+value) }
	str := func(name, value string) {
		if value != "" {
			add(name, value)
		}
	}
	port := func(name string, value int32) {
		if value != 0 {
			add(name, strconv.Itoa(int(value)))
		}
	}
	list := func(name string, values []string) {
		if len(values) > 0 {
			add(name, strings.Join(values, ","))
		}
	}
	str("virtual-apiserver-host", tc.APIServerHost)
	port("virtual-apiserver-port", tc.APIServerPort)
	port("host-kubernetes-service-port", tc.HostAPIServicePort)
	str("virtual-kubernetes-service-ip", tc.KubernetesServiceIP)
	str("virtual-dns-nameserver", tc.DNSNameserver)
	if tc.DNSService.Name != "" || tc.DNSService.Namespace != "" {
		add("virtual-dns-service", tc.DNSService.Namespace+"/"+tc.DNSService.Name)
	}
	str("cluster-domain", tc.ClusterDomain)
	str("hosts-image", tc.HostsImage)
	if len(tc.NodeSelector) > 0 {
		var pairs []string
		for _, k := range slices.Sorted(maps.Keys(tc.NodeSelector)) {
			pairs = append(pairs, k+"="+tc.NodeSelector[k])
		}
		add("enforce-node-selector", strings.Join(pairs, ","))
	}
	if len(tc.Tolerations) > 0 {
		b, err := json.Marshal(tc.Tolerations)
		if err != nil {
			return nil, fmt.Errorf("tolerations: %w", err)
		}
		add("enforce-tolerations", string(b))
	}
	list("allowed-priority-classes", tc.PriorityClasses)
	list("allowed-runtime-classes", tc.RuntimeClasses)
	list("allowed-csi-drivers", tc.CSIDrivers)
	list("allowed-storage-classes", tc.StorageClasses)
	if len(tc.CSIVolumeAttributes) > 0 {
		var pairs []string
		for _, driver := range slices.Sorted(maps.Keys(tc.CSIVolumeAttributes)) {
			for _, key := range tc.CSIVolumeAttributes[driver] {
				pairs = append(pairs, driver+"="+key)
			}
		}
		list("allowed-csi-volume-attributes", pairs)
	}
	list("allowed-toleration-keys", tc.TolerationKeys)
	var serviceTypes []string
	for _, t := range tc.ServiceTypes {
		serviceTypes = append(serviceTypes, string(t))
	}
	list(policy.FlagAllowedServiceTypes, serviceTypes)
	var endpointCIDRs []string
	for _, p := range tc.EndpointCIDRs {
		endpointCIDRs = append(endpointCIDRs, p.String())
	}
	list(policy.FlagAllowedEndpointCIDRs, endpointCIDRs)
	list(policy.FlagReservedCIDRs, tc.ReservedCIDRs)
	if tc.AllowNodePinning {
		add("allow-node-pinning", "true")
	}
	if tc.AllowDefaultStorageClass {
		add("allow-default-storage-class", "true")
	}
	list("host-annotations", tc.HostAnnotations)
	return args, nil
}
