// Package integration proves podbridge's path end to end against real
// control planes: a host (etcd, kube-apiserver, kube-scheduler, kwok) and a
// virtual cluster (etcd, kube-apiserver, kube-controller-manager), with the
// webhook and the reflector running as they do against real clusters.
package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/hostaccount"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/testbed/devenv"
	"github.com/podbridge/podbridge/translate"
)

var (
	env           *devenv.Env
	hostClient    client.Client
	virtualClient client.Client
	orphanGrace   = 3 * time.Second
	// podbridgeBinary is cmd/podbridge, built once for the package: the
	// test bed's webhook and reflector, and the tests' own processes.
	podbridgeBinary string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration tests skipped in -short mode")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	stateDir, err := os.MkdirTemp("", "podbridge-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(stateDir)

	opts := devenv.Defaults()
	opts.StateDir = stateDir
	// podbridge's webhook and reflector run as processes of the production
	// binary, built once for the package (with -race under -race); their
	// warnings and errors reach the test output as the in-process
	// components' did (everything with PODBRIDGE_TEST_VERBOSE).
	buildCtx, cancelBuild := context.WithTimeout(context.Background(), 10*time.Minute)
	binary, removeBinary, err := devenv.BuildPodbridge(buildCtx)
	cancelBuild()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer removeBinary()
	opts.Podbridge, podbridgeBinary = binary, binary
	opts.Output = devenv.WarningsOnly(os.Stderr)
	if os.Getenv("PODBRIDGE_TEST_VERBOSE") != "" {
		opts.Output = os.Stderr
	}
	opts.OrphanGracePeriod = orphanGrace
	// The gate's allow-lists, for gate_attacks_test.go's admitted cases.
	opts.Translate.RuntimeClasses = []string{allowedRuntimeClass}
	opts.Translate.CSIDrivers = []string{allowedCSIDriver}
	opts.Translate.StorageClasses = []string{allowedStorageClass}
	opts.Translate.TolerationKeys = []string{allowedTolerationKey}
	opts.Translate.CSIVolumeAttributes = map[string][]string{allowedCSIDriver: {allowedCSIAttribute}}
	// The range tenants' EndpointSlices may name (endpointslices_test.go).
	opts.Translate.EndpointCIDRs = []netip.Prefix{allowedEndpointCIDR}
	// The ranges no tenant NetworkPolicy may open: kwok's pod network and
	// the service range (networkpolicy_test.go).
	opts.Translate.ReservedCIDRs = []string{"10.244.0.0/16", controlplane.ServiceClusterIPRange}
	// The one tenant annotation copied to host pods (metadata_attacks_test.go).
	opts.Translate.HostAnnotations = []string{allowedAnnotation}
	opts.Translate.HostsImage = hostsImage
	// kwok's answers for logs, attach and port-forward in access_test.go.
	if opts.KwokRules, err = accessKwokRules(filepath.Join(stateDir, "access")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if opts.Assets, err = controlplane.DefaultAssets(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err = devenv.Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting control planes and podbridge: %v\n", err)
		return 1
	}
	defer func() {
		if code != 0 {
			env.WriteLogTails(os.Stderr, 64<<10)
		}
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping: %v\n", err)
			// A data race inside podbridge fails the run, as it did
			// when podbridge ran in the test's process.
			if errors.Is(err, devenv.ErrDataRace) {
				code = 1
			}
		}
	}()
	if hostClient, err = testClient(env.Host.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if virtualClient, err = testClient(env.Virtual.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code = m.Run()
	for _, stop := range cleanups {
		stop()
	}
	return code
}

// cleanups run after every test, for what tests share lazily.
var cleanups []func()

var (
	second     *controlplane.Plane
	secondErr  error
	secondOnce sync.Once
	// secondClient is an administrator of the second virtual cluster.
	secondClient client.Client
	// secondClientCreds is what the second virtual apiserver presents to
	// webhooks (secondClientCerts gives them to a podbridge).
	secondClientCreds *controlplane.ClientCredentials
)

// secondClientCommonName is the subject of the second virtual apiserver's
// client certificate: the podbridges tests run for it accept it by name.
const secondClientCommonName = "podbridge-virtual-apiserver.second"

// ownAccount gives the podbridge of virtual cluster tc an account of its
// own for its host pods, as a platform would make it (fit, and marked as
// tc's), named hostaccount.DefaultName(tc.VCluster).
func ownAccount(t *testing.T, tc translate.Config) translate.Config {
	t.Helper()
	tc.HostServiceAccount = hostaccount.DefaultName(tc.VCluster)
	sa := &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Namespace: tc.HostNamespace, Name: tc.HostServiceAccount, Annotations: map[string]string{ownership.Annotation: tc.VCluster}},
		AutomountServiceAccountToken: ptr.To(false),
	}
	if err := hostClient.Create(context.Background(), sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return tc
}

// secondClientCerts gives a podbridge of virtual cluster tc, serving the
// second virtual cluster, that virtual apiserver's client CA: in a Secret
// of its own, marked as tc's (as a platform that issued the certificate
// beforehand would), and the certificate's name to accept.
func secondClientCerts(t *testing.T, tc translate.Config, o certs.Options) certs.Options {
	t.Helper()
	secondVirtual(t)
	o.ClientSecretName = tc.VCluster + "-apiserver-client-tls"
	o.ClientCommonName = secondClientCommonName
	b := secondClientCreds.Bundle
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: tc.HostNamespace, Name: o.ClientSecretName, Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{certs.CertFile: b.Cert, certs.KeyFile: b.Key, certs.CAFile: b.CA, certs.CAKeyFile: b.CAKey},
	}
	ownership.Mark(&secret.ObjectMeta, tc.VCluster)
	if err := hostClient.Create(context.Background(), secret); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return o
}

// secondVirtual starts, once, a second virtual control plane with no
// podbridge of its own: tests register extra webhooks in it without
// meeting the main one, and isolation tests put a second tenant there.
func secondVirtual(t *testing.T) client.Client {
	t.Helper()
	secondOnce.Do(func() {
		dir, err := os.MkdirTemp("", "podbridge-second-")
		if err != nil {
			secondErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Its webhooks listen on ports chosen later: it presents a client
		// certificate of its own (its own CA, its own common name) to
		// every webhook, never the dev virtual apiserver's.
		if secondClientCreds, secondErr = controlplane.IssueClient(dir, secondClientCommonName); secondErr != nil {
			return
		}
		second, secondErr = controlplane.StartVirtual(ctx, controlplane.Options{Assets: env.Options.Assets, Dir: dir, WebhookClient: secondClientCreds.ForAPIServer("*")})
		cleanups = append(cleanups, func() {
			if err := second.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "stopping the second virtual cluster: %v\n", err)
			}
			os.RemoveAll(dir)
		})
		if secondErr == nil {
			secondClient, secondErr = testClient(second.Config)
		}
	})
	if secondErr != nil {
		t.Fatalf("second virtual cluster: %v", secondErr)
	}
	return secondClient
}

// testClient is an administrator's client of a control plane, without
// client-go's default limit of 5 requests a second, which would pace the
// tests rather than the apiservers.
func testClient(cfg *rest.Config) (client.Client, error) {
	return client.New(kube.WithLimits(cfg, kube.DefaultLimits, "podbridge-integration"), client.Options{Scheme: kube.Scheme})
}

// zapLevel keeps podbridge quiet in tests unless PODBRIDGE_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("PODBRIDGE_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.WarnLevel
}
