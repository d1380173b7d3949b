package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/testbed/child"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/vcluster"
)

// The control-plane pod of the etcd and cert-manager variants, run as the
// kubelet would run it but as processes of this machine: the rendered
// StatefulSet's volumes made into folders (ConfigMaps from the rendered
// objects, Secrets read from the host apiserver), its init container
// (the real podbridge binary) and kube-apiserver started with the rendered
// arguments, $(VAR)s expanded from the rendered env and each mount path
// replaced by its folder. An argument naming a file its container does not
// mount, or an env the pod does not define, fails here. What it does not
// run: the webhook, the reflector and kube-controller-manager (the real
// node suite runs those), and cert-manager, whose Secrets the cert-manager
// test writes in cert-manager's format from the rendered Certificates.

// testPKI makes ECDSA certificates as a CA would.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCert(t *testing.T, tmpl *x509.Certificate, parent *testPKI) (*testPKI, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = sn
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
}

// startTLSEtcd starts a real etcd that serves its clients over TLS and
// requires a client certificate: the platform's etcd. It returns its URL
// and the client's ca.crt, tls.crt and tls.key.
func startTLSEtcd(ctx context.Context, t *testing.T) (string, map[string][]byte) {
	t.Helper()
	path, err := env.Options.Assets.Path("etcd")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, _ := newTestCert(t, caTemplate("platform-etcd-ca"), nil)
	server, serverKey := newTestCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "etcd"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca)
	clientCert, clientKey := newTestCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "virtual-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca)
	for name, data := range map[string][]byte{"ca.crt": ca.pem, "server.crt": server.pem, "server.key": serverKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = controlplane.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	clientURL, peerURL := fmt.Sprintf("https://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	p, err := child.Start(child.Command{Name: "etcd", Path: path, LogFile: filepath.Join(dir, "etcd.log"), Args: []string{
		"--name=default", "--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL, "--initial-cluster=default=" + peerURL,
		fmt.Sprintf("--listen-metrics-urls=http://127.0.0.1:%d", ports[2]),
		"--cert-file=" + filepath.Join(dir, "server.crt"), "--key-file=" + filepath.Join(dir, "server.key"),
		"--trusted-ca-file=" + filepath.Join(dir, "ca.crt"), "--client-cert-auth",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	if err := p.WaitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", ports[2])); err != nil {
		t.Fatal(err, child.LogEnd(filepath.Join(dir, "etcd.log")))
	}
	return clientURL, map[string][]byte{"ca.crt": ca.pem, "tls.crt": clientCert.pem, "tls.key": clientKey}
}

