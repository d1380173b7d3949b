package integration

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

// The allow-lists the integration environment runs with (main_test.go).
const (
	allowedRuntimeClass   = "tenant-sandbox"
	allowedRuntimeHandler = "runsc"
	allowedCSIDriver      = "tenant.csi.example.com"
	allowedStorageClass   = "tenant-fast"
	// allowedTolerationKey is the one taint key beyond Kubernetes' own
	// that tenants may tolerate; allowedCSIAttribute the one attribute of
	// allowedCSIDriver they may set.
	allowedTolerationKey = "example.com/dedicated"
	allowedCSIAttribute  = "mode"
)

func withVolume(src corev1.VolumeSource) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v", VolumeSource: src})
	}
}

func withTolerations(tolerations ...corev1.Toleration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, tolerations...) }
}

func withNodeAffinity(a *corev1.NodeAffinity) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Affinity = &corev1.Affinity{NodeAffinity: a} }
}

func nodeNamed(name string) []corev1.NodeSelectorRequirement {
	return []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{name}}}
}

func withClaim(mutate func(*corev1.PersistentVolumeClaimTemplate)) func(*corev1.Pod) {
	tmpl := &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{
		StorageClassName: ptr.To(allowedStorageClass),
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}}
	mutate(tmpl)
	return withVolume(corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: tmpl}})
}

