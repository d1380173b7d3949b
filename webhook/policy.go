package webhook

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
)

// SecurityPolicy checks pods against one Pod Security Standards level with
// the pod-security-admission library's own checks.
type SecurityPolicy struct {
	level     psaapi.LevelVersion
	evaluator psapolicy.Evaluator
}

// NewSecurityPolicy returns a policy for level ("privileged", "baseline" or
// "restricted") at the latest version of the standards.
func NewSecurityPolicy(level string) (*SecurityPolicy, error) {
	parsed, err := psaapi.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("pod security level: %w", err)
	}
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		return nil, fmt.Errorf("building pod security evaluator: %w", err)
	}
	return &SecurityPolicy{level: psaapi.LevelVersion{Level: parsed, Version: psaapi.LatestVersion()}, evaluator: evaluator}, nil
}

// Check returns "" when pod meets the level, else a message naming each
// violation the way pod-security-admission does.
func (p *SecurityPolicy) Check(pod *corev1.Pod) string {
	var violations []string
	for _, result := range p.evaluator.EvaluatePod(p.level, &pod.ObjectMeta, &pod.Spec) {
		if result.Allowed {
			continue
		}
		v := result.ForbiddenReason
		if result.ForbiddenDetail != "" {
			v += " (" + result.ForbiddenDetail + ")"
		}
		violations = append(violations, v)
	}
	if len(violations) == 0 {
		return ""
	}
	return fmt.Sprintf("violates PodSecurity %q: %s", p.level.String(), strings.Join(violations, ", "))
}
