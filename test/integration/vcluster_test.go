package integration

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/vcluster"
)

// What `podbridge create` reads from the host, from a real apiserver.
func TestCreateReadsTheHost(t *testing.T) {
	ctx := context.Background()
	cidr, err := vcluster.HostServiceCIDR(ctx, hostClient)
	if err != nil {
		t.Fatal(err)
	}
	if cidr.String() != controlplane.ServiceClusterIPRange {
		t.Errorf("the host's Service range: %s, want %s", cidr, controlplane.ServiceClusterIPRange)
	}
	endpoints, err := vcluster.HostAPIServerEndpoints(ctx, hostClient)
	if err != nil {
		t.Fatal(err)
	}
	// The address is the apiserver's advertised one (a loopback-bound
	// apiserver advertises the machine's), the port its own.
	if len(endpoints) != 1 || !strings.HasSuffix(strings.TrimSuffix(env.Host.Config.Host, "/"), ":"+itoa(int(endpoints[0].Port()))) {
		t.Errorf("the host apiserver's endpoints %v, want its own port (%s)", endpoints, env.Host.Config.Host)
	}
	dns, err := vcluster.FreeDNSAddress(ctx, hostClient, cidr)
	if err != nil {
		t.Fatal(err)
	}
	var services corev1.ServiceList
	if err := hostClient.List(ctx, &services); err != nil {
		t.Fatal(err)
	}
	for _, s := range services.Items {
		if slices.Contains(s.Spec.ClusterIPs, dns.String()) {
			t.Errorf("the free DNS address %s is host Service %s/%s's", dns, s.Namespace, s.Name)
		}
	}
}

