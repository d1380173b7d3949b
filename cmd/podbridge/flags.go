package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/hostaccount"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/memlimit"
	"github.com/podbridge/podbridge/internal/metricsauth"
	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/translate"
)

// clusterFlags are the flags the webhook and the reflector share: where the
// two clusters are and how the virtual cluster maps onto the host.
type clusterFlags struct {
	hostKubeconfig, virtualKubeconfig  string
	translate                          translate.Config
	qps                                float64
	burst                              int
	metricsAddr, healthAddr, pprofAddr string
	metricsCertDir                     string
	limits                             caps.Limits
	memoryLimit                        string
}

func (f *clusterFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.hostKubeconfig, "host-kubeconfig", "", "kubeconfig of the host cluster (empty: in-cluster configuration)")
	fs.StringVar(&f.virtualKubeconfig, "virtual-kubeconfig", "", "kubeconfig of the virtual cluster (required)")
	fs.StringVar(&f.translate.HostNamespace, "host-namespace", "", "host namespace that receives the virtual cluster's pods (required)")
	fs.StringVar(&f.translate.VCluster, "vcluster-name", "", "name of the virtual cluster, unique in the host namespace (required)")
	fs.StringVar(&f.translate.HostServiceAccount, "host-service-account", "", "host service account that host pods run as (default "+hostaccount.DefaultName("<vcluster-name>")+", one per virtual cluster): it must have no image pull secrets, automountServiceAccountToken false and the annotation "+ownership.Annotation+"=<vcluster-name>, or podbridge refuses to start")
	fs.StringVar(&f.translate.APIServerHost, "virtual-apiserver-host", "", "virtual apiserver address as host pods reach it (KUBERNETES_SERVICE_HOST and the rest of the kubernetes Service's variables); empty leaves them alone")
	fs.Func("virtual-apiserver-port", "virtual apiserver port as host pods reach it (KUBERNETES_SERVICE_PORT)", func(v string) error {
		port, err := strconv.ParseInt(v, 10, 32)
		if err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("must be a port number, not %q", v)
		}
		f.translate.APIServerPort = int32(port)
		return nil
	})
	fs.Func("host-kubernetes-service-port", "port of the host's default/kubernetes Service (default 443): names some of the variables the host kubelet injects, which host pods get with the virtual apiserver's values", func(v string) error {
		port, err := strconv.ParseInt(v, 10, 32)
		if err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("must be a port number, not %q", v)
		}
		f.translate.HostAPIServicePort = int32(port)
		return nil
	})
	fs.StringVar(&f.translate.KubernetesServiceIP, "virtual-kubernetes-service-ip", "", "ClusterIP of the host Service in front of the virtual apiserver on port 443: the virtual default/kubernetes Service gets it, so kubernetes.default.svc reaches the virtual apiserver (--virtual-apiserver-host and -port must then name it and 443)")
	fs.StringVar(&f.translate.DNSNameserver, "virtual-dns-nameserver", "", "IP of the virtual cluster's DNS service; ClusterFirst pods then resolve through it, and the host Service of --virtual-dns-service gets it")
	f.translate.DNSService = types.NamespacedName{Namespace: metav1.NamespaceSystem, Name: "kube-dns"}
	fs.Func("virtual-dns-service", "virtual Service of the virtual cluster's DNS server, as namespace/name (default kube-system/kube-dns): its host Service gets --virtual-dns-nameserver's address", func(v string) error {
		namespace, name, ok := strings.Cut(v, "/")
		if !ok || namespace == "" || name == "" {
			return fmt.Errorf("must be namespace/name, not %q", v)
		}
		f.translate.DNSService = types.NamespacedName{Namespace: namespace, Name: name}
		return nil
	})
	fs.StringVar(&f.translate.ClusterDomain, "cluster-domain", "cluster.local", "DNS domain of the virtual cluster")
	fs.StringVar(&f.translate.HostsImage, "hosts-image", "", "image of the init container (cmd/podbridge-hosts) that writes /etc/hosts for pods with a subdomain, so hostname -f names the virtual namespace; empty: such pods keep the host kubelet's file, which names the host namespace")
	fs.Func("enforce-node-selector", "node selector added to every host pod, as key=value,key=value", func(v string) error {
		selector, err := labels.ConvertSelectorToLabelsMap(v)
		if err != nil {
			return err
		}
		f.translate.NodeSelector = selector
		return nil
	})
	fs.Func("enforce-tolerations", `tolerations added to every host pod, as JSON: [{"key":"k","operator":"Exists","effect":"NoSchedule"}]`, func(v string) error {
		return json.Unmarshal([]byte(v), &f.translate.Tolerations)
	})
	fs.Func("allowed-priority-classes", "priority classes tenants may use, comma-separated; others are stripped", func(v string) error {
		f.translate.PriorityClasses = list(v)
		return nil
	})
	fs.Func("allowed-runtime-classes", "runtime classes host pods may name, comma-separated; a pod naming another is refused (default: none)", func(v string) error {
		f.translate.RuntimeClasses = list(v)
		return nil
	})
	fs.Func("allowed-csi-drivers", "CSI drivers inline volumes may use, comma-separated; a pod using another is refused (default: none)", func(v string) error {
		f.translate.CSIDrivers = list(v)
		return nil
	})
	fs.Func("allowed-storage-classes", "storage classes PersistentVolumeClaims and generic ephemeral volumes may use, comma-separated; a claim or pod naming another is refused (default: none)", func(v string) error {
		f.translate.StorageClasses = list(v)
		return nil
	})
	fs.Func("allowed-csi-volume-attributes", "volumeAttributes keys inline CSI volumes may set, as driver=key,driver=key (the driver must be allowed too); a volume setting another key is refused (default: none)", func(v string) error {
		f.translate.CSIVolumeAttributes = map[string][]string{}
		for _, entry := range list(v) {
			driver, key, ok := strings.Cut(entry, "=")
			if !ok || driver == "" || key == "" {
				return fmt.Errorf("entry %q: want driver=key", entry)
			}
			f.translate.CSIVolumeAttributes[driver] = append(f.translate.CSIVolumeAttributes[driver], key)
		}
		return nil
	})
	fs.Func("allowed-toleration-keys", "taint keys tenants' tolerations may name besides node.kubernetes.io/not-ready and unreachable, comma-separated; a pod tolerating another key, or every key, is refused (default: none)", func(v string) error {
		f.translate.TolerationKeys = list(v)
		return nil
	})
	fs.Func(policy.FlagAllowedServiceTypes, "Service types tenants may create besides ClusterIP (headless included) and ExternalName, comma-separated: NodePort, LoadBalancer; another is refused (default: none)", func(v string) error {
		f.translate.ServiceTypes = nil
		for _, t := range list(v) {
			f.translate.ServiceTypes = append(f.translate.ServiceTypes, corev1.ServiceType(t))
		}
		return nil
	})
	fs.Func(policy.FlagAllowedEndpointCIDRs, "address ranges, comma-separated CIDRs (10.1.0.0/16), that the EndpointSlices of tenants' Services without a selector may name besides the virtual cluster's own pod IPs; other addresses are not carried to the host (reflector and check; default: none)", func(v string) error {
		f.translate.EndpointCIDRs = nil
		for _, entry := range list(v) {
			p, err := netip.ParsePrefix(strings.TrimSpace(entry))
			if err != nil {
				return fmt.Errorf("entry %q: must be a CIDR such as 10.1.0.0/16", entry)
			}
			if msg := translate.EndpointCIDRProblem(p); msg != "" {
				return fmt.Errorf("entry %q: %s", entry, msg)
			}
			f.translate.EndpointCIDRs = append(f.translate.EndpointCIDRs, p)
		}
		return nil
	})
	fs.Func(policy.FlagReservedCIDRs, "address ranges no tenant NetworkPolicy may open, comma-separated CIDRs: the host's pod network and service range, node addresses, the metadata address; an ipBlock must lie outside them (or except them), and a rule with no peers reaches this virtual cluster's pods and the addresses outside them (default: none, so ipBlock is refused and such a rule reaches this virtual cluster's pods only)", func(v string) error {
		f.translate.ReservedCIDRs = list(v)
		return nil
	})
	fs.BoolVar(&f.translate.AllowNodePinning, "allow-node-pinning", false, "let tenants name nodes in node affinity (matchFields on metadata.name)")
	fs.BoolVar(&f.translate.AllowDefaultStorageClass, "allow-default-storage-class", false, "let PersistentVolumeClaims and generic ephemeral volumes name no storage class, so the host's default class provisions them")
	f.limits = caps.Defaults()
	fs.IntVar(&f.limits.MaxCopies, caps.FlagMaxCopies, f.limits.MaxCopies, "ConfigMap and Secret copies the virtual cluster may have on the host; pods and copy updates past it are refused (0: no cap)")
	fs.Int64Var(&f.limits.MaxCopyBytes, caps.FlagMaxCopyBytes, f.limits.MaxCopyBytes, "total data bytes of the virtual cluster's ConfigMap and Secret copies on the host (0: no cap)")
	fs.IntVar(&f.limits.MaxTokensPerPod, caps.FlagMaxTokensPerPod, f.limits.MaxTokensPerPod, "projected service-account tokens (host token Secrets) one pod may mount (0: no cap)")
	fs.IntVar(&f.limits.MaxHostPods, caps.FlagMaxHostPods, f.limits.MaxHostPods, "host pods the virtual cluster may have, those of creates refused after podbridge's admission included until collected; creates past it are refused (webhook; 0: no cap)")
	fs.IntVar(&f.limits.MaxHostServices, caps.FlagMaxHostServices, f.limits.MaxHostServices, "host Services the virtual cluster may have, those of creates refused after podbridge's admission included until collected; creates past it are refused (webhook; 0: no cap)")
	fs.IntVar(&f.limits.MaxHostNetworkPolicies, caps.FlagMaxHostNetworkPolicies, f.limits.MaxHostNetworkPolicies, "host NetworkPolicies the virtual cluster may have, those of creates refused after podbridge's admission included until collected; creates past it are refused (webhook; 0: no cap)")
	fs.Func(caps.FlagMaxClaimStorage, "storage the virtual cluster's host PersistentVolumeClaims may request together, as a quantity (default 1Ti); creates and resizes past it are refused (webhook; 0: no cap)", func(v string) error {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return err
		}
		f.limits.MaxClaimStorage = q.Value()
		return nil
	})
	fs.Int64Var(&f.limits.MaxRequestBytes, caps.FlagMaxRequestBytes, f.limits.MaxRequestBytes, "largest admission request body the webhook reads (0: controller-runtime's 7 MiB)")
	fs.Func("host-annotations", "tenant annotation keys copied to host pods, comma-separated (default none: other tenant annotations never reach the host)", func(v string) error {
		f.translate.HostAnnotations = nil
		for _, key := range strings.Split(v, ",") {
			if key = strings.TrimSpace(key); key != "" {
				f.translate.HostAnnotations = append(f.translate.HostAnnotations, key)
			}
		}
		return nil
	})
	fs.Float64Var(&f.qps, "kube-api-qps", float64(kube.DefaultLimits.QPS), "client-side queries per second to each apiserver")
	fs.IntVar(&f.burst, "kube-api-burst", kube.DefaultLimits.Burst, "client-side burst to each apiserver")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8443", "address of the Prometheus metrics endpoint, served over HTTPS only to callers the host apiserver authenticates and authorizes for GET /metrics (0 disables it)")
	fs.StringVar(&f.metricsCertDir, "metrics-cert-dir", "", "folder with the metrics endpoint's tls.crt and tls.key, re-read when they change (empty: a self-signed certificate made at start)")
	fs.StringVar(&f.healthAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints (0 disables them)")
	fs.StringVar(&f.memoryLimit, "memory-limit", memlimit.Auto, "soft memory limit of the Go runtime, as a quantity such as 400Mi: the garbage collector works harder near it; "+memlimit.Auto+": "+fmt.Sprintf("%.0f%%", memlimit.Fraction*100)+" of the container's memory limit (none without one, or when GOMEMLIMIT is set); 0: none")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "address of the /debug/pprof endpoints, for profiling (0 disables them)")
}

