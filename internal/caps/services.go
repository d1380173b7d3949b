package caps

import "time"

// NewHostServices returns a counter for a cap of limit host Services (0:
// no cap), kept as host pods are: from an informer of the
// virtual cluster's host Services, with creates admitted and not yet seen
// held in memory.
func NewHostServices(limit int) *HostObjects {
	return &HostObjects{Max: limit, flag: FlagMaxHostServices, kind: "host Service", seen: map[string]bool{}, reserved: map[string]time.Time{}, now: time.Now}
}

// NewHostNetworkPolicies returns a counter for a cap of limit host
// NetworkPolicies (0: no cap), kept as host Services are.
func NewHostNetworkPolicies(limit int) *HostObjects {
	return &HostObjects{Max: limit, flag: FlagMaxHostNetworkPolicies, kind: "host NetworkPolicy", seen: map[string]bool{}, reserved: map[string]time.Time{}, now: time.Now}
}
