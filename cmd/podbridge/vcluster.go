package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/vcluster"
)

// The virtual-cluster commands: create, connect, list, delete, and the
// control-plane pod's vcluster-init. Their logic is package vcluster's.

// hostFlags are the host cluster's kubeconfig and the virtual cluster's
// namespace, shared by create, connect, list and delete.
type hostFlags struct {
	kubeconfig, context, namespace string
}

func (h *hostFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&h.kubeconfig, "kubeconfig", "", "kubeconfig of the host cluster (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&h.context, "context", "", "context of the host kubeconfig (default: its current context)")
	fs.StringVar(&h.namespace, "namespace", "", "host namespace of the virtual cluster")
	fs.StringVar(&h.namespace, "n", "", "shorthand for --namespace")
}

func (h *hostFlags) config() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = h.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: h.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	return cfg, nil
}

func (h *hostFlags) client() (client.Client, *rest.Config, error) {
	cfg, err := h.config()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	return c, cfg, err
}

// parseNamed parses `COMMAND NAME [flags]` or `COMMAND [flags] NAME`.
func parseNamed(fs *flag.FlagSet, args []string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return "", err
		}
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if name == "" {
		return "", errors.New("NAME is required: the virtual cluster's name")
	}
	return name, nil
}

// repeated is a flag given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func runCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge create NAME", flag.ContinueOnError)
	var h hostFlags
	h.bind(fs)
	var o vcluster.CreateOptions
	serviceCIDR := fs.String("service-cidr", "", "the host's Service range (default: read from the host's ServiceCIDR kubernetes)")
	dnsIP := fs.String("dns-ip", "", "address of the tenant DNS Service, in the host's Service range (default: a free one of the range's static band)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "DNS domain of the virtual cluster")
	var images, patches, flags repeated
	fs.Var(&images, "image", "NAME=REFERENCE, repeated: replace an image of the package (podbridge, kube-apiserver, kube-controller-manager, kine)")
	fs.StringVar(&o.DNSImage, "dns-image", "", "image of the tenant DNS server (default: the manifest's)")
	fs.Var(&patches, "patch", "FILE, repeated: a strategic-merge patch of the package's objects, by their names before the prefix (e.g. StatefulSet control-plane's nodeSelector)")
	fs.Var(&flags, "podbridge-flag", "--FLAG=VALUE, repeated: added to podbridge's webhook and reflector (placement and allow-lists: docs/deploying.md)")
	fs.StringVar(&o.Store, "store", vcluster.StoreKine, "the virtual cluster's store: kine (SQLite on a claim, one replica) or etcd (the platform's etcd, --etcd-servers; several replicas)")
	etcdServers := fs.String("etcd-servers", "", "with --store=etcd: the etcd's client URLs, comma-separated, https://ADDRESS:PORT")
	fs.StringVar(&o.Etcd.ClientSecret, "etcd-client-secret", vcluster.DefaultEtcdClientSecret, "with --store=etcd: host Secret in the namespace with the etcd client certificate (ca.crt, tls.crt, tls.key)")
	var etcdEgress repeated
	fs.Var(&etcdEgress, "etcd-egress", "CIDR, repeated: with --store=etcd, where the etcd servers' addresses are when --etcd-servers names them by DNS name (the control plane's egress policy allows addresses)")
	fs.IntVar(&o.Replicas, "replicas", 0, "control-plane replicas (default 1 with kine, 3 with etcd; more than 1 needs --store=etcd)")
	fs.StringVar(&o.Certificates, "certificates", vcluster.IssuerSelfManaged, "who makes the control plane's CAs, service-account key and serving certificate: self-managed (podbridge's init) or cert-manager (Issuers and Certificates in the namespace)")
	fs.BoolVar(&o.SkipDNS, "skip-dns", false, "do not install the tenant DNS server")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the virtual cluster to answer")
	out := fs.String("kubeconfig-out", "", "write the admin kubeconfig there (default: print it); its server is the apiserver Service's DNS name: use `podbridge connect` from outside the host")
	setLogger := bindLogging(fs)
	name, err := parseNamed(fs, args)
	if err != nil {
		return err
	}
	setLogger()
	o.Name, o.Namespace = name, h.namespace
	if o.Namespace == "" {
		return errors.New("--namespace is required: the host namespace of the virtual cluster")
	}
	if *serviceCIDR != "" {
		if o.ServiceCIDR, err = netip.ParsePrefix(*serviceCIDR); err != nil {
			return fmt.Errorf("--service-cidr: %w", err)
		}
	}
	if *dnsIP != "" {
		if o.DNSIP, err = netip.ParseAddr(*dnsIP); err != nil {
			return fmt.Errorf("--dns-ip: %w", err)
		}
	}
	if o.Images, err = parseImages(images); err != nil {
		return err
	}
	for _, file := range patches {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--patch: %w", err)
		}
		o.Patches = append(o.Patches, string(data))
	}
	o.PodbridgeFlags = flags
	if *etcdServers != "" {
		o.Etcd.Servers = strings.Split(*etcdServers, ",")
	}
	if o.Store == vcluster.StoreKine && o.Etcd.ClientSecret == vcluster.DefaultEtcdClientSecret {
		o.Etcd.ClientSecret = ""
	}
	for _, cidr := range etcdEgress {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return fmt.Errorf("--etcd-egress: %w", err)
		}
		o.Etcd.Egress = append(o.Etcd.Egress, p)
	}
	cfg, err := h.config()
	if err != nil {
		return err
	}
	res, err := vcluster.Create(ctx, cfg, o, os.Stderr)
	if err != nil {
		return err
	}
	return writeKubeconfig(*out, res.Kubeconfig)
}

