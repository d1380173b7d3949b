package vcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	psaapi "k8s.io/pod-security-admission/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

// FieldManager is podbridge create's server-side apply field manager.
const FieldManager = "podbridge-create"

// CreateOptions configure `podbridge create`.
type CreateOptions struct {
	Options
	// Timeout bounds the wait for the virtual cluster to answer.
	Timeout time.Duration
	// SkipDNS leaves the tenant's DNS server out (the virtual cluster
	// answers names only once a DNS server runs in it).
	SkipDNS bool
	// DNSImage replaces the DNS server's image.
	DNSImage string
}

// CreateResult says what create made and how long it took.
type CreateResult struct {
	// Kubeconfig is the admin kubeconfig as the host Secret holds it
	// (server: the apiserver Service's DNS name, for pods of the host).
	Kubeconfig []byte
	// Ready is the time from the start of create until the virtual
	// cluster answered through its kubeconfig (a dry-run pod create passed
	// podbridge's webhook); DNSReady until its DNS server was available.
	Ready, DNSReady time.Duration
}

// Create renders the package for o, fills in what the host knows (its
// Service range, its apiserver's endpoints, free addresses), applies it
// with server-side apply, and waits until the virtual cluster answers
// through a port-forward to its control-plane pod. Running it again for
// the same cluster changes nothing but what the package changed.
func Create(ctx context.Context, host *rest.Config, o CreateOptions, log io.Writer) (*CreateResult, error) {
	start := time.Now()
	c, err := client.New(host, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, err
	}
	if err := checkNameFree(ctx, c, o.Name, o.Namespace); err != nil {
		return nil, err
	}
	if !o.ServiceCIDR.IsValid() {
		if o.ServiceCIDR, err = HostServiceCIDR(ctx, c); err != nil {
			return nil, err
		}
	}
	if len(o.HostAPIServer) == 0 {
		if o.HostAPIServer, err = HostAPIServerEndpoints(ctx, c); err != nil {
			return nil, err
		}
	}
	apiserverIP, dnsIP, err := existingValues(ctx, c, o.Name, o.Namespace)
	if err != nil {
		return nil, err
	}
	if !o.DNSIP.IsValid() {
		o.DNSIP = dnsIP
	}
	if !o.DNSIP.IsValid() {
		if o.DNSIP, err = FreeDNSAddress(ctx, c, o.ServiceCIDR); err != nil {
			return nil, err
		}
	}
	// Validate everything but the apiserver's address before writing
	// anything: the host allocates that one.
	probe := o.Options
	probe.APIServerIP = o.ServiceCIDR.Masked().Addr().Next()
	if probe.APIServerIP == probe.DNSIP {
		probe.APIServerIP = probe.APIServerIP.Next()
	}
	probeObjects, err := Render(probe)
	if err != nil {
		return nil, err
	}
	if err := checkNoTakeover(ctx, c, o.Name, o.Namespace, ownedNames(probeObjects)); err != nil {
		return nil, err
	}
	if err := ensureNamespace(ctx, c, o.Namespace, o.Name); err != nil {
		return nil, err
	}
	if !apiserverIP.IsValid() {
		if apiserverIP, err = allocateAPIServerService(ctx, c, probe); err != nil {
			return nil, err
		}
	}
	o.APIServerIP = apiserverIP
	objects, err := Render(o.Options)
	if err != nil {
		return nil, err
	}
	for _, obj := range objects {
		if err := apply(ctx, c, obj); err != nil {
			return nil, err
		}
	}
	say(log, "applied %d objects of virtual cluster %s in host namespace %s; waiting for it to answer\n", len(objects), o.Name, o.Namespace)
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	waitCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	kubeconfig, err := waitForKubeconfig(waitCtx, c, o.Name, o.Namespace)
	if err != nil {
		return nil, err
	}
	res := &CreateResult{Kubeconfig: kubeconfig}
	err = withForward(waitCtx, host, c, o.Name, o.Namespace, func(virtual *rest.Config) error {
		if err := waitForWebhook(waitCtx, virtual); err != nil {
			return err
		}
		res.Ready = time.Since(start)
		say(log, "virtual cluster %s answers after %s\n", o.Name, res.Ready.Round(time.Millisecond))
		if o.SkipDNS {
			return nil
		}
		if err := InstallDNS(waitCtx, virtual, o.DNSImage); err != nil {
			return err
		}
		res.DNSReady = time.Since(start)
		say(log, "its DNS server is available after %s\n", res.DNSReady.Round(time.Millisecond))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// checkNameFree refuses a name another namespace's virtual cluster holds:
// the package's cluster-scoped objects are named after it.
func checkNameFree(ctx context.Context, c client.Reader, name, namespace string) error {
	var list unstructured.UnstructuredList
	list.SetAPIVersion("rbac.authorization.k8s.io/v1")
	list.SetKind("ClusterRoleList")
	if err := c.List(ctx, &list, client.MatchingLabels{LabelPartOf: PartOfValue, LabelInstance: name}); err != nil {
		return fmt.Errorf("looking for virtual clusters named %s: %w", name, err)
	}
	for _, cr := range list.Items {
		if ns := cr.GetLabels()[LabelNamespace]; ns != namespace {
			return fmt.Errorf("NAME %s: a virtual cluster of that name exists in host namespace %s (names are unique across the host: its ClusterRole %s is named after it)", name, ns, cr.GetName())
		}
	}
	return nil
}

// ensureNamespace creates the host namespace when absent, enforcing Pod
// Security baseline (podbridge's default level: the host's own backstop
// behind podbridge's gate), and marks it as made by podbridge create for
// virtual cluster vcluster (AnnotationCreatedFor), which
// ReleaseNamespace reads. A namespace that exists is left as it is.
func ensureNamespace(ctx context.Context, c client.Client, name, vcluster string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		psaapi.EnforceLevelLabel: string(psaapi.LevelBaseline), psaapi.EnforceVersionLabel: psaapi.VersionLatest,
	}, Annotations: map[string]string{AnnotationCreatedFor: vcluster}}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating host namespace %s: %w", name, err)
	}
	return nil
}

