package vcluster

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
)

func etcdOptions(name string) Options {
	o := testOptions(name)
	o.Store = StoreEtcd
	o.Etcd.Servers = []string{"https://10.9.0.5:2379", "https://10.9.0.6:2379"}
	return o
}

func containerNamed(spec corev1.PodSpec, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// checkPodConsistent checks what a variant can break between components:
// every file an argument names is under a mount of its container, every
// mount names a volume of the pod (or a claim template), every $(VAR) is
// in the container's env and every ConfigMap key an env reads exists.
func checkPodConsistent(t *testing.T, objs map[string]any, sts *appsv1.StatefulSet) {
	t.Helper()
	spec := sts.Spec.Template.Spec
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range sts.Spec.VolumeClaimTemplates {
		volumes[c.Name] = true
	}
	path := regexp.MustCompile(`=(/(data|etc)/[^ ,]*)`)
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
			if ref := e.ValueFrom; ref != nil && ref.ConfigMapKeyRef != nil {
				cm, ok := objs["ConfigMap/"+ref.ConfigMapKeyRef.Name].(*corev1.ConfigMap)
				if !ok {
					t.Errorf("container %s: env %s reads ConfigMap %s, which is not rendered", c.Name, e.Name, ref.ConfigMapKeyRef.Name)
				} else if _, ok := cm.Data[ref.ConfigMapKeyRef.Key]; !ok {
					t.Errorf("container %s: env %s reads key %s, which ConfigMap %s lacks", c.Name, e.Name, ref.ConfigMapKeyRef.Key, cm.Name)
				}
			}
			if ref := e.ValueFrom; ref != nil && ref.FieldRef != nil && strings.HasPrefix(ref.FieldRef.FieldPath, "metadata.annotations[") {
				key := strings.TrimSuffix(strings.TrimPrefix(ref.FieldRef.FieldPath, "metadata.annotations['"), "']")
				if sts.Spec.Template.Annotations[key] == "" {
					t.Errorf("container %s: env %s reads annotation %s, which the pod lacks", c.Name, e.Name, key)
				}
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("container %s mounts %s, which is no volume of the pod", c.Name, m.Name)
			}
		}
		for _, arg := range c.Args {
			for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(arg, -1) {
				if !env[m[1]] {
					t.Errorf("container %s: argument %q names $(%s), which its env lacks", c.Name, arg, m[1])
				}
			}
			for _, m := range path.FindAllStringSubmatch(arg, -1) {
				if !slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool { return strings.HasPrefix(m[1], v.MountPath+"/") }) {
					t.Errorf("container %s: argument %q names %s, under none of its mounts", c.Name, arg, m[1])
				}
			}
		}
	}
}

func typedAll(t *testing.T, o Options) (map[string]any, *appsv1.StatefulSet) {
	t.Helper()
	objs := map[string]any{}
	for k, v := range renderTyped(t, o) {
		objs[k] = v
	}
	return objs, objs["StatefulSet/"+ControlPlane(o.Name)].(*appsv1.StatefulSet)
}

func TestEveryVariantIsConsistent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
	}{
		{"kine", func(*Options) {}},
		{"kine cert-manager", func(o *Options) { o.Certificates = IssuerCertManager }},
		{"etcd", func(o *Options) { *o = etcdOptions(o.Name) }},
		{"etcd cert-manager", func(o *Options) { *o = etcdOptions(o.Name); o.Certificates = IssuerCertManager }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions("alpha")
			tc.change(&o)
			objs, sts := typedAll(t, o)
			checkPodConsistent(t, objs, sts)
		})
	}
}