// parseImages parses --image NAME=REFERENCE values.
func parseImages(values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	images := map[string]string{}
	for _, v := range values {
		name, ref, ok := strings.Cut(v, "=")
		if !ok || name == "" || ref == "" {
			return nil, fmt.Errorf("--image %q: want NAME=REFERENCE", v)
		}
		images[name] = ref
	}
	return images, nil
}

func writeKubeconfig(path string, data []byte) error {
	if path == "" {
		_, err := os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

func runConnect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge connect NAME", flag.ContinueOnError)
	var h hostFlags
	h.bind(fs)
	server := fs.String("server", "", "the virtual apiserver's URL as you reach it (its serving certificate names the Service's DNS names and address); without it, a port-forward to the control-plane pod runs until interrupted")
	port := fs.Uint("local-port", 0, "local port of the port-forward (default: a free one)")
	out := fs.String("kubeconfig-out", "", "write the kubeconfig there (default: print it)")
	setLogger := bindLogging(fs)
	name, err := parseNamed(fs, args)
	if err != nil {
		return err
	}
	setLogger()
	if h.namespace == "" {
		return errors.New("--namespace is required: the host namespace of the virtual cluster")
	}
	if *port > 65535 {
		return fmt.Errorf("--local-port %d: not a port", *port)
	}
	c, cfg, err := h.client()
	if err != nil {
		return err
	}
	if *server != "" {
		data, err := vcluster.ConnectKubeconfig(ctx, c, name, h.namespace, *server)
		if err != nil {
			return err
		}
		return writeKubeconfig(*out, data)
	}
	fwd, err := vcluster.Forward(ctx, cfg, c, name, h.namespace, uint16(*port))
	if err != nil {
		return err
	}
	data, err := vcluster.ConnectKubeconfig(ctx, c, name, h.namespace, fwd.Server())
	if err == nil {
		err = writeKubeconfig(*out, data)
	}
	if err != nil {
		return errors.Join(err, fwd.Close())
	}
	fmt.Fprintf(os.Stderr, "forwarding %s to virtual cluster %s; Ctrl-C stops\n", fwd.Server(), name)
	select {
	case <-ctx.Done():
		return fwd.Close()
	case err := <-fwd.Done():
		return fmt.Errorf("the port-forward ended: %w", err)
	}
}

func runList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge list", flag.ContinueOnError)
	var h hostFlags
	h.bind(fs)
	setLogger := bindLogging(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	setLogger()
	c, _, err := h.client()
	if err != nil {
		return err
	}
	clusters, err := vcluster.List(ctx, c, h.namespace)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	lines := []string{"NAME\tNAMESPACE\tREADY\tAGE"}
	for _, cl := range clusters {
		lines = append(lines, fmt.Sprintf("%s\t%s\t%t\t%s", cl.Name, cl.Namespace, cl.Ready, time.Since(cl.Created).Round(time.Second)))
	}
	if _, err := fmt.Fprintln(w, strings.Join(lines, "\n")); err != nil {
		return err
	}
	return w.Flush()
}

func runDelete(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge delete NAME", flag.ContinueOnError)
	var h hostFlags
	h.bind(fs)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait until nothing of the virtual cluster is left")
	keepNamespace := fs.Bool("keep-namespace", false, "keep the host namespace even when podbridge create made it and nothing else is in it")
	setLogger := bindLogging(fs)
	name, err := parseNamed(fs, args)
	if err != nil {
		return err
	}
	setLogger()
	if h.namespace == "" {
		return errors.New("--namespace is required: the host namespace of the virtual cluster")
	}
	c, cfg, err := h.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := vcluster.Delete(ctx, c, name, h.namespace, os.Stderr); err != nil {
		return err
	}
	if *keepNamespace {
		return nil
	}
	_, err = vcluster.ReleaseNamespace(ctx, cfg, h.namespace, os.Stderr)
	return err
}

// runVClusterInit is the control-plane pod's init container
// (manifests/virtualcluster), run in the pod with its service account.
func runVClusterInit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge vcluster-init", flag.ContinueOnError)
	var o vcluster.InitOptions
	fs.StringVar(&o.Dir, "dir", "/data", "the claim's mount: pki/ and db/ are made there")
	dataOwner := fs.Int("data-owner", -1, "only hand --dir itself to this user and group, and exit (the control-plane pod's first init container, root with CAP_CHOWN)")
	fs.StringVar(&o.VCluster, "vcluster-name", "", "name of the virtual cluster (required)")
	fs.StringVar(&o.Namespace, "host-namespace", "", "host namespace of the virtual cluster (required)")
	fs.StringVar(&o.APIServerService, "apiserver-service", "", "host Service in front of the virtual apiserver (required)")
	fs.StringVar(&o.APIServerIP, "apiserver-service-ip", "", "its ClusterIP (required)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "DNS domain of the virtual cluster")
	fs.StringVar(&o.KubeconfigSecret, "kubeconfig-secret", "", "host Secret receiving the admin kubeconfig (required)")
	fs.StringVar(&o.ClientCASecret, "client-ca-secret", "", "podbridge's self-managed Secret of the webhook client certificate (required)")
	fs.StringVar(&o.KubeletCertSecret, "kubelet-cert-secret", "", "podbridge's self-managed Secret of the kubelet API's serving certificate (required)")
	fs.StringVar(&o.PKISecret, "pki-secret", "", "prefix of the host Secrets (PREFIX-ca, -client-ca, -service-account) holding the CAs and service-account key every replica shares (empty: kept on --dir)")
	fs.StringVar(&o.PKIIssuer, "pki-issuer", vcluster.IssuerSelfManaged, "who makes the --pki-secret Secrets: self-managed (this command, when absent) or cert-manager (also PREFIX-apiserver, the serving certificate; this command only reads them)")
	fs.DurationVar(&o.PKIWait, "pki-wait", vcluster.DefaultPKIWait, "with --pki-issuer=cert-manager: how long to wait for cert-manager's Secrets before failing")
	host := fs.String("host-kubeconfig", "", "kubeconfig of the host cluster (empty: in-cluster configuration)")
	bootstrap := fs.Bool("bootstrap-rbac", false, "only apply podbridge's grants in the virtual cluster (manifests/virtual/base/rbac.yaml) through --apiserver, as an administrator whose certificate it issues in memory from --dir's client CA, and exit (the control-plane pod's rbac init container)")
	apiserver := fs.String("apiserver", vcluster.LocalAPIServer, "the virtual apiserver, for --bootstrap-rbac")
	bootstrapTimeout := fs.Duration("bootstrap-timeout", 2*time.Minute, "how long --bootstrap-rbac tries before it fails")
	keepCopies := fs.Duration("keep-copies", 0, "only keep the apiserver's copies of podbridge's certificates under --dir current from their host Secrets, checking at this interval, until stopped (the control-plane pod's certs container)")
	setLogger := bindLogging(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	setLogger()
	if *dataOwner >= 0 {
		return vcluster.OwnDir(o.Dir, *dataOwner)
	}
	if *bootstrap {
		cfg, err := vcluster.BootstrapConfig(o.Dir, *apiserver, time.Now())
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, *bootstrapTimeout)
		defer cancel()
		return vcluster.Bootstrap(logf.IntoContext(ctx, logf.Log.WithName("vcluster-bootstrap")), cfg)
	}
	required := map[string]string{"--vcluster-name": o.VCluster, "--host-namespace": o.Namespace, "--client-ca-secret": o.ClientCASecret, "--kubelet-cert-secret": o.KubeletCertSecret}
	if *keepCopies == 0 {
		required["--apiserver-service"], required["--apiserver-service-ip"], required["--kubeconfig-secret"] = o.APIServerService, o.APIServerIP, o.KubeconfigSecret
	}
	var missing []string
	for flag, v := range required {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("required: %s", strings.Join(missing, ", "))
	}
	if *keepCopies < 0 {
		return fmt.Errorf("--keep-copies: %s is not an interval", *keepCopies)
	}
	if *keepCopies == 0 {
		if _, err := netip.ParseAddr(o.APIServerIP); err != nil {
			return fmt.Errorf("--apiserver-service-ip: %w", err)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *host)
	if err != nil {
		return fmt.Errorf("--host-kubeconfig: %w", err)
	}
	if o.Host, err = client.New(cfg, client.Options{Scheme: kube.Scheme}); err != nil {
		return err
	}
	if *keepCopies > 0 {
		return vcluster.KeepCopies(logf.IntoContext(ctx, logf.Log.WithName("vcluster-certs")), o, *keepCopies)
	}
	return vcluster.Init(logf.IntoContext(ctx, logf.Log.WithName("vcluster-init")), o)
}