// configs validates the flags and loads both clusters' client configurations.
func (f *clusterFlags) configs(component string) (host, virtual *rest.Config, err error) {
	var errs []error
	if f.virtualKubeconfig == "" {
		errs = append(errs, errors.New("--virtual-kubeconfig is required"))
	}
	if f.translate.HostNamespace == "" {
		errs = append(errs, errors.New("--host-namespace is required"))
	}
	if f.translate.VCluster == "" {
		errs = append(errs, errors.New("--vcluster-name is required"))
	}
	if err := metricsauth.CheckCertDir(f.metricsCertDir); err != nil {
		errs = append(errs, fmt.Errorf("--metrics-cert-dir: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	f.applyDefaults()
	if err := f.translate.Validate(); err != nil {
		return nil, nil, err
	}
	limit, why, err := memlimit.Apply(f.memoryLimit)
	if err != nil {
		return nil, nil, err
	}
	if limit > 0 {
		ctrl.Log.WithName(component).Info("Set the Go runtime's soft memory limit", "bytes", limit, "reason", why)
	} else {
		ctrl.Log.WithName(component).Info("Left the Go runtime's memory limit unset", "reason", why)
	}
	limits := kube.Limits{QPS: float32(f.qps), Burst: f.burst}
	userAgent := "podbridge-" + component
	if host, err = kube.Load(f.hostKubeconfig, limits, userAgent); err != nil {
		return nil, nil, fmt.Errorf("--host-kubeconfig: %w", err)
	}
	if virtual, err = kube.Load(f.virtualKubeconfig, limits, userAgent); err != nil {
		return nil, nil, fmt.Errorf("--virtual-kubeconfig: %w", err)
	}
	return host, virtual, nil
}

// applyDefaults fills what defaults to a value of the virtual cluster's:
// the host service account.
func (f *clusterFlags) applyDefaults() {
	if f.translate.HostServiceAccount == "" {
		f.translate.HostServiceAccount = hostaccount.DefaultName(f.translate.VCluster)
	}
}

// list splits a comma-separated flag value; an empty value is an empty
// list, and translate.Config.Validate refuses empty or malformed entries.
func list(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// bindLogging adds the zap flags and returns a function that installs the logger.
func bindLogging(fs *flag.FlagSet) func() {
	opts := zap.Options{}
	opts.BindFlags(fs)
	return func() { ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts))) }
}