// With etcd: no kine and no claim, the platform's etcd over TLS under a
// prefix of the cluster's own, three replicas sharing one PKI from host
// Secrets, leader election where a second active copy would fight, and
// one replica at a time allowed to go.
func TestRenderEtcd(t *testing.T) {
	o := etcdOptions("alpha")
	o.Etcd.ClientSecret = "platform-etcd-client"
	objs, sts := typedAll(t, o)
	spec := sts.Spec.Template.Spec
	if got := ptr.Deref(sts.Spec.Replicas, 0); got != 3 {
		t.Errorf("replicas %d, want 3 by default with etcd", got)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("pod management %q, want Parallel: a replica need not wait for the one before", sts.Spec.PodManagementPolicy)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("claim templates %v: with etcd the control plane keeps no state", sts.Spec.VolumeClaimTemplates)
	}
	if containerNamed(spec, "kine") != nil {
		t.Error("kine still runs beside etcd")
	}
	for _, v := range spec.Volumes {
		switch v.Name {
		case "data":
			if v.EmptyDir == nil {
				t.Errorf("volume data %+v, want an emptyDir", v.VolumeSource)
			}
		case "etcd-client":
			if v.Secret == nil || v.Secret.SecretName != "platform-etcd-client" {
				t.Errorf("volume etcd-client %+v, want the Secret platform-etcd-client", v.VolumeSource)
			}
		}
	}
	apiserver := containerNamed(spec, "kube-apiserver")
	for _, want := range []string{"--etcd-servers=$(ETCD_SERVERS)", "--etcd-cafile=/etc/etcd-client/ca.crt", "--etcd-certfile=/etc/etcd-client/tls.crt", "--etcd-keyfile=/etc/etcd-client/tls.key", "--etcd-prefix=/podbridge/$(POD_NAMESPACE)/$(VCLUSTER_NAME)"} {
		if !slices.Contains(apiserver.Args, want) {
			t.Errorf("the apiserver's arguments lack %s: %v", want, apiserver.Args)
		}
	}
	// Clusters of one name in two namespaces sharing an etcd keep apart.
	if i := slices.IndexFunc(apiserver.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAMESPACE" }); i < 0 ||
		apiserver.Env[i].ValueFrom == nil || apiserver.Env[i].ValueFrom.FieldRef == nil || apiserver.Env[i].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("the apiserver's POD_NAMESPACE, in its etcd prefix, is not the pod's namespace: %+v", apiserver.Env)
	}
	if n := slices.IndexFunc(apiserver.Args, func(a string) bool { return strings.HasPrefix(a, "--etcd-servers=") }); slices.ContainsFunc(apiserver.Args[n+1:], func(a string) bool { return strings.HasPrefix(a, "--etcd-servers=") }) {
		t.Errorf("two --etcd-servers: %v", apiserver.Args)
	}
	if got := objs["ConfigMap/alpha-config"].(*corev1.ConfigMap).Data["etcd-servers"]; got != "https://10.9.0.5:2379,https://10.9.0.6:2379" {
		t.Errorf("config etcd-servers %q", got)
	}
	for _, name := range []string{"kube-controller-manager", "reflector"} {
		args := containerNamed(spec, name).Args
		if !slices.Contains(args, "--leader-elect=true") || slices.Contains(args, "--leader-elect=false") {
			t.Errorf("container %s: arguments %v, want --leader-elect=true alone", name, args)
		}
	}
	if containerNamed(spec, "webhook") == nil {
		t.Error("no webhook in the replicas: each apiserver calls its own")
	}
	if got := sts.Spec.Template.Annotations["podbridge.io/pki-secret"]; got != PKISecret("alpha") {
		t.Errorf("annotation pki-secret %q, want %s", got, PKISecret("alpha"))
	}
	if init := containerNamed(spec, "init"); !slices.Contains(init.Args, "--pki-secret=$(PKI_SECRET)") || slices.ContainsFunc(init.Args, func(a string) bool { return strings.HasPrefix(a, "--pki-issuer") }) {
		t.Errorf("init's arguments %v, want --pki-secret and podbridge as the issuer", init.Args)
	}
	pdb := objs["PodDisruptionBudget/alpha-control-plane"].(*unstructured.Unstructured)
	if got, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "maxUnavailable"); fmt.Sprint(got) != "1" {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", got)
	}
	terms := spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(terms) != 1 || terms[0].PodAffinityTerm.LabelSelector.MatchLabels[LabelInstance] != "alpha" || terms[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("anti-affinity %+v, want the instance's replicas spread over nodes", terms)
	}
	// The egress allows the etcd servers' addresses and port, nothing wider.
	np := objs["NetworkPolicy/alpha-control-plane-tenants"].(*networkingv1.NetworkPolicy)
	var cidrs []string
	for _, rule := range np.Spec.Egress {
		for _, peer := range rule.To {
			if peer.IPBlock != nil {
				cidrs = append(cidrs, peer.IPBlock.CIDR+":"+rule.Ports[0].Port.String())
			}
		}
	}
	if want := []string{"10.201.0.1/32:6443", "10.9.0.5/32:2379", "10.9.0.6/32:2379"}; !slices.Equal(cidrs, want) {
		t.Errorf("egress ipBlocks %v, want %v", cidrs, want)
	}
}

