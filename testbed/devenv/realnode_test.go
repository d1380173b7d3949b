package devenv

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/podbridge/podbridge/testbed/realnode"
	"github.com/podbridge/podbridge/translate"
)

func TestKeepTenantsOn(t *testing.T) {
	tolerate := corev1.Toleration{Key: realnode.TaintRealNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	platform := corev1.Toleration{Key: "platform.example/pool", Operator: corev1.TolerationOpEqual, Value: "tenants", Effect: corev1.TaintEffectNoSchedule}
	for _, tc := range []struct {
		name            string
		in              translate.Config
		wantSelector    map[string]string
		wantTolerations []corev1.Toleration
	}{{
		name:            "nothing enforced before",
		wantSelector:    map[string]string{corev1.LabelHostname: "node-a"},
		wantTolerations: []corev1.Toleration{tolerate},
	}, {
		name:            "the platform's own selector and tolerations kept",
		in:              translate.Config{NodeSelector: map[string]string{"pool": "tenants", corev1.LabelHostname: "other"}, Tolerations: []corev1.Toleration{platform}},
		wantSelector:    map[string]string{"pool": "tenants", corev1.LabelHostname: "node-a"},
		wantTolerations: []corev1.Toleration{platform, tolerate},
	}, {
		name:            "the toleration not added twice",
		in:              translate.Config{Tolerations: []corev1.Toleration{tolerate}},
		wantSelector:    map[string]string{corev1.LabelHostname: "node-a"},
		wantTolerations: []corev1.Toleration{tolerate},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.in.NodeSelector[corev1.LabelHostname]
			got := tc.in
			keepTenantsOn(&got, "node-a")
			if !apiequality.Semantic.DeepEqual(got.NodeSelector, tc.wantSelector) {
				t.Errorf("NodeSelector = %v, want %v", got.NodeSelector, tc.wantSelector)
			}
			if !apiequality.Semantic.DeepEqual(got.Tolerations, tc.wantTolerations) {
				t.Errorf("Tolerations = %v, want %v", got.Tolerations, tc.wantTolerations)
			}
			if tc.in.NodeSelector[corev1.LabelHostname] != before {
				t.Errorf("the caller's NodeSelector map was changed")
			}
		})
	}
}