// An adversarial corpus against the host-side gate, through the real
// virtual apiserver: what acts with the shared host namespace's rights
// (runtime classes, inline CSI drivers, generic ephemeral volumes; claims
// have their own in claims_test.go)
// and the Pod Security level. Each refused case names the field and leaves
// nothing on the host; each admitted case's host pod holds nothing the
// policy forbids.
func TestGateAttacksAtCreate(t *testing.T) {
	ns := namespace(t)
	first := func(p *corev1.Pod) *corev1.Container { return &p.Spec.Containers[0] }
	// Every runtime class the cases name exists in the virtual cluster, so
	// its RuntimeClass admission (which refuses a pod naming one that does
	// not) lets the pods through to podbridge's gate; the allowed one
	// exists on the host too, whose RuntimeClass admission sees host pods.
	for name, handler := range map[string]string{allowedRuntimeClass: "runc", "runc-privileged": "runc", "kata": "kata"} {
		createRuntimeClass(t, virtualClient, name, handler, nil)
	}
	createRuntimeClass(t, hostClient, allowedRuntimeClass, allowedRuntimeHandler, nil)
	refused := []struct {
		name   string
		mutate func(*corev1.Pod)
		field  string
	}{
		{"runtime class not allowed", func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("runc-privileged") }, "spec.runtimeClassName"},
		{"runtime class allow-list named", func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("kata") }, allowedRuntimeClass},
		{"inline CSI driver not allowed", withVolume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "hostpath.csi.k8s.io"}}), "spec.volumes[0].csi.driver"},
		{"inline CSI secrets store", withVolume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io"}}), allowedCSIDriver},
		{"ephemeral storage class not allowed", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.StorageClassName = ptr.To("premium") }), "volumeClaimTemplate.spec.storageClassName"},
		{"ephemeral default storage class", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.StorageClassName = nil }), "storageClassName"},
		{"ephemeral empty storage class", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.StorageClassName = ptr.To("") }), "storageClassName"},
		{"ephemeral volumeName", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Spec.VolumeName = "pv-of-another-tenant" }), "volumeClaimTemplate.spec.volumeName"},
		{"ephemeral dataSource", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "db-x-other-x-vc"}
		}), "volumeClaimTemplate.spec.dataSource"},
		{"ephemeral dataSourceRef to another namespace", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "db", Namespace: ptr.To("victim")}
		}), "volumeClaimTemplate.spec.dataSourceRef"},
		{"ephemeral selector", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Spec.Selector = metav1LabelSelectorFor("owner", "victim")
		}), "volumeClaimTemplate.spec.selector"},
		{"ephemeral vcluster label", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Labels = map[string]string{translate.LabelVCluster: "other"}
		}), translate.LabelVCluster},
		{"ephemeral managed-by label", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Labels = map[string]string{translate.LabelManagedBy: translate.ManagedByValue}
		}), translate.LabelManagedBy},
		{"ephemeral beta storage class annotation", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) {
			c.Annotations = map[string]string{"volume.beta.kubernetes.io/storage-class": "premium"}
		}), "volume.beta.kubernetes.io/storage-class"},
		{"scheduler name", func(p *corev1.Pod) { p.Spec.SchedulerName = "tenant-scheduler" }, "spec.schedulerName"},
		{"CSI attribute naming another tenant's object", withVolume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
			Driver: allowedCSIDriver, VolumeAttributes: map[string]string{"secretProviderClass": "other-tenant-db"}}}), "spec.volumes[0].csi.volumeAttributes[secretProviderClass]"},
		{"toleration of every taint", withTolerations(corev1.Toleration{Operator: corev1.TolerationOpExists}), "spec.tolerations[0].key"},
		{"toleration of every NoExecute taint (a node being drained)", withTolerations(corev1.Toleration{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}), "spec.tolerations[0].key"},
		{"toleration of the control plane's taint", withTolerations(corev1.Toleration{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists}), "--allowed-toleration-keys"},
		{"toleration of a cordoned node", withTolerations(corev1.Toleration{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists}), "spec.tolerations[0].key"},
		{"node named in required node affinity", withNodeAffinity(&corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: nodeNamed("control-plane-1")}}}}), "nodeSelectorTerms[0].matchFields"},
		{"node named in preferred node affinity", withNodeAffinity(&corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
			{Weight: 100, Preference: corev1.NodeSelectorTerm{MatchFields: nodeNamed("control-plane-1")}}}}), "--allow-node-pinning"},
		{"privileged", func(p *corev1.Pod) { first(p).SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)} }, "privileged"},
		{"privileged init container", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}
		}, "privileged"},
		{"host PID", func(p *corev1.Pod) { p.Spec.HostPID = true }, "hostPID"},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "hostNetwork"},
		{"SYS_ADMIN", func(p *corev1.Pod) {
			first(p).SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
		}, "SYS_ADMIN"},
		{"host path", withVolume(corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run"}}), "hostPath"},
		{"host port", func(p *corev1.Pod) { first(p).Ports = []corev1.ContainerPort{{ContainerPort: 22, HostPort: 2222}} }, "hostPort"},
		{"seccomp unconfined", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
		}, "seccompProfile"},
		{"AppArmor unconfined annotation", func(p *corev1.Pod) {
			p.Annotations = map[string]string{corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix + "app": "unconfined"}
		}, "AppArmor"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			pod := simplePod(ns, "gate-"+podName(tc.name))
			tc.mutate(pod)
			createRefused(t, pod, tc.field)
		})
	}

	admitted := []struct {
		name   string
		mutate func(*corev1.Pod)
	}{
		{"allowed runtime class", func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To(allowedRuntimeClass) }},
		{"allowed CSI driver", withVolume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: allowedCSIDriver}})},
		{"allowed storage class", withClaim(func(c *corev1.PersistentVolumeClaimTemplate) { c.Labels = map[string]string{"tier": "cache"} })},
		{"a claim of the pod's namespace", withVolume(corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}})},
		{"priority class outside the list", func(p *corev1.Pod) { p.Spec.PriorityClassName = "system-node-critical" }},
		{"allowed CSI attribute", withVolume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: allowedCSIDriver, VolumeAttributes: map[string]string{allowedCSIAttribute: "ro"}}})},
		{"allowed toleration", withTolerations(corev1.Toleration{Key: allowedTolerationKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})},
		{"the tolerations Kubernetes gives every pod", withTolerations(
			corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](60)},
			corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})},
		{"nodes by label", withNodeAffinity(&corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "type", Operator: corev1.NodeSelectorOpIn, Values: []string{"kwok"}}}}}}})},
	}
	for _, tc := range admitted {
		t.Run("admitted/"+tc.name, func(t *testing.T) {
			pod := simplePod(ns, "gate-ok-"+podName(tc.name))
			tc.mutate(pod)
			assertWithinAllowLists(t, pod, createContained(t, pod))
		})
	}

	t.Run("tenant runtime class named like an unallowed host class", func(t *testing.T) {
		// The tenant's own class runs under the allowed host class with its
		// handler, whatever its name: here a host class the platform does
		// not allow. Its overhead is the virtual pod's; the host's
		// RuntimeClass admission sets the host pod's from the host class.
		overhead := &nodev1.Overhead{PodFixed: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}
		createRuntimeClass(t, hostClient, "host-privileged", "runc", nil)
		createRuntimeClass(t, virtualClient, "host-privileged", allowedRuntimeHandler, overhead)
		pod := simplePod(ns, "gate-ok-tenant-runtime-class")
		pod.Spec.RuntimeClassName = ptr.To("host-privileged")
		host := createContained(t, pod)
		if got := ptr.Deref(host.Spec.RuntimeClassName, ""); got != allowedRuntimeClass {
			t.Errorf("host pod's runtime class = %q, want the allowed class of handler %s, %s", got, allowedRuntimeHandler, allowedRuntimeClass)
		}
		if host.Spec.Overhead != nil {
			t.Errorf("host pod's overhead = %v, want the host class's (none)", host.Spec.Overhead)
		}
		if !pod.Spec.Overhead.Cpu().Equal(resource.MustParse("10m")) {
			t.Errorf("virtual pod's overhead = %v, want its class's", pod.Spec.Overhead)
		}
	})
}