// Two virtual clusters on one etcd: different prefixes, so neither
// apiserver reads the other's objects; with --etcd-egress, a server named
// by DNS name is reached in the given range only.
func TestRenderEtcdShared(t *testing.T) {
	o := etcdOptions("beta")
	o.Etcd.Servers = []string{"https://etcd.platform.svc:2379"}
	o.Etcd.Egress = []netip.Prefix{netip.MustParsePrefix("10.96.5.0/24")}
	o.Replicas = 2
	objs, sts := typedAll(t, o)
	if got := ptr.Deref(sts.Spec.Replicas, 0); got != 2 {
		t.Errorf("replicas %d, want 2", got)
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == "etcd-client" && v.Secret.SecretName != DefaultEtcdClientSecret {
			t.Errorf("etcd client Secret %s, want the default %s", v.Secret.SecretName, DefaultEtcdClientSecret)
		}
	}
	np := objs["NetworkPolicy/beta-control-plane-tenants"].(*networkingv1.NetworkPolicy)
	found := false
	for _, rule := range np.Spec.Egress {
		for _, peer := range rule.To {
			if peer.IPBlock != nil && peer.IPBlock.CIDR == "10.96.5.0/24" {
				found = len(rule.Ports) == 1 && rule.Ports[0].Port.IntValue() == 2379
			}
		}
	}
	if !found {
		t.Errorf("egress %+v lacks 10.96.5.0/24 port 2379", np.Spec.Egress)
	}
	config := objs["ConfigMap/beta-config"].(*corev1.ConfigMap)
	if config.Data["vcluster-name"] != "beta" {
		t.Errorf("the etcd prefix /podbridge/$(POD_NAMESPACE)/$(VCLUSTER_NAME) reads vcluster-name %q", config.Data["vcluster-name"])
	}
}

// The default package is the base: no component leaks into it.
func TestRenderKineHasNoSharedPKI(t *testing.T) {
	_, sts := typedAll(t, testOptions("alpha"))
	if _, ok := sts.Spec.Template.Annotations["podbridge.io/pki-secret"]; ok {
		t.Error("the kine package has the shared PKI annotation")
	}
	if init := containerNamed(sts.Spec.Template.Spec, "init"); slices.ContainsFunc(init.Args, func(a string) bool { return strings.HasPrefix(a, "--pki") }) {
		t.Errorf("init's arguments %v in the kine package", init.Args)
	}
}

