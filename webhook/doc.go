// Package webhook is podbridge's mutating admission webhook for pods in the
// virtual cluster. For each pod create it decodes the pod, checks it against
// the Pod Security Standards, translates it, and creates the host pod before
// answering: the tenant's create succeeds only if the host pod exists, and
// host errors reach the tenant at once. The answer patches the virtual pod
// with its name (for generateName pods) and its sync ID. Pod updates
// (updateGuard) and ephemeral containers (ephemeralContainersCheck) are
// checked by handlers of their own, each at its own path and refusing
// every other kind of request.
//
// Services have two paths of their own (serviceMutator): a create makes
// the host Service and pins the addresses and node ports the host
// allocated on the virtual Service; an update writes the change to the
// host Service first. Both pass policy.Gate.CheckService.
package webhook
