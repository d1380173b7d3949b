// Command podbridge-dev runs podbridge end to end on this machine, for
// trying it and for tests: a host control plane (kwok nodes, and a real
// kubelet node with --real-node) and a virtual one, with podbridge's
// webhook and reflector between them. It is the test bed's command, kept
// apart so that the production binary, cmd/podbridge, links none of the
// test bed (etcd, kwok, containerd, the real node's launchers).
//
//	podbridge-dev [flags]   (make run; make run REAL_NODE=1 adds --real-node)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/devenv"
	"github.com/podbridge/podbridge/testbed/realnode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := runDev(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podbridge-dev: %v\n", err)
		os.Exit(1)
	}
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge-dev", flag.ContinueOnError)
	o := devenv.Defaults()
	var assetsDir string
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "folder for kubeconfigs, certificates and logs; removed on exit, or by the next start after a run that was killed")
	fs.StringVar(&assetsDir, "assets-dir", "", "folder with the control-plane binaries (default: KUBEBUILDER_ASSETS, then bin/k8s/"+controlplane.KubernetesVersion+")")
	fs.StringVar(&o.Podbridge, "podbridge", "", "the production binary (cmd/podbridge) whose webhook and reflector run, as processes with the shipped control-plane pod's flags (default: podbridge beside this program, as make build and make build-dev put both in bin/, then bin/podbridge of the checkout)")
	fs.IntVar(&o.Nodes, "nodes", o.Nodes, "kwok nodes in the host cluster")
	realNode := fs.Bool("real-node", false, "also run a real kubelet node (root; `make node-bins`; installs containerd, runc, the CNI plugins and iptables with apt when absent): pods with nodeSelector "+realnode.LabelRealNode+"=true and its toleration run in real containers")
	nodeImages := fs.String("node-images", "", "image tarball of the real node (default: bin/node/images.tar of the checkout)")
	extraImages := fs.String("node-extra-images", "", "more image tarballs (comma-separated) the real node imports, for pods that name their images (the conformance harness's)")
	fs.BoolVar(&o.Translate.AllowNodePinning, "allow-node-pinning", false, "let tenants name nodes in node affinity (matchFields on metadata.name), as the webhook's and the reflector's flag of that name does")
	fs.BoolVar(&o.TenantsOnRealNode, "tenants-on-real-node", false, "with --real-node, run every tenant pod on the real node: the platform's enforced node selector names it and its enforced tolerations tolerate its taint")
	fs.Func(policy.FlagAllowedServiceTypes, "Service types tenants may create besides ClusterIP and ExternalName, comma-separated (NodePort, LoadBalancer), as the webhook's and the reflector's flag of that name does; a real node's NodePorts listen on its bridge address only", func(v string) error {
		o.Translate.ServiceTypes = nil
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.Translate.ServiceTypes = append(o.Translate.ServiceTypes, corev1.ServiceType(t))
			}
		}
		return nil
	})
	runtimeHandlers := fs.String("runtime-handlers", "", "with --real-node, runtime handlers (comma-separated) the real node offers, each runc under that name; the host gets a RuntimeClass of each name and tenants may use it (the conformance suite's RuntimeClass specs name test-handler)")
	setLogger := bindLogging(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if !*realNode && (o.TenantsOnRealNode || *extraImages != "" || *runtimeHandlers != "") {
		return errors.New("--tenants-on-real-node, --node-extra-images and --runtime-handlers need --real-node")
	}
	if *runtimeHandlers != "" {
		o.RuntimeHandlers = strings.Split(*runtimeHandlers, ",")
	}
	setLogger()
	log := ctrl.Log.WithName("dev")
	var err error
	if o.Podbridge, err = podbridgeBinary(o.Podbridge); err != nil {
		return err
	}
	// podbridge's processes log to the terminal too, as the shipped
	// pod's containers do to theirs (and to the state folder's logs/).
	o.Output = os.Stderr
	if assetsDir != "" {
		o.Assets = controlplane.NewAssets(assetsDir)
	} else if o.Assets, err = controlplane.DefaultAssets(); err != nil {
		return err
	}
	if o.StateDir, err = filepath.Abs(o.StateDir); err != nil {
		return err
	}
	if *realNode {
		if o.RealNode, err = realNodeOptions(o, *nodeImages); err != nil {
			return err
		}
		if *extraImages != "" {
			o.RealNode.ExtraImages = append(o.RealNode.ExtraImages, strings.Split(*extraImages, ",")...)
		}
		// With the hosts image there, pods with a subdomain get the hosts
		// file that names their virtual namespace, as a platform's would.
		if hosts := filepath.Join(filepath.Dir(o.RealNode.Images), "hosts.tar"); fileExists(hosts) {
			o.RealNode.ExtraImages = append(o.RealNode.ExtraImages, hosts)
			o.Translate.HostsImage = realnode.HostsImage
		}
	}
	removeOnExit := topmostMissing(o.StateDir)
	release, err := devenv.ClaimStateDir(o.StateDir, log)
	if err != nil {
		return err
	}
	defer os.RemoveAll(removeOnExit)
	defer release()

	started := time.Now()
	env, err := devenv.Start(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		log.Info("Stopping podbridge and both control planes")
		if err := env.Stop(); err != nil {
			log.Error(err, "Stopped with errors")
		}
	}()
	if err := os.WriteFile(filepath.Join(o.StateDir, "ready"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	log.Info("Ready", "after", time.Since(started).Round(100*time.Millisecond))
	fmt.Printf(`
podbridge-dev is ready: virtual cluster %q, host namespace %q.
In another terminal:

  export VIRTUAL=%[3]s/virtual.kubeconfig HOST=%[3]s/host.kubeconfig
  kubectl --kubeconfig $VIRTUAL create deployment web --image=nginx --replicas=3
  kubectl --kubeconfig $VIRTUAL get deployment,pods -o wide
  kubectl --kubeconfig $HOST get pods -A -o wide
  kubectl --kubeconfig $VIRTUAL logs deploy/web
  kubectl --kubeconfig $VIRTUAL exec deploy/web -- pwd   # refused: kwok runs no command on this machine

Logs are in %[3]s/logs. Press Ctrl-C to stop everything.
`, o.Translate.VCluster, o.Translate.HostNamespace, o.StateDir)
	if env.RealNode != nil {
		fmt.Printf(`
Real node %[1]s is Ready (node IP %[2]s). A pod runs there when it asks:

  kubectl --kubeconfig $VIRTUAL run t --image=%[3]s \
    --overrides='{"spec":{"nodeSelector":{"%[4]s":"true"},"tolerations":[{"key":"%[5]s","operator":"Exists"}]}}' -- env pause
  kubectl --kubeconfig $VIRTUAL logs t

`, env.RealNode.Name(), env.RealNode.IP, realnode.WorkloadImage, realnode.LabelRealNode, realnode.TaintRealNode)
	}

	select {
	case <-ctx.Done():
		return nil
	case err := <-env.Err():
		return fmt.Errorf("podbridge stopped: %w", err)
	}
}

// realNodeOptions finds the kubelet, kube-proxy and the image tarballs
// `make node-bins` built (CoreDNS's, podbridge.local/coredns, when there;
// the hosts image's is the caller's).
func realNodeOptions(o devenv.Options, images string) (*realnode.Options, error) {
	kubelet, err := o.Assets.Path("kubelet")
	if err != nil {
		return nil, fmt.Errorf("%w (make node-bins)", err)
	}
	kubeProxy, err := o.Assets.Path("kube-proxy")
	if err != nil {
		return nil, fmt.Errorf("%w (make node-bins)", err)
	}
	if images == "" {
		root, err := controlplane.ModuleRoot()
		if err != nil {
			return nil, err
		}
		images = filepath.Join(root, "bin", "node", "images.tar")
	}
	var extra []string
	if coredns := filepath.Join(filepath.Dir(images), "coredns.tar"); fileExists(coredns) {
		extra = append(extra, coredns)
	}
	return &realnode.Options{
		StateDir: filepath.Join(o.StateDir, "realnode"), Kubelet: kubelet, KubeProxy: kubeProxy, Images: images, ExtraImages: extra,
		Log: ctrl.Log.WithName("realnode"),
	}, nil
}

// podbridgeBinary finds the podbridge binary: flag when set, else the one
// beside this program, else bin/podbridge of the checkout.
func podbridgeBinary(flag string) (string, error) {
	if flag != "" {
		if !fileExists(flag) {
			return "", fmt.Errorf("--podbridge: no file %s", flag)
		}
		return filepath.Abs(flag)
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), "podbridge")
		if fileExists(beside) {
			return beside, nil
		}
		tried = append(tried, beside)
	}
	if root, err := controlplane.ModuleRoot(); err == nil {
		built := filepath.Join(root, "bin", "podbridge")
		if fileExists(built) {
			return built, nil
		}
		if !slices.Contains(tried, built) {
			tried = append(tried, built)
		}
	}
	return "", fmt.Errorf("no podbridge binary at %s: run make build (make run does), or name one with --podbridge", strings.Join(tried, " or "))
}

func fileExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}

// topmostMissing returns the highest folder of path that does not exist yet:
// what podbridge-dev creates, and so removes on exit.
func topmostMissing(path string) string {
	for {
		parent := filepath.Dir(path)
		if _, err := os.Stat(parent); err == nil || parent == path {
			return path
		}
		path = parent
	}
}

// parse parses args into fs; podbridge-dev takes flags only.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}

// bindLogging binds controller-runtime's zap flags, as podbridge's
// commands do, and returns what sets the logger once they are parsed.
func bindLogging(fs *flag.FlagSet) func() {
	opts := zap.Options{}
	opts.BindFlags(fs)
	return func() { ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts))) }
}
