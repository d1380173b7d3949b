// Package reliability injects faults into a running podbridge and asserts
// its invariant afterwards (issue #7): the host apiserver stopped during a
// burst of creates, the webhook and the reflector killed with SIGKILL and
// restarted, the virtual apiserver restarted, a slow host connection, and
// replicas of both components killed under load.
//
// Everything is real and on loopback: the control planes of
// testbed/controlplane, podbridge built from cmd/podbridge and run as
// separate processes (so they can be killed), and toxiproxy, in process, for
// latency. Each test starts its own host and virtual clusters, counts what
// it did (faults injected, creates attempted and their outcomes, violations
// of check's invariant) and prints a summary line; the run ends with a table
// of every test's counts.
//
// The tests take minutes, so they are behind the build tag "reliability":
//
//	make test-reliability
package reliability
