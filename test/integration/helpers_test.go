package integration

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podbridge/podbridge/testbed/testwait"
	"github.com/podbridge/podbridge/translate"
)

// eventually waits for condition (see testwait.Until).
var eventually = testwait.Until

// namespace creates a fresh virtual namespace for one test and waits for
// its default service account (ServiceAccount admission needs it).
func namespace(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := virtualClient.Create(ctx, ns); err != nil {
		t.Fatalf("creating virtual namespace: %v", err)
	}
	eventually(t, 30*time.Second, "default service account in "+ns.Name, func(ctx context.Context) (bool, string) {
		err := virtualClient.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, fmt.Sprint(err)
	})
	return ns.Name
}

// tenantEnv is a host container's env without the kubernetes variables
// podbridge puts first (translate's apiServerEnv): the tenant's entries.
func tenantEnv(env []corev1.EnvVar) []corev1.EnvVar {
	return slices.DeleteFunc(slices.Clone(env), func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "KUBERNETES_") })
}

func simplePod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}
}

// updateVirtualPod applies change to the newest version of pod and writes
// it (to subresource, when not ""), again on a conflict: the reflector
// writes virtual pods meanwhile. Once written, pod holds what was stored.
func updateVirtualPod(ctx context.Context, pod *corev1.Pod, subresource string, change func(*corev1.Pod)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current := &corev1.Pod{}
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(pod), current); err != nil {
			return err
		}
		change(current)
		var err error
		if subresource == "" {
			err = virtualClient.Update(ctx, current)
		} else {
			err = virtualClient.SubResource(subresource).Update(ctx, current)
		}
		if err == nil {
			current.DeepCopyInto(pod)
		}
		return err
	})
}

func hostKey(virtual *corev1.Pod) client.ObjectKey {
	cfg := env.Options.Translate
	return client.ObjectKey{Namespace: cfg.HostNamespace, Name: translate.HostName(virtual.Name, virtual.Namespace, cfg.VCluster)}
}

func getHostPod(ctx context.Context, virtual *corev1.Pod) (*corev1.Pod, error) {
	host := &corev1.Pod{}
	err := hostClient.Get(ctx, hostKey(virtual), host)
	return host, err
}

func isReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitGone waits until obj no longer exists in c.
func waitGone(t *testing.T, c client.Client, obj client.Object, timeout time.Duration) {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	eventually(t, timeout, fmt.Sprintf("%T %s to be gone", obj, key), func(ctx context.Context) (bool, string) {
		err := c.Get(ctx, key, obj.DeepCopyObject().(client.Object))
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func runtimeRaw(raw []byte) runtime.RawExtension { return runtime.RawExtension{Raw: raw} }

func freeTestPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// servedCertificate returns the DER of the certificate a loopback TLS
// server presents on port.
func servedCertificate(port int) ([]byte, error) {
	conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // reads the certificate, trusts nothing
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw, nil
}

func pemBody(t *testing.T, data []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM data")
	}
	return block.Bytes
}

func metav1LabelSelectorFor(key, value string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{key: value}}
}

func itoa(i int) string { return strconv.Itoa(i) }

// metricSum adds up the series of the counter or gauge name whose label
// has value, in the dev podbridge's processes (their counters over their
// restarts, see devenv.Env.MetricSum) and in this process's registry (the
// podbridges tests run here); a series not yet created counts 0.
func metricSum(t *testing.T, name, label, value string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := env.MetricSum(ctx, name, map[string]string{label: value})
	if err != nil {
		t.Fatalf("reading podbridge's metrics: %v", err)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return sum
}

// createRefused creates pod through the virtual apiserver and fails the
// test unless the create is refused with an error naming field and nothing
// reached the host.
func createRefused(t *testing.T, pod *corev1.Pod, field string) {
	t.Helper()
	ctx := context.Background()
	err := virtualClient.Create(ctx, pod)
	if err == nil {
		t.Fatal("admitted")
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("error does not name %q: %v", field, err)
	}
	if _, err := getHostPod(ctx, pod); !apierrors.IsNotFound(err) {
		t.Errorf("host pod after refusal: %v", err)
	}
}

// createContained creates pod through the virtual apiserver, fails the
// test unless it is admitted with a host pod that assertContained accepts,
// and returns that host pod.
func createContained(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if err := virtualClient.Create(ctx, pod); err != nil {
		t.Fatalf("refused: %v", err)
	}
	host, err := getHostPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	assertContained(t, pod, host)
	return host
}