// applyPackage applies the rendered objects.
func applyPackage(ctx context.Context, t *testing.T, objects []*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objects {
		if err := hostClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(vcluster.FieldManager), client.ForceOwnership); err != nil {
			t.Fatalf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// controlPlaneKubeconfig is a host kubeconfig with a token of the
// package's service account: init runs with the package's RBAC only.
func controlPlaneKubeconfig(ctx context.Context, t *testing.T, namespace, account string) string {
	t.Helper()
	set, err := kubernetes.NewForConfig(env.Host.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := set.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, account, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["host"] = &clientcmdapi.Cluster{Server: env.Host.Config.Host, CertificateAuthorityData: env.Host.Config.CAData}
	cfg.AuthInfos["host"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["host"] = &clientcmdapi.Context{Cluster: "host", AuthInfo: "host"}
	cfg.CurrentContext = "host"
	path := filepath.Join(t.TempDir(), "host.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// haPod is the rendered control-plane pod.
type haPod struct {
	namespace  string
	sts        *appsv1.StatefulSet
	configMaps map[string]*corev1.ConfigMap
}

func podOf(t *testing.T, objects []*unstructured.Unstructured, namespace string) *haPod {
	t.Helper()
	p := &haPod{namespace: namespace, configMaps: map[string]*corev1.ConfigMap{}}
	for _, u := range objects {
		switch u.GetKind() {
		case "StatefulSet":
			p.sts = &appsv1.StatefulSet{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, p.sts); err != nil {
				t.Fatal(err)
			}
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, cm); err != nil {
				t.Fatal(err)
			}
			p.configMaps[cm.Name] = cm
		}
	}
	if p.sts == nil {
		t.Fatal("no StatefulSet rendered")
	}
	return p
}

func (p *haPod) container(t *testing.T, name string) corev1.Container {
	t.Helper()
	for _, c := range append(slices.Clone(p.sts.Spec.Template.Spec.InitContainers), p.sts.Spec.Template.Spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// replica is one replica's folders: volume name to folder.
type replica struct {
	name, podIP string
	volumes     map[string]string
}

// newReplica makes the pod's volumes as folders, as the kubelet would.
// Its address is the machine's own, the one a loopback-bound apiserver
// advertises unasked: kube-apiserver refuses to advertise loopback, and
// an address off the machine is no replica's. Replicas share it; only the
// apiserver's own Endpoints name it.
func (p *haPod) newReplica(ctx context.Context, t *testing.T, name string) *replica {
	t.Helper()
	ip, err := utilnet.ChooseHostInterface()
	if err != nil {
		t.Fatalf("the machine's address, for the replica's advertised one: %v", err)
	}
	r := &replica{name: name, podIP: ip.String(), volumes: map[string]string{}}
	root := t.TempDir()
	volumes := slices.Clone(p.sts.Spec.Template.Spec.Volumes)
	for _, claim := range p.sts.Spec.VolumeClaimTemplates {
		volumes = append(volumes, corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	for _, v := range volumes {
		dir := filepath.Join(root, v.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		r.volumes[v.Name] = dir
		files := map[string][]byte{}
		switch {
		case v.EmptyDir != nil:
		case v.ConfigMap != nil:
			cm := p.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
			}
			for k, data := range cm.Data {
				files[k] = []byte(data)
			}
		case v.Secret != nil:
			var s corev1.Secret
			if err := hostClient.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: v.Secret.SecretName}, &s); err != nil {
				t.Fatalf("volume %s: %v", v.Name, err)
			}
			files = s.Data
		default:
			t.Fatalf("volume %s: a kind this test does not make", v.Name)
		}
		for k, data := range files {
			if err := os.WriteFile(filepath.Join(dir, k), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return r
}

// command is container c's arguments as this replica runs them: $(VAR)s
// from the rendered env, mount paths replaced by the volumes' folders (in
// files of ConfigMap volumes too).
func (p *haPod) command(t *testing.T, r *replica, c corev1.Container) []string {
	t.Helper()
	vars := map[string]string{}
	for _, e := range c.Env {
		switch ref := e.ValueFrom; {
		case ref == nil:
			vars[e.Name] = e.Value
		case ref.ConfigMapKeyRef != nil:
			cm := p.configMaps[ref.ConfigMapKeyRef.Name]
			if cm == nil {
				t.Fatalf("container %s: env %s: ConfigMap %s is not rendered", c.Name, e.Name, ref.ConfigMapKeyRef.Name)
			}
			v, ok := cm.Data[ref.ConfigMapKeyRef.Key]
			if !ok {
				t.Fatalf("container %s: env %s: ConfigMap %s has no key %s", c.Name, e.Name, cm.Name, ref.ConfigMapKeyRef.Key)
			}
			vars[e.Name] = v
		case ref.FieldRef != nil:
			switch path := ref.FieldRef.FieldPath; {
			case path == "metadata.namespace":
				vars[e.Name] = p.namespace
			case path == "status.podIP":
				vars[e.Name] = r.podIP
			case strings.HasPrefix(path, "metadata.annotations['"):
				key := strings.TrimSuffix(strings.TrimPrefix(path, "metadata.annotations['"), "']")
				v, ok := p.sts.Spec.Template.Annotations[key]
				if !ok {
					t.Fatalf("container %s: env %s: the pod has no annotation %s", c.Name, e.Name, key)
				}
				vars[e.Name] = v
			default:
				t.Fatalf("container %s: env %s: field %s", c.Name, e.Name, path)
			}
		}
	}
	mounts := slices.Clone(c.VolumeMounts)
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].MountPath) > len(mounts[j].MountPath) })
	var pairs []string
	for _, m := range mounts {
		pairs = append(pairs, m.MountPath+"/", r.volumes[m.Name]+"/", m.MountPath+"\n", r.volumes[m.Name]+"\n")
	}
	replacer := strings.NewReplacer(pairs...) // one pass: a folder is never rewritten again.
	local := func(s string) string {
		for _, m := range mounts {
			if strings.HasSuffix(s, "="+m.MountPath) {
				return strings.TrimSuffix(s, m.MountPath) + r.volumes[m.Name]
			}
		}
		return replacer.Replace(s)
	}
	// Paths inside the files of the ConfigMaps this container mounts.
	for _, m := range mounts {
		for _, v := range p.sts.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			for k, data := range p.configMaps[v.ConfigMap.Name].Data {
				if err := os.WriteFile(filepath.Join(r.volumes[v.Name], k), []byte(local(data)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	variable := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	var args []string
	for _, arg := range c.Args {
		arg = variable.ReplaceAllStringFunc(arg, func(m string) string {
			v, ok := vars[m[2:len(m)-1]]
			if !ok {
				t.Fatalf("container %s: argument %q: no env %s", c.Name, arg, m)
			}
			return v
		})
		arg = local(arg)
		// A path left is one no mount of the container holds: the pod
		// would not find it (and this test must not touch the machine's).
		if m := regexp.MustCompile(`=/(data|etc|var)(/|$)`).FindString(arg); m != "" {
			t.Fatalf("container %s: argument %q names a path under none of its mounts", c.Name, arg)
		}
		args = append(args, arg)
	}
	return args
}

// runInit runs the init container with the real podbridge binary.
func (p *haPod) runInit(ctx context.Context, t *testing.T, r *replica, hostKubeconfig string, extra ...string) error {
	t.Helper()
	args := append(append(p.command(t, r, p.container(t, "init")), "--host-kubeconfig="+hostKubeconfig), extra...)
	log := filepath.Join(t.TempDir(), "init.log")
	proc, err := child.Start(child.Command{Name: r.name + " init", Path: podbridgeBinary, Args: args, LogFile: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Wait(ctx); err != nil {
		return fmt.Errorf("%w\n%s", errors.Join(err, proc.Stop(ctx)), child.LogEnd(log))
	}
	t.Logf("%s init %v:\n%s", r.name, args, child.LogEnd(log))
	return nil
}

// startAPIServer starts the replica's kube-apiserver as rendered, on a
// free loopback port, and waits until it is ready through the admin
// kubeconfig init wrote (so with init's CAs and serving certificate).
func (p *haPod) startAPIServer(ctx context.Context, t *testing.T, r *replica, kubeconfig []byte) (*child.Process, *rest.Config) {
	t.Helper()
	path, err := env.Options.Assets.Path("kube-apiserver")
	if err != nil {
		t.Fatal(err)
	}
	port, err := controlplane.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := p.command(t, r, p.container(t, "kube-apiserver"))
	for i, a := range args {
		if a == "--secure-port=6443" {
			args[i] = fmt.Sprintf("--secure-port=%d", port)
		}
	}
	args = append(args, "--bind-address=127.0.0.1")
	log := filepath.Join(t.TempDir(), "kube-apiserver.log")
	proc, err := child.Start(child.Command{Name: r.name + " kube-apiserver", Path: path, Args: args, LogFile: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(context.Background()) })
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
	set, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	err = wait.PollUntilContextCancel(waitCtx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := proc.Exited(); err != nil {
			return false, err
		}
		_, last = set.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s kube-apiserver not ready: %v (last: %v)\n%s", r.name, err, last, child.LogEnd(log))
	}
	return proc, cfg
}

func kubeconfigOf(ctx context.Context, t *testing.T, name, namespace string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: vcluster.KubeconfigSecret(name)}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// Two replicas of the etcd variant serve one virtual cluster: one etcd,
// one identity (what one replica's apiserver admits, the other's does:
// objects, the admin kubeconfig, service-account tokens), made by the
// first init and kept by the second; with one replica gone the other
// answers. Delete removes the shared Secrets with the rest.
func TestEtcdReplicasServeOneCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const ns, name = "vc-ha", "ha-etcd"
	ensureNamespace(t, hostClient, ns)
	etcdURL, clientFiles := startTLSEtcd(ctx, t)
	if err := hostClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "platform-etcd", Namespace: ns}, Type: corev1.SecretTypeTLS, Data: clientFiles}); err != nil {
		t.Fatal(err)
	}
	objects, err := vcluster.Render(vcluster.Options{
		Name: name, Namespace: ns, ServiceCIDR: netip.MustParsePrefix(controlplane.ServiceClusterIPRange),
		APIServerIP: netip.MustParseAddr("10.0.201.10"), DNSIP: netip.MustParseAddr("10.0.0.60"),
		HostAPIServer: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443")},
		Store:         vcluster.StoreEtcd, Replicas: 2,
		Etcd: vcluster.EtcdOptions{Servers: []string{etcdURL}, ClientSecret: "platform-etcd"},
	})
	if err != nil {
		t.Fatal(err)
	}
	applyPackage(ctx, t, objects)
	hostKubeconfig := controlPlaneKubeconfig(ctx, t, ns, vcluster.ControlPlane(name))
	pod := podOf(t, objects, ns)
	a, b := pod.newReplica(ctx, t, "replica-0"), pod.newReplica(ctx, t, "replica-1")
	if err := pod.runInit(ctx, t, a, hostKubeconfig); err != nil {
		t.Fatal(err)
	}
	kubeconfig := kubeconfigOf(ctx, t, name, ns)
	shared := map[string]string{}
	for _, suffix := range []string{"-ca", "-client-ca", "-service-account"} {
		var s corev1.Secret
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: vcluster.PKISecret(name) + suffix}, &s); err != nil {
			t.Fatalf("the shared PKI Secret %s%s: %v", vcluster.PKISecret(name), suffix, err)
		}
		if err := ownership.Check(&s, "Secret", name); err != nil || s.Labels[vcluster.LabelInstance] != name {
			t.Errorf("Secret %s: labels %v, %v: want marked and labelled as %s's", s.Name, s.Labels, err, name)
		}
		shared[s.Name] = s.ResourceVersion
	}
	if err := pod.runInit(ctx, t, b, hostKubeconfig); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"ca.crt", "client-ca.crt", "sa.key", "sa.pub"} {
		fa, errA := os.ReadFile(filepath.Join(a.volumes["data"], "pki", file))
		fb, errB := os.ReadFile(filepath.Join(b.volumes["data"], "pki", file))
		if errA != nil || errB != nil || !bytes.Equal(fa, fb) {
			t.Errorf("pki/%s differs between the replicas (%v, %v): they would be two clusters", file, errA, errB)
		}
	}
	for s, rv := range shared {
		var now corev1.Secret
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: s}, &now); err != nil || now.ResourceVersion != rv {
			t.Errorf("the second replica's init rewrote Secret %s (%v)", s, err)
		}
	}
	if again := kubeconfigOf(ctx, t, name, ns); again.ResourceVersion != kubeconfig.ResourceVersion {
		t.Error("the second replica's init rewrote the admin kubeconfig: the first one's would stop being the cluster's")
	}
	procA, cfgA := pod.startAPIServer(ctx, t, a, kubeconfig.Data[vcluster.KubeconfigKey])
	_, cfgB := pod.startAPIServer(ctx, t, b, kubeconfig.Data[vcluster.KubeconfigKey])
	setA, err := kubernetes.NewForConfig(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	setB, err := kubernetes.NewForConfig(cfgB)
	if err != nil {
		t.Fatal(err)
	}
	// One store: what A admits, B serves.
	if _, err := setA.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "written-through-a"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if cm, err := setB.CoreV1().ConfigMaps("default").Get(ctx, "written-through-a", metav1.GetOptions{}); err != nil || cm.Data["k"] != "v" {
		t.Errorf("replica B reads %v (%v): want A's ConfigMap", cm, err)
	}
	// One service-account key: a token A issues, B accepts.
	if _, err := setA.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := setA.CoreV1().ServiceAccounts("default").CreateToken(ctx, "probe", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokenB := rest.AnonymousClientConfig(cfgB)
	tokenB.BearerToken = tr.Status.Token
	asProbe, err := kubernetes.NewForConfig(tokenB)
	if err != nil {
		t.Fatal(err)
	}
	review, err := asProbe.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != "system:serviceaccount:default:probe" {
		t.Errorf("replica B on replica A's token: %v (%v), want the account probe", review, err)
	}
	// One replica gone (the kubelet's SIGTERM, then its end): the other
	// still serves reads and writes.
	if err := procA.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := setB.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "written-after-a-went"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("replica B with A gone: %v", err)
	}
	if _, err := setA.CoreV1().ConfigMaps("default").Get(ctx, "written-through-a", metav1.GetOptions{}); err == nil {
		t.Error("replica A still answers after it stopped: the test stopped nothing")
	}
	// Delete finds the shared Secrets with the rest of the cluster.
	left, err := vcluster.Remains(ctx, hostClient, name, ns)
	if err != nil {
		t.Fatal(err)
	}
	for s := range shared {
		if !slices.Contains(left, "Secret "+ns+"/"+s) {
			t.Errorf("Remains lacks Secret %s: delete would leave the cluster's CA keys on the host (%v)", s, left)
		}
	}
	if err := vcluster.Delete(ctx, hostClient, name, ns, testLog{t}); err != nil {
		t.Fatal(err)
	}
	if left, err := vcluster.Remains(ctx, hostClient, name, ns); err != nil || len(left) != 0 {
		t.Errorf("left after delete: %v (%v)", left, err)
	}
}

// certManagerKindShells serves cert-manager's Issuer and Certificate kinds
// on the host as shells that validate nothing and do nothing (no
// cert-manager runs here): the package's objects apply, and delete is
// shown to remove them.
func certManagerKindShells(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, kind := range []string{"Issuer", "Certificate"} {
		plural := strings.ToLower(kind) + "s"
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": plural + ".cert-manager.io"},
			"spec": map[string]any{
				"group": "cert-manager.io", "scope": "Namespaced",
				"names": map[string]any{"kind": kind, "listKind": kind + "List", "plural": plural, "singular": strings.ToLower(kind)},
				"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true, "schema": map[string]any{
					"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
				}}},
			},
		}}
		if err := hostClient.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var list unstructured.UnstructuredList
			list.SetAPIVersion("cert-manager.io/v1")
			list.SetKind(kind + "List")
			return hostClient.List(ctx, &list) == nil, nil
		}); err != nil {
			t.Fatalf("cert-manager's %s kind not served: %v", kind, err)
		}
	}
}