// podName makes a case name a valid pod name (lower case, no spaces), so
// a refusal comes from podbridge, not from name validation.
func podName(caseName string) string {
	return strings.Trim(invalidInName.ReplaceAllString(strings.ToLower(caseName), "-"), "-")
}

var invalidInName = regexp.MustCompile(`[^a-z0-9]+`)

// createRuntimeClass creates the RuntimeClass name of handler in c for the
// test.
func createRuntimeClass(t *testing.T, c client.Client, name, handler string, overhead *nodev1.Overhead) {
	t.Helper()
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler, Overhead: overhead}
	if err := c.Create(context.Background(), rc); err != nil {
		t.Fatalf("creating RuntimeClass %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background(), rc); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting RuntimeClass %s: %v", name, err)
		}
	})
}

// assertWithinAllowLists checks a host pod against the integration
// environment's allow-lists, independently of the gate's code.
func assertWithinAllowLists(t *testing.T, virtual, host *corev1.Pod) {
	t.Helper()
	s := &host.Spec
	if s.RuntimeClassName != nil && *s.RuntimeClassName != allowedRuntimeClass {
		t.Errorf("host pod runs with runtime class %q", *s.RuntimeClassName)
	}
	if s.PriorityClassName != "" && !slices.Contains(env.Options.Translate.PriorityClasses, s.PriorityClassName) {
		t.Errorf("host pod has priority class %q", s.PriorityClassName)
	}
	for _, tol := range s.Tolerations {
		if tol.Key == "" || !slices.Contains([]string{allowedTolerationKey, corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable}, tol.Key) &&
			!slices.ContainsFunc(env.Options.Translate.Tolerations, func(p corev1.Toleration) bool { return p.Key == tol.Key }) {
			t.Errorf("host pod tolerates taint key %q", tol.Key)
		}
	}
	if a := s.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			if len(term.MatchFields) > 0 {
				t.Errorf("host pod names a node: %v", term.MatchFields)
			}
		}
	}
	for _, v := range s.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil && !slices.ContainsFunc(virtual.Spec.Volumes, func(vv corev1.Volume) bool {
			return vv.PersistentVolumeClaim != nil && translate.HostClaimName(vv.PersistentVolumeClaim.ClaimName, virtual.Namespace, env.Options.Translate.VCluster) == v.PersistentVolumeClaim.ClaimName
		}):
			t.Errorf("host pod mounts claim %q, no host claim of its virtual pod's namespace", v.PersistentVolumeClaim.ClaimName)
		case v.CSI != nil && v.CSI.Driver != allowedCSIDriver:
			t.Errorf("host pod uses CSI driver %q", v.CSI.Driver)
		case v.CSI != nil && len(v.CSI.VolumeAttributes) > 0 && (len(v.CSI.VolumeAttributes) > 1 || v.CSI.VolumeAttributes[allowedCSIAttribute] == ""):
			t.Errorf("host pod's CSI volume sets attributes %v", v.CSI.VolumeAttributes)
		case v.Ephemeral != nil:
			c := v.Ephemeral.VolumeClaimTemplate
			if c.Spec.StorageClassName == nil || *c.Spec.StorageClassName != allowedStorageClass || c.Spec.VolumeName != "" ||
				c.Spec.DataSource != nil || c.Spec.DataSourceRef != nil || c.Spec.Selector != nil {
				t.Errorf("host pod's ephemeral claim %s reaches past the allow-list: %+v", v.Name, c.Spec)
			}
			for k := range c.Labels {
				if translate.IsReserved(k) || k == translate.LabelManagedBy {
					t.Errorf("host pod's ephemeral claim carries podbridge's label %s", k)
				}
			}
		}
	}
}

