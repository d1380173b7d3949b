package webhook

import "github.com/podbridge/podbridge/policy"

// SecurityPolicy is the Pod Security part of the host-side gate; it lives
// in package policy, which the reflector shares.
type SecurityPolicy = policy.SecurityPolicy

// NewSecurityPolicy returns the policy for level (see policy.NewSecurityPolicy).
func NewSecurityPolicy(level string) (*SecurityPolicy, error) {
	return policy.NewSecurityPolicy(level)
}