// certManagerSecrets writes the Secrets cert-manager would write for the
// rendered Certificates: type kubernetes.io/tls, tls.crt, tls.key and
// ca.crt (the issuing CA's certificate; a self-signed one's own),
// annotated with the Certificate's name, labelled by its secretTemplate,
// each certificate with the Certificate's names and usages, signed as its
// Issuer says (selfSigned, or ca with the CA Secret).
func certManagerSecrets(ctx context.Context, t *testing.T, objects []*unstructured.Unstructured, pkcs8 string) map[string]*corev1.Secret {
	t.Helper()
	issuers := map[string]*unstructured.Unstructured{}
	var certificates []*unstructured.Unstructured
	for _, obj := range objects {
		switch obj.GetKind() {
		case "Issuer":
			issuers[obj.GetName()] = obj
		case "Certificate":
			certificates = append(certificates, obj)
		}
	}
	made := map[string]*testPKI{}
	out := map[string]*corev1.Secret{}
	// CAs first: the serving certificate's issuer reads one.
	sort.SliceStable(certificates, func(i, j int) bool {
		a, _, _ := unstructured.NestedBool(certificates[i].Object, "spec", "isCA")
		b, _, _ := unstructured.NestedBool(certificates[j].Object, "spec", "isCA")
		return a && !b
	})
	for _, cert := range certificates {
		spec := cert.Object["spec"].(map[string]any)
		cn, _, _ := unstructured.NestedString(spec, "commonName")
		isCA, _, _ := unstructured.NestedBool(spec, "isCA")
		dns, _, _ := unstructured.NestedStringSlice(spec, "dnsNames")
		ips, _, _ := unstructured.NestedStringSlice(spec, "ipAddresses")
		usages, _, _ := unstructured.NestedStringSlice(spec, "usages")
		secretName, _, _ := unstructured.NestedString(spec, "secretName")
		issuerName, _, _ := unstructured.NestedString(spec, "issuerRef", "name")
		issuer := issuers[issuerName]
		if issuer == nil {
			t.Fatalf("Certificate %s: no Issuer %s", cert.GetName(), issuerName)
		}
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
		if isCA {
			tmpl = caTemplate(cn)
		}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		if slices.Contains(usages, "server auth") {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}
		var parent *testPKI
		if caSecret, ok, _ := unstructured.NestedString(issuer.Object, "spec", "ca", "secretName"); ok {
			if parent = made[caSecret]; parent == nil {
				t.Fatalf("Certificate %s: its CA Secret %s is not made yet", cert.GetName(), caSecret)
			}
		}
		pair, keyPEM := newTestCert(t, tmpl, parent)
		made[secretName] = pair
		if secretName == pkcs8 {
			der, err := x509.MarshalPKCS8PrivateKey(pair.key)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
		caPEM := pair.pem
		if parent != nil {
			caPEM = parent.pem
		}
		labels, _, _ := unstructured.NestedStringMap(spec, "secretTemplate", "labels")
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: cert.GetNamespace(), Labels: labels, Annotations: map[string]string{
				vcluster.CertManagerCertificateAnnotation: cert.GetName(), "cert-manager.io/issuer-name": issuerName, "cert-manager.io/issuer-kind": "Issuer", "cert-manager.io/common-name": cn,
			}},
			Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: pair.pem, corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": caPEM},
		}
		if err := hostClient.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		out[secretName] = s
	}
	return out
}