// cert-manager mode: Issuers and Certificates named after the cluster,
// each Certificate's issuer rendered, the Secrets they write those init
// reads, the serving certificate naming what init checks, the Secrets
// labelled for delete; init reads and makes none.
func TestRenderCertManager(t *testing.T) {
	o := testOptions("alpha")
	o.Certificates = IssuerCertManager
	objects, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	issuers := map[string]*unstructured.Unstructured{}
	certificates := map[string]*unstructured.Unstructured{}
	for _, obj := range objects {
		switch obj.GetKind() {
		case "Issuer":
			issuers[obj.GetName()] = obj
		case "Certificate":
			certificates[obj.GetName()] = obj
		}
	}
	var secrets []string
	for name, cert := range certificates {
		issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
		if issuers[issuer] == nil {
			t.Errorf("Certificate %s: issuer %s is not rendered", name, issuer)
		}
		secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		if secret != name {
			t.Errorf("Certificate %s writes Secret %s: init expects the Certificate's name (annotation %s)", name, secret, CertManagerCertificateAnnotation)
		}
		secrets = append(secrets, secret)
		labels, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "secretTemplate", "labels")
		if labels[LabelInstance] != "alpha" || labels[LabelPartOf] != PartOfValue {
			t.Errorf("Certificate %s: its Secret's labels %v, want the instance's (delete finds it by them)", name, labels)
		}
		isCA, _, _ := unstructured.NestedBool(cert.Object, "spec", "isCA")
		rotation, _, _ := unstructured.NestedString(cert.Object, "spec", "privateKey", "rotationPolicy")
		if (isCA || name == "alpha-pki-service-account") && rotation != "Never" {
			t.Errorf("Certificate %s: key rotation %q: a new key ends every token or kubeconfig it signed", name, rotation)
		}
	}
	slices.Sort(secrets)
	p := PKISecret("alpha")
	if want := []string{p + "-apiserver", p + "-ca", p + "-client-ca", p + "-service-account"}; !slices.Equal(secrets, want) {
		t.Errorf("cert-manager writes %v, want %v", secrets, want)
	}
	if ca, _, _ := unstructured.NestedString(issuers[p+"-ca"].Object, "spec", "ca", "secretName"); ca != p+"-ca" {
		t.Errorf("the CA Issuer reads Secret %s", ca)
	}
	serving := certificates[p+"-apiserver"]
	dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	ips, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "ipAddresses")
	if want := servingDNSNames("alpha-apiserver", "tenants", "cluster.local"); !slices.Equal(dns, want) {
		t.Errorf("serving dnsNames %v, want %v", dns, want)
	}
	if want := []string{"127.0.0.1", "10.0.3.7"}; !slices.Equal(ips, want) {
		t.Errorf("serving ipAddresses %v, want %v", ips, want)
	}
	if issuer, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name"); issuer != p+"-ca" {
		t.Errorf("the serving certificate's issuer %s, want the CA %s-ca (tenants trust that one)", issuer, p)
	}
	_, sts := typedAll(t, o)
	if got := ptr.Deref(sts.Spec.Replicas, 0); got != 1 || containerNamed(sts.Spec.Template.Spec, "kine") == nil || len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("cert-manager with kine: %d replicas, want one with kine and its claim", got)
	}
	init := containerNamed(sts.Spec.Template.Spec, "init")
	for _, want := range []string{"--pki-secret=$(PKI_SECRET)", "--pki-issuer=cert-manager"} {
		if !slices.Contains(init.Args, want) {
			t.Errorf("init's arguments %v lack %s", init.Args, want)
		}
	}
}

func TestValidateOptionsNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"replicas with kine", func(o *Options) { o.Replicas = 2 }, "--replicas"},
		{"etcd flags with kine", func(o *Options) { o.Etcd.Servers = []string{"https://10.0.0.1:2379"} }, "--store"},
		{"unknown store", func(o *Options) { o.Store = "mysql" }, "--store"},
		{"unknown issuer", func(o *Options) { o.Certificates = "vault" }, "--certificates"},
		{"etcd without servers", func(o *Options) { *o = etcdOptions(o.Name); o.Etcd.Servers = nil }, "--etcd-servers"},
		{"plain http", func(o *Options) { *o = etcdOptions(o.Name); o.Etcd.Servers = []string{"http://10.0.0.1:2379"} }, "--etcd-servers[0]"},
		{"no port", func(o *Options) { *o = etcdOptions(o.Name); o.Etcd.Servers = []string{"https://10.0.0.1"} }, "--etcd-servers[0]"},
		{"a path", func(o *Options) { *o = etcdOptions(o.Name); o.Etcd.Servers = []string{"https://10.0.0.1:2379/x"} }, "--etcd-servers[0]"},
		{"a second URL in one", func(o *Options) {
			*o = etcdOptions(o.Name)
			o.Etcd.Servers = []string{"https://10.0.0.1:2379,http://10.0.0.2:2379"}
		}, "--etcd-servers[0]"},
		{"a name without egress", func(o *Options) {
			*o = etcdOptions(o.Name)
			o.Etcd.Servers = []string{"https://etcd.platform.svc:2379"}
		}, "--etcd-egress"},
		{"bad secret", func(o *Options) { *o = etcdOptions(o.Name); o.Etcd.ClientSecret = "Not_A_Name" }, "--etcd-client-secret"},
		{"negative replicas", func(o *Options) { *o = etcdOptions(o.Name); o.Replicas = -1 }, "--replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions("alpha")
			tc.change(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	for _, o := range []Options{etcdOptions("alpha"), func() Options { o := testOptions("alpha"); o.Certificates = IssuerCertManager; return o }()} {
		if err := o.Validate(); err != nil {
			t.Errorf("valid options refused: %v", err)
		}
	}
}
