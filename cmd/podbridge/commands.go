package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/controlplane"
	"github.com/podbridge/podbridge/internal/devenv"
	"github.com/podbridge/podbridge/internal/realnode"
	"github.com/podbridge/podbridge/kubeletproxy"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

func runWebhook(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge webhook", flag.ContinueOnError)
	var cf clusterFlags
	cf.bind(fs)
	o := webhook.Options{}
	fs.StringVar(&o.PodSecurityLevel, "pod-security-level", "baseline", "Pod Security Standards level virtual pods must meet: baseline or restricted (privileged is refused: the host would run it)")
	fs.DurationVar(&o.HostTimeout, "host-timeout", 7*time.Second, "bound on each admission's host calls; keep it under --webhook-timeout")
	fs.StringVar(&o.BindAddress, "bind-address", "", "address the webhook server listens on")
	fs.IntVar(&o.Port, "port", 9443, "port the webhook server listens on")
	fs.StringVar(&o.Certs.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "folder with tls.crt and tls.key, reloaded when they change")
	mode := fs.String("cert-mode", string(certs.ModeCertManager), "where the serving certificate comes from: cert-manager (a Certificate's Secret mounted at --cert-dir), self-managed (podbridge issues and renews it in --cert-secret) or files (tls.crt, tls.key and ca.crt in --cert-dir)")
	fs.StringVar(&o.Certs.SecretName, "cert-secret", "podbridge-webhook-tls", "host Secret holding the serving certificate")
	fs.StringVar(&o.Certs.CertificateName, "certificate-name", "podbridge-webhook", "cert-manager Certificate whose readiness is reported (cert-manager mode)")
	hosts := fs.String("cert-hosts", "", "DNS names and IPs of the self-managed serving certificate, comma-separated (the webhook Service's name, e.g. podbridge-webhook.NAMESPACE.svc)")
	fs.DurationVar(&o.Certs.Validity, "cert-validity", 365*24*time.Hour, "validity of self-managed serving and client certificates; renewed when a third is left")
	fs.StringVar(&o.Certs.ClientSecretName, "client-ca-secret", certs.DefaultClientSecretName, "host Secret of the virtual apiserver's client certificate: self-managed mode issues it there (tls.crt, tls.key, ca.crt), cert-manager mode trusts its ca.crt")
	fs.StringVar(&o.Certs.ClientCAFile, "client-ca-file", "", "CA bundle the virtual apiserver's client certificate must chain to (files mode, required there), re-read when it changes")
	fs.StringVar(&o.Certs.ClientCommonName, "client-common-name", "", "common name the virtual apiserver's client certificate must carry (and is issued for, in self-managed mode); default "+certs.ClientCommonNamePrefix+".<vcluster-name>.<host-namespace>, one per virtual cluster")
	fs.StringVar(&o.Registration.Name, "webhook-configuration", "podbridge", "name of the MutatingWebhookConfiguration in the virtual cluster")
	fs.StringVar(&o.Registration.URL, "register-url", "", "URL at which the virtual apiserver reaches this server (scheme, host, port, any path prefix; each webhook's path follows it, and a trailing "+translate.WebhookPath+" is ignored); when set, podbridge applies the whole MutatingWebhookConfiguration at start-up and keeps it, else it only keeps the CA bundle of an existing one current")
	timeout := fs.Duration("webhook-timeout", 10*time.Second, "the configuration's timeoutSeconds")
	setLogger := bindLogging(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	setLogger()
	o.Registration.TimeoutSeconds = int32(*timeout / time.Second)
	o.Certs.Mode = certs.Mode(*mode)
	if err := checkClientFlags(fs, o.Certs); err != nil {
		return err
	}
	if *hosts != "" {
		o.Certs.Hosts = strings.Split(*hosts, ",")
	}
	var err error
	if o.Host, o.Virtual, err = cf.configs("webhook"); err != nil {
		return err
	}
	o.Translate, o.MetricsBindAddress, o.HealthProbeBindAddress, o.PprofBindAddress = cf.translate, cf.metricsAddr, cf.healthAddr, cf.pprofAddr
	o.MetricsCertDir = cf.metricsCertDir
	o.Limits = cf.limits
	return webhook.Run(ctx, o)
}

func runReflector(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge reflector", flag.ContinueOnError)
	var cf clusterFlags
	cf.bind(fs)
	o := reflector.Options{}
	fs.StringVar(&o.PodSecurityLevel, "pod-security-level", "baseline", "Pod Security Standards level of the host-side gate every host pod write passes; set it as the webhook's (privileged is refused)")
	fs.DurationVar(&o.VirtualRequestTimeout, "virtual-request-timeout", translate.DefaultVirtualRequestTimeout, "the virtual apiserver's --request-timeout: no create stores a pod later, so an unclaimed host pod older than it (plus 10s) is a refused create's")
	fs.DurationVar(&o.OrphanGracePeriod, "orphan-grace-period", 0, "age after which a host pod with no virtual pod is deleted (default: --virtual-request-timeout plus 10s); a shorter one may fail pods whose create is still being admitted")
	fs.IntVar(&o.MaxConcurrentReconciles, "concurrency", 32, "reconciles at once in each controller (pod pairs, copies, tokens)")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", reflector.DefaultResyncPeriod, "how often every pod pair and virtual node is reconciled without an event (a pass also runs at start-up)")
	fs.DurationVar(&o.NodeGracePeriod, "node-grace-period", reflector.DefaultNodeGracePeriod, "how long the virtual node of a host node tenants may not use stays after the virtual cluster's last host pod on it goes")
	fs.BoolVar(&o.LeaderElection, "leader-elect", true, "elect a leader among replicas (a Lease in the host namespace)")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", "", "name of the leader election Lease (default podbridge-reflector-<vcluster-name>)")
	copyEvents := fs.Bool("copy-host-events", true, "show on each virtual pod the events the host records about its host pod (needs list and watch of host events)")
	kubelet := bindKubeletFlags(fs)
	setLogger := bindLogging(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	setLogger()
	var err error
	if o.Kubelet, err = kubelet.options(fs); err != nil {
		return err
	}
	o.DisableEvents = !*copyEvents
	if o.Host, o.Virtual, err = cf.configs("reflector"); err != nil {
		return err
	}
	o.Translate, o.MetricsBindAddress, o.HealthProbeBindAddress, o.PprofBindAddress = cf.translate, cf.metricsAddr, cf.healthAddr, cf.pprofAddr
	o.MetricsCertDir = cf.metricsCertDir
	o.Limits = cf.limits
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = "podbridge-reflector-" + o.Translate.VCluster
	}
	return reflector.Run(ctx, o)
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge dev", flag.ContinueOnError)
	o := devenv.Defaults()
	var assetsDir string
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "folder for kubeconfigs, certificates and logs; removed on exit, or by the next start after a run that was killed")
	fs.StringVar(&assetsDir, "assets-dir", "", "folder with the control-plane binaries (default: KUBEBUILDER_ASSETS, then bin/k8s/"+controlplane.KubernetesVersion+")")
	fs.IntVar(&o.Nodes, "nodes", o.Nodes, "kwok nodes in the host cluster")
	realNode := fs.Bool("real-node", false, "also run a real kubelet node (root; `make node-bins`; installs containerd, runc, the CNI plugins and iptables with apt when absent): pods with nodeSelector "+realnode.LabelRealNode+"=true and its toleration run in real containers")
	nodeImages := fs.String("node-images", "", "image tarball of the real node (default: bin/node/images.tar of the checkout)")
	extraImages := fs.String("node-extra-images", "", "more image tarballs (comma-separated) the real node imports, for pods that name their images (the conformance harness's)")
	fs.BoolVar(&o.Translate.AllowNodePinning, "allow-node-pinning", false, "let tenants name nodes in node affinity (matchFields on metadata.name), as the webhook's and the reflector's flag of that name does")
	fs.BoolVar(&o.TenantsOnRealNode, "tenants-on-real-node", false, "with --real-node, run every tenant pod on the real node: the platform's enforced node selector names it and its enforced tolerations tolerate its taint")
	fs.Func(policy.FlagAllowedServiceTypes, "Service types tenants may create besides ClusterIP and ExternalName, comma-separated (NodePort, LoadBalancer), as the webhook's and the reflector's flag of that name does; a real node's NodePorts listen on its bridge address only", func(v string) error {
		o.Translate.ServiceTypes = nil
		for _, t := range list(v) {
			o.Translate.ServiceTypes = append(o.Translate.ServiceTypes, corev1.ServiceType(t))
		}
		return nil
	})
	runtimeHandlers := fs.String("runtime-handlers", "", "with --real-node, runtime handlers (comma-separated) the real node offers, each runc under that name; the host gets a RuntimeClass of each name and tenants may use it (the conformance suite's RuntimeClass specs name test-handler)")
	setLogger := bindLogging(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if !*realNode && (o.TenantsOnRealNode || *extraImages != "" || *runtimeHandlers != "") {
		return errors.New("--tenants-on-real-node, --node-extra-images and --runtime-handlers need --real-node")
	}
	if *runtimeHandlers != "" {
		o.RuntimeHandlers = strings.Split(*runtimeHandlers, ",")
	}
	setLogger()
	log := ctrl.Log.WithName("dev")
	var err error
	if assetsDir != "" {
		o.Assets = controlplane.NewAssets(assetsDir)
	} else if o.Assets, err = controlplane.DefaultAssets(); err != nil {
		return err
	}
	if o.StateDir, err = filepath.Abs(o.StateDir); err != nil {
		return err
	}
	if *realNode {
		if o.RealNode, err = realNodeOptions(o, *nodeImages); err != nil {
			return err
		}
		if *extraImages != "" {
			o.RealNode.ExtraImages = append(o.RealNode.ExtraImages, strings.Split(*extraImages, ",")...)
		}
	}
	removeOnExit := topmostMissing(o.StateDir)
	release, err := devenv.ClaimStateDir(o.StateDir, log)
	if err != nil {
		return err
	}
	defer os.RemoveAll(removeOnExit)
	defer release()

	started := time.Now()
	env, err := devenv.Start(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		log.Info("Stopping podbridge and both control planes")
		if err := env.Stop(); err != nil {
			log.Error(err, "Stopped with errors")
		}
	}()
	if err := os.WriteFile(filepath.Join(o.StateDir, "ready"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	log.Info("Ready", "after", time.Since(started).Round(100*time.Millisecond))
	fmt.Printf(`
podbridge dev is ready: virtual cluster %q, host namespace %q.
In another terminal:

  export VIRTUAL=%[3]s/virtual.kubeconfig HOST=%[3]s/host.kubeconfig
  kubectl --kubeconfig $VIRTUAL create deployment web --image=nginx --replicas=3
  kubectl --kubeconfig $VIRTUAL get deployment,pods -o wide
  kubectl --kubeconfig $HOST get pods -A -o wide
  kubectl --kubeconfig $VIRTUAL logs deploy/web
  kubectl --kubeconfig $VIRTUAL exec deploy/web -- pwd   # refused: kwok runs no command on this machine

Logs are in %[3]s/logs. Press Ctrl-C to stop everything.
`, o.Translate.VCluster, o.Translate.HostNamespace, o.StateDir)
	if env.RealNode != nil {
		fmt.Printf(`
Real node %[1]s is Ready (node IP %[2]s). A pod runs there when it asks:

  kubectl --kubeconfig $VIRTUAL run t --image=%[3]s \
    --overrides='{"spec":{"nodeSelector":{"%[4]s":"true"},"tolerations":[{"key":"%[5]s","operator":"Exists"}]}}' -- env pause
  kubectl --kubeconfig $VIRTUAL logs t

`, env.RealNode.Name(), env.RealNode.IP, realnode.WorkloadImage, realnode.LabelRealNode, realnode.TaintRealNode)
	}

	select {
	case <-ctx.Done():
		return nil
	case err := <-env.Err():
		return fmt.Errorf("podbridge stopped: %w", err)
	}
}

// realNodeOptions finds the kubelet, kube-proxy and the image tarballs
// `make node-bins` built (CoreDNS's, podbridge.local/coredns, when there).
func realNodeOptions(o devenv.Options, images string) (*realnode.Options, error) {
	kubelet, err := o.Assets.Path("kubelet")
	if err != nil {
		return nil, fmt.Errorf("%w (make node-bins)", err)
	}
	kubeProxy, err := o.Assets.Path("kube-proxy")
	if err != nil {
		return nil, fmt.Errorf("%w (make node-bins)", err)
	}
	if images == "" {
		root, err := controlplane.ModuleRoot()
		if err != nil {
			return nil, err
		}
		images = filepath.Join(root, "bin", "node", "images.tar")
	}
	var extra []string
	if coredns := filepath.Join(filepath.Dir(images), "coredns.tar"); fileExists(coredns) {
		extra = append(extra, coredns)
	}
	return &realnode.Options{
		StateDir: filepath.Join(o.StateDir, "realnode"), Kubelet: kubelet, KubeProxy: kubeProxy, Images: images, ExtraImages: extra,
		Log: ctrl.Log.WithName("realnode"),
	}, nil
}

func fileExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}

// topmostMissing returns the highest folder of path that does not exist yet:
// what `podbridge dev` creates, and so removes on exit.
func topmostMissing(path string) string {
	for {
		parent := filepath.Dir(path)
		if _, err := os.Stat(parent); err == nil || parent == path {
			return path
		}
		path = parent
	}
}

// checkClientFlags checks the flags that say which callers the webhook
// accepts, naming the flag at fault.
func checkClientFlags(fs *flag.FlagSet, c certs.Options) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	switch {
	case c.Mode == certs.ModeFiles && c.ClientCAFile == "":
		errs = append(errs, errors.New("--cert-mode=files needs --client-ca-file: the webhook accepts only callers with a client certificate of a CA it trusts"))
	case c.Mode != certs.ModeFiles && c.ClientCAFile != "":
		errs = append(errs, fmt.Errorf("--client-ca-file is for --cert-mode=files; --cert-mode=%s trusts the ca.crt of --client-ca-secret", c.Mode))
	}
	if c.Mode == certs.ModeFiles && set["client-ca-secret"] {
		errs = append(errs, errors.New("--client-ca-secret is not used with --cert-mode=files: set --client-ca-file"))
	}
	if c.Mode != certs.ModeFiles && c.ClientSecretName == "" {
		errs = append(errs, errors.New("--client-ca-secret must not be empty"))
	}
	if set["client-common-name"] && c.ClientCommonName == "" {
		errs = append(errs, errors.New("--client-common-name must not be empty: any certificate the client CA signed would be accepted"))
	}
	return errors.Join(errs...)
}

// kubeletFlags configure the reflector's kubelet API for virtual nodes.
type kubeletFlags struct {
	o         kubeletproxy.Options
	advertise string
	port      int
	mode      string
	hosts     string
}

func bindKubeletFlags(fs *flag.FlagSet) *kubeletFlags {
	k := &kubeletFlags{}
	fs.StringVar(&k.advertise, "kubelet-advertise-address", "", "address (IP or DNS name) at which the virtual apiserver reaches this reflector's kubelet API, which virtual nodes advertise; empty serves no kubelet API (no logs, exec, attach or port-forward)")
	fs.IntVar(&k.port, "kubelet-advertise-port", 0, "port virtual nodes advertise for the kubelet API (default --kubelet-port)")
	fs.StringVar(&k.o.BindAddress, "kubelet-bind-address", "", "address the kubelet API listens on")
	fs.IntVar(&k.o.Port, "kubelet-port", kubeletproxy.DefaultPort, "port the kubelet API listens on (not 10250, which a kubelet on the same machine holds)")
	fs.IntVar(&k.o.MaxStreams, "kubelet-max-streams", kubeletproxy.DefaultMaxStreams, "log reads and exec, attach and port-forward streams the kubelet API carries at once; more are answered 429 (each holds a host apiserver connection)")
	fs.StringVar(&k.mode, "kubelet-cert-mode", string(certs.ModeCertManager), "where the kubelet API's serving certificate comes from: cert-manager, self-managed or files (as the webhook's --cert-mode)")
	fs.StringVar(&k.o.Certs.CertDir, "kubelet-cert-dir", "/tmp/podbridge-kubelet/serving-certs", "folder with the kubelet API's tls.crt and tls.key, reloaded when they change")
	fs.StringVar(&k.o.Certs.SecretName, "kubelet-cert-secret", "podbridge-kubelet-tls", "host Secret holding the kubelet API's serving certificate")
	fs.StringVar(&k.o.Certs.CertificateName, "kubelet-certificate-name", "podbridge-kubelet", "cert-manager Certificate of the kubelet API whose readiness is reported (cert-manager mode)")
	fs.StringVar(&k.hosts, "kubelet-cert-hosts", "", "DNS names and IPs of the self-managed serving certificate, comma-separated (default --kubelet-advertise-address)")
	fs.DurationVar(&k.o.Certs.Validity, "kubelet-cert-validity", 365*24*time.Hour, "validity of the self-managed serving certificate; renewed when a third is left")
	fs.StringVar(&k.o.Certs.ClientSecretName, "client-ca-secret", certs.DefaultClientSecretName, "host Secret of the virtual apiserver's client certificate (the webhook's): self-managed mode issues it there, cert-manager mode trusts its ca.crt")
	fs.StringVar(&k.o.Certs.ClientCAFile, "client-ca-file", "", "CA bundle the virtual apiserver's kubelet client certificate must chain to (files mode)")
	fs.StringVar(&k.o.Certs.ClientCommonName, "client-common-name", "", "common name the virtual apiserver's kubelet client certificate must carry; default "+certs.ClientCommonNamePrefix+".<vcluster-name>.<host-namespace>, one per virtual cluster")
	return k
}

// options returns the kubelet API's options, or nil when none is served.
func (k *kubeletFlags) options(fs *flag.FlagSet) (*kubeletproxy.Options, error) {
	if k.advertise == "" {
		return nil, nil
	}
	o := k.o
	o.Certs.Mode = certs.Mode(k.mode)
	if err := checkClientFlags(fs, o.Certs); err != nil {
		return nil, err
	}
	port := k.port
	if port == 0 {
		port = o.Port
	}
	o.Advertise = translate.KubeletEndpoint{Address: k.advertise, Port: int32(port)} //nolint:gosec // checked by Options.Validate
	o.Certs.Hosts = []string{k.advertise}
	if k.hosts != "" {
		o.Certs.Hosts = strings.Split(k.hosts, ",")
	}
	if err := o.Validate(field.NewPath("kubelet")).ToAggregate(); err != nil {
		return nil, err
	}
	return &o, nil
}
