package policy

import (
	"encoding/json"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"

	"github.com/podbridge/podbridge/translate"
)

// FuzzGateOverUpdates drives a virtual pod through creation and a
// sequence of updates (ephemeral containers, annotations, images and
// tolerations, resizes, gate release), with translate's own functions, as
// the webhook and the reflector do. Every host pod the gate accepts is
// checked again, independently: the Pod Security evaluator on both pods,
// and the allow-lists and volume rules written out here a second time.
func FuzzGateOverUpdates(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"x","namespace":"y"},"spec":{"containers":[{"name":"c","image":"i"}]}}`),
		[]byte{0, 1, 2, 3, 4}, []byte(`{"name":"dbg","image":"b","securityContext":{"privileged":true}}`), []byte(`unconfined`))
	f.Add([]byte(`{"metadata":{"name":"x","namespace":"y"},"spec":{"runtimeClassName":"gvisor","volumes":[{"name":"v","ephemeral":{"volumeClaimTemplate":{"spec":{"storageClassName":"fast"}}}}],"containers":[{"name":"c","image":"i"}]}}`),
		[]byte{0, 0, 2}, []byte(`{"name":"dbg","image":"b","securityContext":{"capabilities":{"add":["SYS_ADMIN"]}}}`), []byte(`runtime/default`))
	f.Add([]byte(`{"metadata":{"name":"x","namespace":"y"},"spec":{"hostPID":true,"volumes":[{"name":"c","csi":{"driver":"other"}},{"name":"p","persistentVolumeClaim":{"claimName":"d"}}],"containers":[{"name":"c","image":"i"}]}}`),
		[]byte{1}, []byte(`{}`), []byte(`localhost/x`))
	f.Add([]byte(`{"metadata":{"name":"x","namespace":"y"},"spec":{"tolerations":[{"operator":"Exists"}],"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":["n"]}]}]}}},"volumes":[{"name":"t","projected":{"sources":[{"serviceAccountToken":{"path":"a","audience":"1"}},{"serviceAccountToken":{"path":"b","audience":"2"}},{"serviceAccountToken":{"path":"c","audience":"3"}}]}},{"name":"c","csi":{"driver":"secrets-store.csi.k8s.io","volumeAttributes":{"secretProviderClass":"x"}}}],"containers":[{"name":"c","image":"i"}]}}`),
		[]byte{2, 2}, []byte(`{}`), []byte(`node-role.kubernetes.io/control-plane`))
	gate := testGate(f)
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		f.Fatal(err)
	}
	level := psaapi.LevelVersion{Level: psaapi.LevelBaseline, Version: psaapi.LatestVersion()}
	f.Fuzz(func(t *testing.T, podJSON, ops, ephemeralJSON, annotation []byte) {
		virtual := &corev1.Pod{}
		if json.Unmarshal(podJSON, virtual) != nil || len(ops) > 16 || len(virtual.Spec.Containers) == 0 {
			return
		}
		virtual.Annotations = nil // podbridge's own keys are translate's to refuse
		host, _, errs := translate.HostPod(virtual, testConfig, "sync")
		if len(errs) > 0 {
			return
		}
		accept := func(updated *corev1.Pod) bool {
			if len(gate.Check(virtual, updated)) > 0 {
				return false
			}
			checkAccepted(t, evaluator, level, virtual, updated)
			host = updated
			return true
		}
		if !accept(host) {
			return
		}
		virtual.UID = "uid"
		for i, op := range ops {
			virtual = virtual.DeepCopy()
			switch op % 5 {
			case 0: // kubectl debug: an ephemeral container
				ec := corev1.EphemeralContainer{}
				if json.Unmarshal(ephemeralJSON, &ec) != nil {
					continue
				}
				ec.Name += string(rune('a' + i))
				virtual.Spec.EphemeralContainers = append(virtual.Spec.EphemeralContainers, ec)
				ephemeral, errs := translate.HostEphemeralContainers(virtual, testConfig)
				if len(errs) > 0 {
					continue
				}
				updated := host.DeepCopy()
				updated.Spec.EphemeralContainers = ephemeral
				accept(updated)
			case 1: // an annotation Pod Security reads
				if virtual.Annotations == nil {
					virtual.Annotations = map[string]string{}
				}
				virtual.Annotations[corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix+virtual.Spec.Containers[0].Name] = string(annotation)
				if updated, changed := translate.HostPodUpdate(virtual, host, testConfig, nil); changed {
					accept(updated)
				}
			case 2: // images and tolerations
				virtual.Spec.Containers[0].Image = string(annotation)
				virtual.Spec.Tolerations = append(virtual.Spec.Tolerations, corev1.Toleration{Key: string(annotation), Operator: corev1.TolerationOpExists})
				if updated, changed := translate.HostPodUpdate(virtual, host, testConfig, nil); changed {
					accept(updated)
				}
			case 3: // the gate's release
				if updated, changed := translate.ReleaseHostPod(virtual, host); changed {
					accept(updated)
				}
			case 4: // a resize
				virtual.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: *resourceQuantity(i)}
				if updated, changed := translate.HostPodResize(virtual, host); changed {
					accept(updated)
				}
			}
		}
	})
}

// checkAccepted re-checks an accepted host pod without the gate's code.
func checkAccepted(t *testing.T, evaluator psapolicy.Evaluator, level psaapi.LevelVersion, virtual, host *corev1.Pod) {
	t.Helper()
	for _, pod := range []*corev1.Pod{virtual, host} {
		for _, r := range evaluator.EvaluatePod(level, &pod.ObjectMeta, &pod.Spec) {
			if !r.Allowed {
				t.Fatalf("accepted a pod that violates Pod Security: %s (%s)", r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
	}
	s := &host.Spec
	if s.HostNetwork || s.HostPID || s.HostIPC || virtual.Spec.HostNetwork || virtual.Spec.HostPID || virtual.Spec.HostIPC {
		t.Fatal("accepted a pod in the host's namespaces")
	}
	if s.RuntimeClassName != nil && !slices.Contains(testConfig.RuntimeClasses, *s.RuntimeClassName) {
		t.Fatalf("accepted runtime class %q", *s.RuntimeClassName)
	}
	if s.PriorityClassName != "" && !slices.Contains(testConfig.PriorityClasses, s.PriorityClassName) {
		t.Fatalf("accepted priority class %q", s.PriorityClassName)
	}
	if s.ServiceAccountName != testConfig.HostServiceAccount || s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Fatal("accepted a pod with the host's service account token")
	}
	for _, tol := range virtual.Spec.Tolerations {
		if !slices.Contains([]string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable}, tol.Key) && !slices.Contains(testConfig.TolerationKeys, tol.Key) &&
			!slices.ContainsFunc(testConfig.Tolerations, func(p corev1.Toleration) bool {
				return p.MatchToleration(&tol) && p.Operator == tol.Operator && p.Value == tol.Value
			}) {
			t.Fatalf("accepted toleration of key %q", tol.Key)
		}
	}
	if a := s.Affinity; a != nil && a.NodeAffinity != nil {
		if r := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
			for _, term := range r.NodeSelectorTerms {
				if len(term.MatchFields) > 0 {
					t.Fatal("accepted a node named in node affinity")
				}
			}
		}
		for _, p := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if len(p.Preference.MatchFields) > 0 {
				t.Fatal("accepted a node named in node affinity")
			}
		}
	}
	tokenSources := map[string]bool{}
	for _, v := range virtual.Spec.Volumes {
		for _, src := range projectedSources(v) {
			if src.ServiceAccountToken != nil {
				tokenSources[v.Name+"\x00"+src.ServiceAccountToken.Audience] = true
			}
		}
	}
	if len(tokenSources) > 2 {
		t.Fatalf("accepted %d tokens, over the cap of 2", len(tokenSources))
	}
	for _, v := range s.Volumes {
		if v.CSI != nil {
			for key := range v.CSI.VolumeAttributes {
				if !slices.Contains(testConfig.CSIVolumeAttributes[v.CSI.Driver], key) {
					t.Fatalf("accepted CSI attribute %q of driver %q", key, v.CSI.Driver)
				}
			}
		}
		switch {
		case v.PersistentVolumeClaim != nil:
			t.Fatalf("accepted claim %q", v.PersistentVolumeClaim.ClaimName)
		case v.HostPath != nil || v.NFS != nil || v.ISCSI != nil || v.Image != nil:
			t.Fatalf("accepted volume %s from outside the pod", v.Name)
		case v.CSI != nil && !slices.Contains(testConfig.CSIDrivers, v.CSI.Driver):
			t.Fatalf("accepted CSI driver %q", v.CSI.Driver)
		case v.Ephemeral != nil:
			c := v.Ephemeral.VolumeClaimTemplate
			if c == nil || c.Spec.StorageClassName == nil || !slices.Contains(testConfig.StorageClasses, *c.Spec.StorageClassName) ||
				c.Spec.VolumeName != "" || c.Spec.DataSource != nil || c.Spec.DataSourceRef != nil || c.Spec.Selector != nil {
				t.Fatalf("accepted ephemeral volume %s: %+v", v.Name, c)
			}
			for k := range c.Labels {
				if translate.IsReserved(k) || k == translate.LabelManagedBy {
					t.Fatalf("accepted claim label %q", k)
				}
			}
		}
	}
}

func projectedSources(v corev1.Volume) []corev1.VolumeProjection {
	if v.Projected == nil {
		return nil
	}
	return v.Projected.Sources
}

func resourceQuantity(i int) *resource.Quantity {
	return resource.NewMilliQuantity(int64(100+i), resource.DecimalSI)
}
