// Package policy holds podbridge's host-side gate: the one check every
// write of a host pod passes, in the webhook (creates, ephemeral
// containers) and in the reflector (updates, resizes, ephemeral
// containers, gate release) alike. The tenant owns the virtual apiserver's
// admission chain, so what reaches the host is decided here, in the
// process that writes it, from podbridge's own configuration: the Pod
// Security level, podbridge's own rules, and the platform's allow-lists of
// what acts with the host namespace's rights (priority and runtime classes,
// inline CSI drivers, storage classes of generic ephemeral volumes). Host
// Services pass CheckService: every ServiceSpec field is classified
// (serviceSpecFields), NodePort and LoadBalancer are allow-listed. A
// tenant's EndpointSlices of a Service without a selector pass
// EndpointSlices: only this virtual cluster's pod IPs and the platform's
// ranges reach the host, every field classified (endpointSliceFields).
//
// The package is pure: no clients, no clocks. Errors name the virtual
// pod's fields as the tenant wrote them.
package policy
