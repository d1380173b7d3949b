package policy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podbridge/podbridge/translate"
)

// BenchmarkGateCheck is the gate's cost per admitted pod: a pod with the
// tolerations every pod gets, a token and a ConfigMap volume.
func BenchmarkGateCheck(b *testing.B) {
	gate := testGate(b)
	v := virtualPod()
	v.Spec.Tolerations = []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	}
	v.Spec.Volumes = []corev1.Volume{
		{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}},
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}}}},
	}
	host, _, errs := translate.HostPod(v, testConfig, "sync")
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		if errs := gate.Check(v, host); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}