// cert-manager mode: init takes the CAs, the service-account key and the
// serving certificate from the Secrets cert-manager writes (PKCS #8 or
// SEC 1 keys), makes none of them, and the apiserver serves with them;
// init refuses what cert-manager did not write (no annotation, a tenant's
// Secret copy) and waits, bounded, for what is not there yet.
func TestCertManagerSecretsServeTheCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const ns, name = "vc-cm", "cm-etcd"
	ensureNamespace(t, hostClient, ns)
	certManagerKindShells(ctx, t)
	etcdURL, clientFiles := startTLSEtcd(ctx, t)
	if err := hostClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: vcluster.DefaultEtcdClientSecret, Namespace: ns}, Type: corev1.SecretTypeTLS, Data: clientFiles}); err != nil {
		t.Fatal(err)
	}
	objects, err := vcluster.Render(vcluster.Options{
		Name: name, Namespace: ns, ServiceCIDR: netip.MustParsePrefix(controlplane.ServiceClusterIPRange),
		APIServerIP: netip.MustParseAddr("10.0.201.11"), DNSIP: netip.MustParseAddr("10.0.0.61"),
		HostAPIServer: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443")},
		Store:         vcluster.StoreEtcd, Replicas: 1, Etcd: vcluster.EtcdOptions{Servers: []string{etcdURL}},
		Certificates: vcluster.IssuerCertManager,
	})
	if err != nil {
		t.Fatal(err)
	}
	applyPackage(ctx, t, objects)
	hostKubeconfig := controlPlaneKubeconfig(ctx, t, ns, vcluster.ControlPlane(name))
	pod := podOf(t, objects, ns)
	prefix := vcluster.PKISecret(name)

	// Nothing written yet: init waits for cert-manager (3 s here) and
	// makes nothing itself.
	err = pod.runInit(ctx, t, pod.newReplica(ctx, t, "early"), hostKubeconfig, "--pki-wait=3s")
	if err == nil || !strings.Contains(err.Error(), "waiting for cert-manager to write host Secret "+ns+"/"+prefix+"-ca") {
		t.Fatalf("init with no cert-manager Secret: %v, want it to say it waited for %s-ca", err, prefix)
	}
	var s corev1.Secret
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: prefix + "-ca"}, &s); !apierrors.IsNotFound(err) {
		t.Fatalf("init made %s itself in cert-manager mode (%v)", prefix+"-ca", err)
	}
	// Hostile or foreign Secrets at cert-manager's names are refused: one
	// without cert-manager's annotation, and podbridge's copy of a
	// tenant's Secret (which carries whatever annotation the tenant wrote).
	for _, tc := range []struct {
		what        string
		labels      map[string]string
		annotations map[string]string
		want        string
	}{
		{"not cert-manager's", nil, nil, vcluster.CertManagerCertificateAnnotation},
		{"a tenant's copy", map[string]string{translate.LabelManagedBy: translate.ManagedByValue, translate.LabelVCluster: name},
			map[string]string{vcluster.CertManagerCertificateAnnotation: prefix + "-ca"}, "copy of a tenant's Secret"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			ca, key := newTestCert(t, caTemplate("forged"), nil)
			forged := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-ca", Namespace: ns, Labels: tc.labels, Annotations: tc.annotations},
				Type: corev1.SecretTypeTLS, Data: map[string][]byte{corev1.TLSCertKey: ca.pem, corev1.TLSPrivateKeyKey: key}}
			if err := hostClient.Create(ctx, forged); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := hostClient.Delete(ctx, forged); err != nil {
					t.Fatal(err)
				}
			}()
			r := pod.newReplica(ctx, t, "forged")
			err := pod.runInit(ctx, t, r, hostKubeconfig)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("init with %s as its CA: %v, want a refusal naming %q", tc.what, err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(r.volumes["data"], "pki", "ca.crt")); err == nil {
				t.Error("init wrote the refused CA for the apiserver")
			}
		})
	}
	if t.Failed() {
		return
	}
	// Wait for the forged Secrets to be gone before cert-manager's.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: prefix + "-ca"}, &s)), nil
	}); err != nil {
		t.Fatal(err)
	}
	secrets := certManagerSecrets(ctx, t, objects, prefix+"-service-account")
	before := map[string]string{}
	for n := range secrets {
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &s); err != nil {
			t.Fatal(err)
		}
		before[n] = s.ResourceVersion
	}
	r := pod.newReplica(ctx, t, "replica-0")
	if err := pod.runInit(ctx, t, r, hostKubeconfig); err != nil {
		t.Fatal(err)
	}
	for n, rv := range before {
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &s); err != nil || s.ResourceVersion != rv || s.Annotations[ownership.Annotation] != "" {
			t.Errorf("init changed cert-manager's Secret %s (%v)", n, err)
		}
	}
	read := func(file string) []byte {
		data, err := os.ReadFile(filepath.Join(r.volumes["data"], "pki", file))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for file, want := range map[string][]byte{
		"ca.crt":        secrets[prefix+"-ca"].Data[corev1.TLSCertKey],
		"client-ca.crt": secrets[prefix+"-client-ca"].Data[corev1.TLSCertKey],
		"apiserver.crt": secrets[prefix+"-apiserver"].Data[corev1.TLSCertKey],
	} {
		if !bytes.Equal(read(file), want) {
			t.Errorf("pki/%s is not cert-manager's", file)
		}
	}
	kubeconfig := kubeconfigOf(ctx, t, name, ns)
	_, cfg := pod.startAPIServer(ctx, t, r, kubeconfig.Data[vcluster.KubeconfigKey])
	// The apiserver presents cert-manager's serving certificate, which the
	// kubeconfig's CA (cert-manager's CA) verifies.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(cfg.Host, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the certificate is compared below.
	if err != nil {
		t.Fatal(err)
	}
	served := conn.ConnectionState().PeerCertificates[0].Raw
	conn.Close()
	block, _ := pem.Decode(secrets[prefix+"-apiserver"].Data[corev1.TLSCertKey])
	if !bytes.Equal(served, block.Bytes) {
		t.Error("the apiserver serves a certificate other than cert-manager's")
	}
	set, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A token signed with cert-manager's service-account key (PKCS #8 in
	// its Secret) is accepted.
	if _, err := set.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := set.CoreV1().ServiceAccounts("default").CreateToken(ctx, "probe", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asProbe := rest.AnonymousClientConfig(cfg)
	asProbe.BearerToken = tr.Status.Token
	probe, err := kubernetes.NewForConfig(asProbe)
	if err != nil {
		t.Fatal(err)
	}
	if review, err := probe.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err != nil || review.Status.UserInfo.Username != "system:serviceaccount:default:probe" {
		t.Errorf("a token of the cert-manager key: %v (%v)", review, err)
	}
	// The cert-manager Secrets carry the instance's labels: delete takes
	// them with the cluster, and its Issuers and Certificates.
	left, err := vcluster.Remains(ctx, hostClient, name, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Certificate " + ns + "/" + prefix + "-ca", "Issuer " + ns + "/" + prefix + "-ca", "Secret " + ns + "/" + prefix + "-apiserver"} {
		if !slices.Contains(left, want) {
			t.Errorf("Remains lacks %s: %v", want, left)
		}
	}
	if err := vcluster.Delete(ctx, hostClient, name, ns, testLog{t}); err != nil {
		t.Fatal(err)
	}
	if left, err := vcluster.Remains(ctx, hostClient, name, ns); err != nil || len(left) != 0 {
		t.Errorf("left after delete: %v (%v)", left, err)
	}
	for n := range secrets {
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &s); !apierrors.IsNotFound(err) {
			t.Errorf("Secret %s left after delete (%v)", n, err)
		}
	}
}

