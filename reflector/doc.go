// Package reflector keeps each virtual pod and the host pod that runs it
// one: host status is copied to the virtual pod, the virtual pod is bound to
// a virtual Node mirroring the host node, deletion is carried both ways, the
// updates Kubernetes allows on a pod are carried down to the host pod, and
// host pods whose admission failed after the webhook said yes are removed.
// Virtual nodes are the host nodes tenants may use, and any other while the
// virtual cluster has host pods on it; the host decides, never a binding or
// Node of the tenant's.
//
// It is level-based: every reconcile gathers what the caches hold now (a
// pair's virtual pod and every host pod that names it, a pod's token
// Secrets, a copy and its original), decides with a pure function
// (decidePair, decideNode, decideTokens, decideCopy) and writes what the decision says;
// a full pass at start-up and every resync period enqueues every pair,
// copy, token and node. Orphans are host pods no stored virtual pod claims
// (translate.Claims, the definition `podbridge check` uses too), whatever
// their name.
//
// Process-local memory only saves requests or waits; a restarted process
// reaches the same state, later or with more reads:
//   - writtenOver: the resourceVersions this process wrote over; a pair
//     whose cache still shows one is skipped until its write's event comes.
//     Lost, a stale pair is acted on once more and the write conflicts.
//   - gonePods: the sync IDs and UIDs of virtual pods seen deleted; their
//     host pods and token Secrets go at once. Lost, they go after the
//     orphan grace period, once a live read confirms the pod is gone.
//   - lastSeen: a deleted host pod's final state, until its virtual pod is
//     ended; it saves the live read that confirms the host pod is gone and
//     carries an eviction reason that only the delete event showed. Lost,
//     the live read is made and the final status is built from the status
//     already reflected.
//   - nodeGuard.removed: nodes this process removed, which binds confirm
//     live; empty after a restart, when the cache is fresh anyway.
//
// Services (services.go) are kept the same way: decideService carries a
// stored virtual Service's changes to its host Service through the gate,
// copies the host's load-balancer status back, deletes a virtual Service
// whose host Service is gone and collects host Services no stored virtual
// Service claims by sync ID (after the orphan grace period). NetworkPolicies
// (networkpolicies.go) and PersistentVolumeClaims (claims.go) are kept the
// same way; the three share their watches, full pass and gather step
// (objectpairs.go: objectPairs) and keep their own decision and writes.
//
// The tenant's EndpointSlices of Services without a selector
// (endpointslices.go) are carried to the host the same way, keyed by
// virtual Service: decideEndpointSlices compares the host slices the gate
// allows now (policy.Gate.EndpointSlices: this virtual cluster's pod IPs and
// the platform's ranges only) with those on the host; a host pod's change
// re-decides every Service whose slices name its address.
//
// Metrics (controller-runtime's registry): podbridge_reflector_actions_total
// by action, podbridge_reflector_reflection_lag_seconds, and the workqueue
// metrics of the "pods" and "nodes" controllers (queue depth among them).
package reflector