// The package's objects, applied with server-side apply to a real
// apiserver, are valid; delete removes them, the tenants' host objects
// and podbridge's marked Secrets, and nothing of another virtual cluster
// of the namespace, which labels and marks no tenant can forge keep apart.
func TestPackageAppliesAndDeleteRemovesOnlyItsCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "vc-delete"
	if err := hostClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for i, name := range []string{"it-alpha", "it-beta"} {
		objects, err := vcluster.Render(vcluster.Options{
			Name: name, Namespace: ns, ServiceCIDR: netip.MustParsePrefix(controlplane.ServiceClusterIPRange),
			APIServerIP: netip.MustParseAddr("10.0.200." + itoa(10+i)), DNSIP: netip.MustParseAddr("10.0.0." + itoa(40+i)),
			HostAPIServer: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443")},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objects {
			if err := hostClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(vcluster.FieldManager), client.ForceOwnership); err != nil {
				t.Fatalf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
		// What the control plane and its tenants would make.
		tenant := map[string]string{translate.LabelVCluster: name, translate.LabelManagedBy: translate.ManagedByValue}
		for _, obj := range []client.Object{
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name + "-copy", Namespace: ns, Labels: tenant}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name + "-svc", Namespace: ns, Labels: tenant}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-webhook-tls", Namespace: ns, Annotations: map[string]string{ownership.Annotation: name}}},
		} {
			if err := hostClient.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A pod of the control plane's name that is not it (no instance
	// label) stays; it-beta's control-plane pod, as its StatefulSet
	// labels it, goes with it-beta.
	cpPod := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}, Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false), Containers: []corev1.Container{{Name: "c", Image: "x"}},
		}}
	}
	notAlphas := cpPod(vcluster.ControlPlane("it-alpha")+"-0", map[string]string{vcluster.LabelName: vcluster.NameValue})
	betas := cpPod(vcluster.ControlPlane("it-beta")+"-0", map[string]string{vcluster.LabelName: vcluster.NameValue, vcluster.LabelInstance: "it-beta"})
	// The host's ServiceAccount admission wants the pods' account (no
	// controller makes it here).
	if err := hostClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{notAlphas, betas} {
		if err := hostClient.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// A tenant's own labels reach the host under podbridge's tenant keys
	// only: a tenant of beta cannot make its host object look like
	// alpha's.
	forged := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: ns, Labels: map[string]string{
		translate.LabelVCluster: "it-beta", translate.LabelManagedBy: translate.ManagedByValue,
		translate.TenantKey(translate.LabelVCluster): "it-alpha", translate.TenantKey("app.kubernetes.io/instance"): "it-alpha",
	}}}
	if err := hostClient.Create(ctx, forged); err != nil {
		t.Fatal(err)
	}
	betaBefore, err := vcluster.Remains(ctx, hostClient, "it-beta", ns)
	if err != nil {
		t.Fatal(err)
	}
	alphaBefore, err := vcluster.Remains(ctx, hostClient, "it-alpha", ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"StatefulSet " + ns + "/it-alpha-control-plane", "ClusterRole it-alpha-cluster-grants", "ConfigMap " + ns + "/it-alpha-copy", "Service " + ns + "/it-alpha-svc", "Secret " + ns + "/it-alpha-webhook-tls"} {
		if !slices.Contains(alphaBefore, want) {
			t.Errorf("Remains(it-alpha) lacks %s: %v", want, alphaBefore)
		}
	}
	// A second create of it-beta counts all of it as its own (its pod
	// too; the webhook's certificate Secret carries podbridge's mark
	// only), and waits for a control plane that never starts here; one of
	// it-alpha is refused, since a pod of its control plane's name is not
	// its.
	_, err = vcluster.Create(ctx, env.Host.Config, vcluster.CreateOptions{Options: vcluster.Options{Name: "it-beta", Namespace: ns}, Timeout: 2 * time.Second, SkipDNS: true}, testLog{t})
	if err == nil || !strings.Contains(err.Error(), "waiting for host Secret") {
		t.Errorf("a second create of it-beta: %v, want it to wait for its kubeconfig Secret", err)
	}
	_, err = vcluster.Create(ctx, env.Host.Config, vcluster.CreateOptions{Options: vcluster.Options{Name: "it-alpha", Namespace: ns}, Timeout: 2 * time.Second, SkipDNS: true}, testLog{t})
	if err == nil || !strings.Contains(err.Error(), "Pod "+ns+"/it-alpha-control-plane-0") {
		t.Errorf("a second create of it-alpha beside a pod of its pod's name: %v, want a refusal naming the pod", err)
	}
	if err := vcluster.Delete(ctx, hostClient, "it-alpha", ns, testLog{t}); err != nil {
		t.Fatal(err)
	}
	if left, err := vcluster.Remains(ctx, hostClient, "it-alpha", ns); err != nil || len(left) != 0 {
		t.Errorf("left of it-alpha: %v (%v)", left, err)
	}
	betaAfter, err := vcluster.Remains(ctx, hostClient, "it-beta", ns)
	if err != nil || !slices.Equal(betaAfter, betaBefore) {
		t.Errorf("it-beta's objects changed: %v before, %v after (%v)", betaBefore, betaAfter, err)
	}
	if err := hostClient.Get(ctx, client.ObjectKeyFromObject(forged), forged); err != nil {
		t.Errorf("beta's host object with alpha's names under tenant keys: %v", err)
	}
	if err := hostClient.Get(ctx, client.ObjectKeyFromObject(notAlphas), &corev1.Pod{}); err != nil {
		t.Errorf("a pod of it-alpha's control-plane pod's name without its labels: %v after delete, want kept", err)
	}
	if !slices.Contains(betaBefore, "Pod "+ns+"/"+betas.Name) {
		t.Errorf("Remains(it-beta) lacks its control-plane pod: %v", betaBefore)
	}
	if err := vcluster.Delete(ctx, hostClient, "it-alpha", ns, testLog{t}); err == nil || !strings.Contains(err.Error(), "no virtual cluster it-alpha") {
		t.Errorf("deleting it again: %v, want an error saying there is none", err)
	}
	if err := vcluster.Delete(ctx, hostClient, "it-beta", ns, testLog{t}); err != nil {
		t.Fatal(err)
	}
	if err := hostClient.Get(ctx, client.ObjectKeyFromObject(betas), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("it-beta's control-plane pod after delete: %v", err)
	}
	if err := hostClient.Delete(ctx, notAlphas); err != nil {
		t.Error(err)
	}
}

// A name a virtual cluster of another namespace holds is refused before
// anything is written: the cluster-scoped grants are named after it.
func TestCreateRefusesANameInUseElsewhere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	taken := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "taken-cluster-grants", Labels: map[string]string{
		vcluster.LabelPartOf: vcluster.PartOfValue, vcluster.LabelInstance: "taken", vcluster.LabelNamespace: "elsewhere",
	}}}
	if err := hostClient.Create(ctx, taken); err != nil {
		t.Fatal(err)
	}
	defer hostClient.Delete(ctx, taken) //nolint:errcheck // best effort
	_, err := vcluster.Create(ctx, env.Host.Config, vcluster.CreateOptions{Options: vcluster.Options{Name: "taken", Namespace: "vc-taken"}}, testLog{t})
	if err == nil || !strings.Contains(err.Error(), "exists in host namespace elsewhere") {
		t.Fatalf("create of a taken name: %v", err)
	}
	if err := hostClient.Get(ctx, client.ObjectKey{Name: "vc-taken"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused create made its namespace: %v", err)
	}
}

