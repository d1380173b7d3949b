// Command coredns is CoreDNS built with only the plugins a test-bed
// cluster's DNS needs (make node-bins): kubernetes, hosts, cache, errors,
// health, ready, loop, reload and loadbalance. No forward and no cloud or
// external backend is compiled in, so the server answers from the
// cluster's apiserver, its hosts entries and its cache, and sends a query
// nowhere else. Kept in a module of its own so podbridge does not depend
// on CoreDNS.
//
// CoreDNS registers a plugin when its package is imported; the plugins
// run in CoreDNS's own order (dnsserver.Directives), whichever are
// compiled in. A Corefile naming a plugin not imported here (forward, for
// one) is refused at start as an unknown directive.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() { coremain.Run() }
