//go:build node

package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/testbed/podstream"
)

// A tenant's service account allowed pods/log but not pods/exec, attach
// or port-forward reads the real container's log and is refused the
// others by the virtual apiserver; the refused exec never ran in the
// container (the file it would have written is not there).
func TestLogReaderCannotExecOnRealNode(t *testing.T) {
	ns := namespace(t)
	pod := realPod(ns, "guarded", "serve::8080")
	create(t, pod)
	waitVirtualReady(t, pod)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sa := "log-reader"
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "log-reader", Namespace: ns}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "log-reader", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "log-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}}},
	} {
		if err := virtualClient.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Virtual.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + sa}
	reader := virtualClientset(t, cfg)
	eventually(t, 30*time.Second, "the service account reads the real container's log", func(ctx context.Context) (bool, string) {
		out, err := virtualLogs(ctx, reader, pod, false)
		return err == nil && strings.HasPrefix(out, "serving="), fmt.Sprintf("%q %v", out, err)
	})
	forbidden := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "forbidden") {
			t.Errorf("%s as a service account with pods/log only: %v, want forbidden", what, err)
		}
	}
	for _, websocket := range []bool{false, true} {
		marker := "/tmp/exec-ran-" + strconv.FormatBool(websocket)
		res, err := podstream.Exec(ctx, cfg, websocket, ns, pod.Name, "w", "x", "/podbridge-workload", "write:"+marker)
		if err == nil {
			err = res.Err
		}
		forbidden(fmt.Sprintf("exec (websocket=%v)", websocket), err)
		res, err = podstream.Attach(ctx, cfg, websocket, false, ns, pod.Name, "w", nil)
		if err == nil {
			err = res.Err
		}
		forbidden(fmt.Sprintf("attach (websocket=%v)", websocket), err)
		_, err = podstream.Forward(ctx, cfg, websocket, ns, pod.Name, 8080)
		forbidden(fmt.Sprintf("port-forward (websocket=%v)", websocket), err)
		// The administrator's exec finds no marker: the refused one never ran.
		adm, err := podstream.Exec(ctx, env.Virtual.Config, websocket, ns, pod.Name, "w", "", "/podbridge-workload", "cat:"+marker)
		if err != nil {
			t.Fatal(err)
		}
		if adm.Err == nil || !strings.Contains(adm.Stdout, "no such file") {
			t.Errorf("cat %s after the refused exec: %q, %v; want no such file", marker, adm.Stdout, adm.Err)
		}
	}
}
