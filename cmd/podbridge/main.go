// Command podbridge runs a virtual cluster's pods on a host cluster.
//
//	podbridge webhook    serve the mutating admission webhook
//	podbridge reflector  reflect host pods back into the virtual cluster
//	podbridge check      verify the invariant between the two clusters
//	podbridge create     put a virtual cluster on a host (also connect, list, delete)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

var commands = map[string]struct {
	summary string
	run     func(ctx context.Context, args []string) error
}{
	"webhook":   {"serve the mutating admission webhook for virtual pods", runWebhook},
	"reflector": {"reflect host pod status, nodes and deletion into the virtual cluster", runReflector},
	"check":     {"verify that every virtual pod has exactly one host pod, and no host pod is orphaned", runCheck},
	"create":    {"create a virtual cluster NAME in host namespace -n and print its kubeconfig", runCreate},
	"connect":   {"print a virtual cluster's kubeconfig, through a port-forward unless --server", runConnect},
	"list":      {"list the virtual clusters on the host", runList},
	"delete":    {"delete a virtual cluster and everything of it on the host", runDelete},
	// The control-plane pod's init container (manifests/virtualcluster).
	"vcluster-init": {"prepare a virtual cluster's certificates and kubeconfigs, apply podbridge's grants in it, keep the apiserver's certificate copies current (its control-plane pod's init, rbac and certs containers)", runVClusterInit},
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]].run == nil {
		usage()
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "podbridge %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// run runs command until it ends or the process is asked to stop.
func run(command string, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return commands[command].run(ctx, args)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: podbridge COMMAND [flags]\n\ncommands:")
	for _, name := range []string{"create", "connect", "list", "delete", "webhook", "reflector", "check", "vcluster-init"} {
		fmt.Fprintf(os.Stderr, "  %-14s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'podbridge COMMAND -h' for a command's flags.")
}

// parse parses args into fs, treating -h as a successful request for help.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}
