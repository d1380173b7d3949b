// Command podbridge runs a virtual cluster's pods on a host cluster.
//
//	podbridge webhook    serve the mutating admission webhook
//	podbridge reflector  reflect host pods back into the virtual cluster
//	podbridge check      verify the invariant between the two clusters
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
	for _, name := range []string{"webhook", "reflector", "check"} {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", name, commands[name].summary)
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