// allocateAPIServerService applies the apiserver Service without an
// address and returns the one the host allocated.
func allocateAPIServerService(ctx context.Context, c client.Client, probe Options) (netip.Addr, error) {
	objects, err := Render(probe)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, obj := range objects {
		if obj.GetKind() != "Service" {
			continue
		}
		unstructured.RemoveNestedField(obj.Object, "spec", "clusterIP")
		if err := apply(ctx, c, obj); err != nil {
			return netip.Addr{}, err
		}
		var svc corev1.Service
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &svc); err != nil {
			return netip.Addr{}, err
		}
		addr, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("host Service %s has no ClusterIP (%q): the virtual default/kubernetes Service needs one", svc.Name, svc.Spec.ClusterIP)
		}
		return addr, nil
	}
	return netip.Addr{}, errors.New("the package renders no Service")
}

func apply(ctx context.Context, c client.Client, obj *unstructured.Unstructured) error {
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// waitForKubeconfig waits for the init container's host Secret.
func waitForKubeconfig(ctx context.Context, c client.Reader, name, namespace string) ([]byte, error) {
	var secret corev1.Secret
	key := types.NamespacedName{Namespace: namespace, Name: KubeconfigSecret(name)}
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		lastErr = c.Get(ctx, key, &secret)
		return lastErr == nil && len(secret.Data[KubeconfigKey]) > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for host Secret %s (the control-plane pod's init container writes it; %s): %w", key, podState(context.Background(), c, name, namespace), errors.Join(err, lastErr))
	}
	return secret.Data[KubeconfigKey], nil
}

// podState describes the control-plane pod, for errors.
func podState(ctx context.Context, c client.Reader, name, namespace string) string {
	var pod corev1.Pod
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ControlPlane(name) + "-0"}, &pod); err != nil {
		return "control-plane pod: " + err.Error()
	}
	s := fmt.Sprintf("control-plane pod %s: %s", pod.Name, pod.Status.Phase)
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			s += fmt.Sprintf("; %s waiting (%s: %s)", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			s += fmt.Sprintf("; %s terminated (%s, exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		case !cs.Ready:
			s += fmt.Sprintf("; %s not ready (restarts %d)", cs.Name, cs.RestartCount)
		}
	}
	return s
}

// waitForWebhook waits until a dry-run pod create in the virtual cluster
// passes podbridge's webhook: the apiserver, its store, the webhook and
// the host all answer.
func waitForWebhook(ctx context.Context, virtual *rest.Config) error {
	c, err := client.New(virtual, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	var lastErr error
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "podbridge-create-probe", Namespace: corev1.NamespaceDefault},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
		}
		if lastErr = c.Create(ctx, pod, client.DryRunAll); lastErr != nil {
			return false, nil //nolint:nilerr // not answering yet; the last error is reported at the end.
		}
		if pod.Annotations[translate.AnnotationSyncID] == "" {
			lastErr = errors.New("a pod was admitted without podbridge's webhook (not registered yet)")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the virtual cluster to admit a pod through podbridge: %w", errors.Join(err, lastErr))
	}
	return nil
}