// The init container's work against a real host: the PKI on the claim,
// podbridge's self-managed Secrets marked as the cluster's, the admin
// kubeconfig in a host Secret; a second run (a restarted pod) keeps the
// CAs and Secrets; a Secret of the same name another virtual cluster owns
// is refused, not adopted.
func TestInitKeepsTheClustersIdentity(t *testing.T) {
	ctx := context.Background()
	const ns = "vc-init"
	if err := hostClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := vcluster.InitOptions{
		Host: hostClient, Dir: dir, VCluster: "init-a", Namespace: ns,
		APIServerService: "init-a-apiserver", APIServerIP: "10.0.3.9", ClusterDomain: "cluster.local",
		KubeconfigSecret: "init-a-kubeconfig", ClientCASecret: "init-a-webhook-client-tls", KubeletCertSecret: "init-a-kubelet-tls",
	}
	if err := vcluster.Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "pki", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ca, saKey := read("ca.crt"), read("sa.key")
	for _, file := range []string{"apiserver.crt", "client-ca.crt", "sa.pub", "podbridge/podbridge.kubeconfig", "controller-manager.kubeconfig", "podbridge-certs/webhook-client.pem", "podbridge-certs/kubelet-ca.crt"} {
		read(file)
	}
	// podbridge's identity in the virtual cluster is in no group.
	podbridge, err := clientcmd.Load(read("podbridge/podbridge.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range podbridge.AuthInfos {
		if c := parseCert(t, user.ClientCertificateData); c.Subject.CommonName != vcluster.PodbridgeUser || len(c.Subject.Organization) > 0 {
			t.Errorf("podbridge's certificate: %q in %v, want %q in no group", c.Subject.CommonName, c.Subject.Organization, vcluster.PodbridgeUser)
		}
	}
	serving := parseCert(t, read("apiserver.crt"))
	for _, name := range []string{"kubernetes.default.svc", "init-a-apiserver." + ns + ".svc"} {
		if err := serving.VerifyHostname(name); err != nil {
			t.Errorf("the serving certificate: %v", err)
		}
	}
	if err := serving.VerifyHostname("10.0.3.9"); err != nil {
		t.Errorf("the serving certificate: %v", err)
	}
	var kc corev1.Secret
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.KubeconfigSecret}, &kc); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(kc.Data[vcluster.KubeconfigKey])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		if c.Server != "https://init-a-apiserver."+ns+".svc:443" || string(c.CertificateAuthorityData) != string(ca) {
			t.Errorf("the kubeconfig's cluster: %s, CA the claim's: %t", c.Server, string(c.CertificateAuthorityData) == string(ca))
		}
	}
	secrets := map[string]string{}
	for _, name := range []string{o.ClientCASecret, o.KubeletCertSecret, o.KubeconfigSecret} {
		var s corev1.Secret
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		if err := ownership.Check(&s, "Secret", "init-a"); err != nil {
			t.Errorf("Secret %s: %v", name, err)
		}
		secrets[name] = s.ResourceVersion
	}
	// A restart: everything kept.
	if err := vcluster.Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	if string(read("ca.crt")) != string(ca) || string(read("sa.key")) != string(saKey) {
		t.Error("a second run changed the CA or the service-account key: tokens and kubeconfigs of before would stop working")
	}
	for name, rv := range secrets {
		var s corev1.Secret
		if err := hostClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil || s.ResourceVersion != rv {
			t.Errorf("Secret %s rewritten by a second run (%v)", name, err)
		}
	}
	// Another virtual cluster's init naming init-a's Secret is refused.
	other := o
	other.VCluster, other.Dir, other.KubeconfigSecret = "init-b", t.TempDir(), "init-b-kubeconfig"
	if err := vcluster.Init(ctx, other); err == nil || !strings.Contains(err.Error(), "init-a") {
		t.Errorf("init of init-b naming init-a's client Secret: %v, want a refusal naming its owner", err)
	}
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