// connect and create forward to a replica whose apiserver is ready, the
// lowest ordinal first, and never to one being deleted or to a pod that
// only carries the labels.
func TestForwardPicksAReadyReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns, name = "vc-pick", "pick"
	ensureNamespace(t, hostClient, ns)
	if err := hostClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	labels := map[string]string{vcluster.LabelInstance: name, "app.kubernetes.io/name": "podbridge-vcluster", "app.kubernetes.io/component": "control-plane"}
	pods := map[string]*corev1.Pod{}
	for _, podName := range []string{vcluster.ControlPlane(name) + "-0", vcluster.ControlPlane(name) + "-1", vcluster.ControlPlane(name) + "-10", "lookalike"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns, Labels: labels, Finalizers: []string{"podbridge.io/test-keep"}},
			// A node nothing runs: the test writes the status.
			Spec: corev1.PodSpec{NodeName: "no-such-node", Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		}
		if err := hostClient.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pods[podName] = pod
		t.Cleanup(func() {
			var p corev1.Pod
			if err := hostClient.Get(context.Background(), client.ObjectKeyFromObject(pod), &p); err == nil {
				p.Finalizers = nil
				_ = hostClient.Update(context.Background(), &p)
				_ = hostClient.Delete(context.Background(), &p)
			}
		})
	}
	setReady := func(podName string, ready bool) {
		t.Helper()
		pod := pods[podName]
		if err := hostClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "kube-apiserver", Ready: ready, Image: "i", ImageID: "i"}}
		if err := hostClient.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	pick := func(want string) {
		t.Helper()
		got, err := vcluster.ReadyControlPlanePod(ctx, hostClient, name, ns)
		if err != nil || got != want {
			t.Errorf("picked %q (%v), want %q", got, err, want)
		}
	}
	pick("")
	setReady("lookalike", true)
	pick("")
	setReady(vcluster.ControlPlane(name)+"-10", true)
	setReady(vcluster.ControlPlane(name)+"-1", true)
	pick(vcluster.ControlPlane(name) + "-1")
	setReady(vcluster.ControlPlane(name)+"-0", true)
	pick(vcluster.ControlPlane(name) + "-0")
	// -0 deleted (held by the finalizer while it terminates): -1 answers.
	if err := hostClient.Delete(ctx, pods[vcluster.ControlPlane(name)+"-0"]); err != nil {
		t.Fatal(err)
	}
	pick(vcluster.ControlPlane(name) + "-1")
	setReady(vcluster.ControlPlane(name)+"-1", false)
	pick(vcluster.ControlPlane(name) + "-10")
}