// withForward forwards a local port to the control-plane pod's apiserver
// port through the host apiserver, runs fn with a client configuration of
// the admin kubeconfig pointed at it, and stops the forward.
func withForward(ctx context.Context, host *rest.Config, c client.Reader, name, namespace string, fn func(*rest.Config) error) error {
	kubeconfig, err := waitForKubeconfig(ctx, c, name, namespace)
	if err != nil {
		return err
	}
	fwd, err := Forward(ctx, host, c, name, namespace, 0)
	if err != nil {
		return err
	}
	virtual, err := restConfig(kubeconfig, fwd.Server())
	if err == nil {
		err = fn(virtual)
	}
	return errors.Join(err, fwd.Close())
}

func restConfig(kubeconfig []byte, server string) (*rest.Config, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading the virtual cluster's kubeconfig: %w", err)
	}
	cfg.Host = server
	return cfg, nil
}

// Forwarder is a running port-forward to a control-plane pod's apiserver.
type Forwarder struct {
	port   uint16
	stop   chan struct{}
	done   chan error
	cancel context.CancelFunc
}

// Server is the forwarded apiserver's URL (the serving certificate names
// 127.0.0.1).
func (f *Forwarder) Server() string { return "https://127.0.0.1:" + strconv.Itoa(int(f.port)) }

// Done yields the forward's end.
func (f *Forwarder) Done() <-chan error { return f.done }

// Close stops the forward and waits until it has; it returns the
// forward's error, if it ended with one.
func (f *Forwarder) Close() error {
	close(f.stop)
	err := <-f.done
	f.cancel()
	return err
}

// Forward forwards localPort (0: a free one) on 127.0.0.1 to port 6443 of
// a control-plane pod of the virtual cluster whose apiserver is ready.
func Forward(ctx context.Context, host *rest.Config, c client.Reader, name, namespace string, localPort uint16) (*Forwarder, error) {
	// Any replica whose apiserver is ready, the lowest ordinal first (with
	// kine there is one).
	var podName string
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var err error
		podName, err = ReadyControlPlanePod(ctx, c, name, namespace)
		return podName != "", err
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the virtual apiserver to be ready (%s): %w", podState(context.Background(), c, name, namespace), err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(host)
	if err != nil {
		return nil, err
	}
	set, err := kubernetes.NewForConfig(host)
	if err != nil {
		return nil, err
	}
	u := set.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(podName).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	ctx, cancel := context.WithCancel(ctx)
	f := &Forwarder{stop: make(chan struct{}), done: make(chan error, 1), cancel: cancel}
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{strconv.Itoa(int(localPort)) + ":6443"}, f.stop, ready, io.Discard, io.Discard)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("forwarding to %s/%s: %w", namespace, podName, err)
	}
	go func() { f.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-f.done:
		cancel()
		return nil, fmt.Errorf("forwarding to %s/%s: %w", namespace, podName, err)
	case <-ctx.Done():
		return nil, errors.Join(ctx.Err(), f.Close())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		return nil, fmt.Errorf("forwarding to %s/%s: no local port (%w)", namespace, podName, errors.Join(err, f.Close()))
	}
	f.port = ports[0].Local
	return f, nil
}

// ConnectKubeconfig is the virtual cluster's admin kubeconfig pointed at
// server (empty: as stored, the apiserver Service's DNS name).
func ConnectKubeconfig(ctx context.Context, c client.Reader, name, namespace, server string) ([]byte, error) {
	var secret corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: KubeconfigSecret(name)}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("virtual cluster %s in host namespace %s: no Secret %s (not created, or its control plane has not started yet)", name, namespace, KubeconfigSecret(name))
		}
		return nil, err
	}
	data := secret.Data[KubeconfigKey]
	if server == "" {
		return data, nil
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", KubeconfigSecret(name), err)
	}
	for _, cluster := range cfg.Clusters {
		cluster.Server = server
	}
	return clientcmd.Write(*cfg)
}

// Cluster is one virtual cluster on the host, as list shows it.
type Cluster struct {
	Name, Namespace string
	// Ready says whether the control-plane pod is ready.
	Ready   bool
	Created time.Time
}

// List lists the virtual clusters in namespace (empty: all), by their
// control-plane StatefulSets.
func List(ctx context.Context, c client.Reader, namespace string) ([]Cluster, error) {
	var sets appsv1.StatefulSetList
	opts := []client.ListOption{client.MatchingLabels{LabelPartOf: PartOfValue}}
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := c.List(ctx, &sets, opts...); err != nil {
		return nil, fmt.Errorf("listing virtual clusters: %w", err)
	}
	var out []Cluster
	for _, s := range sets.Items {
		out = append(out, Cluster{
			Name: s.Labels[LabelInstance], Namespace: s.Namespace,
			Ready: s.Status.ReadyReplicas > 0, Created: s.CreationTimestamp.Time,
		})
	}
	return out, nil
}

// say writes a line of progress; a progress line that cannot be written
// changes nothing.
func say(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}