// The attack of issue 12: the tenant removes podbridge's registration
// from its own apiserver, then adds a privileged ephemeral container
// (kubectl debug --profile=sysadmin) that its apiserver, without the
// webhook, stores. The reflector's gate refuses it: the host pod never gets
// it, and the virtual pod gets a Warning event and a False
// podbridge.io/HostSync condition naming the violation. The webhook is
// stopped meanwhile, so its keeper cannot restore the registration (it
// does within ~50 ms) and the attack reaches the reflector every run.
//
// No realistic later change passes the gate here (the apiserver lets
// ephemeral containers only be added), so the condition's clearing is
// reflector/gate_test.go's.
func TestGateRefusesEphemeralContainerPastAdmission(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "debug-target")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod = waitRunningBound(t, pod)
	webhookDown(t)

	debugger := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: "busybox", Stdin: true, TTY: true,
		SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
	}}
	// The virtual apiserver may call the (stopped) webhook a moment after
	// the deletion, until its informer sees it; those calls fail.
	eventually(t, 20*time.Second, "the ephemeral container stored without podbridge's webhook", func(ctx context.Context) (bool, string) {
		err := updateVirtualPod(ctx, pod, "ephemeralcontainers", func(p *corev1.Pod) {
			if len(p.Spec.EphemeralContainers) == 0 {
				p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, debugger)
			}
		})
		return err == nil, fmt.Sprint(err)
	})

	// Pod Security names the container and its field, not a path.
	namesField := func(msg string) bool {
		return strings.Contains(msg, `container "debugger"`) && strings.Contains(msg, "securityContext.privileged")
	}
	refused := func(c *corev1.PodCondition) bool {
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == translate.ReasonHostSyncRefused && namesField(c.Message)
	}
	eventually(t, 20*time.Second, "the virtual pod's HostSync condition naming the field", func(ctx context.Context) (bool, string) {
		got := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
			return false, err.Error()
		}
		c := hostSyncCondition(got)
		return refused(c), fmt.Sprintf("%+v", c)
	})
	if msg := waitEvent(t, pod, translate.ReasonHostSyncRefused); !namesField(msg) {
		t.Errorf("event does not name the field: %s", msg)
	}
	// The condition is written by the reconcile that refused; it and every
	// later one (the condition's own write brings the pair back) left the
	// host pod alone.
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Spec.EphemeralContainers) > 0 {
		t.Fatalf("the host pod got ephemeral containers: %+v", host.Spec.EphemeralContainers)
	}

	// Status reflection goes on and keeps the condition: a host status
	// change reaches the virtual pod, which still says HostSync False.
	restarts := host.Status.ContainerStatuses[0].RestartCount
	host.Status.ContainerStatuses[0].RestartCount = restarts + 1
	if err := hostClient.Status().Update(ctx, host); err != nil {
		t.Fatalf("updating the host pod's status: %v", err)
	}
	eventually(t, 20*time.Second, "the host's status on the virtual pod, HostSync still False", func(ctx context.Context) (bool, string) {
		got := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
			return false, err.Error()
		}
		if len(got.Status.ContainerStatuses) == 0 {
			return false, "no container statuses"
		}
		c := hostSyncCondition(got)
		return got.Status.ContainerStatuses[0].RestartCount == restarts+1 && refused(c),
			fmt.Sprintf("restarts %d, condition %+v", got.Status.ContainerStatuses[0].RestartCount, c)
	})
	if host, err = getHostPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if len(host.Spec.EphemeralContainers) > 0 {
		t.Fatalf("the host pod got ephemeral containers: %+v", host.Spec.EphemeralContainers)
	}
}

