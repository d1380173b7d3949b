package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/kubeletproxy"
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
	fs.DurationVar(&o.TokenRefreshAfter, "token-refresh-after", 0, "refresh a projected service-account token this long after issuing it when that is sooner than 80% of its lifetime (0: at 80%; at least 1s); for watching refreshes arrive in tests")
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
	kubeletAPI, err := kubelet.options(fs)
	if err != nil {
		return err
	}
	if kubeletAPI != nil {
		o.Kubelet = kubeletAPI.Advertise
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
	// The reflector and the virtual nodes' kubelet API, side by side in
	// one manager: the nodes the reflector makes advertise the API.
	mgr, err := reflector.NewManager(o)
	if err != nil {
		return err
	}
	if kubeletAPI != nil {
		if err := kubeletproxy.AddToManager(mgr, *kubeletAPI, o.Virtual, o.Translate, reflector.FieldManager); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
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
