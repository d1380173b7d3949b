// Package translate holds podbridge's pure mappings between a virtual cluster
// and its host: names in both directions, a virtual pod to the host pod that
// runs it, and host status back to the virtual pod; a virtual Service to
// its host Service, with a selector scoped to the virtual cluster and
// namespace, and the host's allocation back (service.go).
//
// Nothing here talks to an apiserver, reads a clock or logs: every function
// takes what it needs as arguments, so the mappings are tested with golden
// files and fuzzing, and the webhook and reflector stay thin.
package translate