// The host namespace enforces the Pod Security level itself: a pod that
// reaches the host without podbridge is refused there too.
func TestHostNamespaceEnforcesPodSecurity(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{}
	if err := hostClient.Get(ctx, client.ObjectKey{Name: env.Options.Translate.HostNamespace}, ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != env.Options.PodSecurityLevel {
		t.Fatalf("host namespace labels %v, want enforce=%s", ns.Labels, env.Options.PodSecurityLevel)
	}
	pod := simplePod(env.Options.Translate.HostNamespace, "direct-privileged")
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	err := hostClient.Create(ctx, pod, client.DryRunAll)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "privileged") {
		t.Fatalf("privileged pod created directly in the host namespace: %v, want 403 from PodSecurity", err)
	}
}

func hostSyncCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == translate.ConditionHostSync {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// webhookDown stops podbridge's webhook and deletes its
// MutatingWebhookConfiguration from the virtual cluster, as a tenant may:
// pods are admitted without podbridge until the test ends. Then the
// webhook starts again, restores the registration, and the test waits
// until pod creates pass through it again.
func webhookDown(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := env.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.StartWebhook(); err != nil {
			t.Errorf("starting the webhook again: %v", err)
			return
		}
		eventually(t, 30*time.Second, "pod creates through podbridge's webhook again", func(ctx context.Context) (bool, string) {
			probe := simplePod("default", "registration-probe")
			if err := virtualClient.Create(ctx, probe, client.DryRunAll); err != nil {
				return false, err.Error()
			}
			return probe.Annotations[translate.AnnotationSyncID] != "", "admitted without podbridge"
		})
	})
	reg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "podbridge"}}
	if err := virtualClient.Delete(ctx, reg); err != nil {
		t.Fatalf("deleting podbridge's registration: %v", err)
	}
}

// Tolerations may be added to a running pod, and the placement rules are
// checked again on every update: a toleration of the control plane's taint
// added later never reaches the host pod, and the tenant is told.
func TestTolerationAddedByUpdateRefused(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	pod := simplePod(ns, "tolerate-later")
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod = waitRunningBound(t, pod)
	controlPlane := corev1.Toleration{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	if err := updateVirtualPod(ctx, pod, "", func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, controlPlane) }); err != nil {
		t.Fatalf("adding a toleration: %v", err)
	}
	refused := waitHostSyncRefused(t, pod, "node-role.kubernetes.io/control-plane")
	if c := hostSyncCondition(refused); !strings.Contains(c.Message, "--allowed-toleration-keys") {
		t.Errorf("the refusal does not name the flag: %s", c.Message)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(host.Spec.Tolerations, func(tol corev1.Toleration) bool { return tol.Key == controlPlane.Key }) {
		t.Fatalf("the host pod tolerates the control plane's taint: %v", host.Spec.Tolerations)
	}
}
