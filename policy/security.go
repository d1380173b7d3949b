package policy

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
)

// OriginPodSecurity marks the gate's errors that come from the Pod Security
// Standards, so callers can answer them as pod-security-admission does (403).
const OriginPodSecurity = "podSecurity"

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

// ValidateLevel refuses the level "privileged" for podbridge's components:
// the host would run whatever a tenant sends. Both the webhook and the
// reflector check their configured level with it.
func ValidateLevel(path *field.Path, level string) field.ErrorList {
	if level == string(psaapi.LevelPrivileged) {
		return field.ErrorList{field.Forbidden(path, "privileged would let tenants escape onto the host")}
	}
	return nil
}

// Level is the policy's level ("baseline", say).
func (p *SecurityPolicy) Level() string { return string(p.level.Level) }

// Check returns "" when pod meets the level, else a message naming each
// violation the way pod-security-admission does.
func (p *SecurityPolicy) Check(pod *corev1.Pod) string {
	return p.message(p.violations(pod))
}

func (p *SecurityPolicy) violations(pod *corev1.Pod) []string {
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
	return violations
}

func (p *SecurityPolicy) message(violations []string) string {
	if len(violations) == 0 {
		return ""
	}
	return fmt.Sprintf("violates PodSecurity %q: %s", p.level.String(), strings.Join(violations, ", "))
}

// errors checks the pods (the virtual pod as the tenant wrote it and the
// host pod as podbridge would write it) and returns one error at spec
// naming each distinct violation, or none. The library names the
// containers and fields in its details; it reports no paths.
func (p *SecurityPolicy) errors(pods ...*corev1.Pod) field.ErrorList {
	var all []string
	seen := map[string]bool{}
	for _, pod := range pods {
		if pod == nil {
			continue
		}
		for _, v := range p.violations(pod) {
			if !seen[v] {
				seen[v] = true
				all = append(all, v)
			}
		}
	}
	if len(all) == 0 {
		return nil
	}
	err := field.Forbidden(field.NewPath("spec"), p.message(all))
	err.Origin = OriginPodSecurity
	return field.ErrorList{err}
}
