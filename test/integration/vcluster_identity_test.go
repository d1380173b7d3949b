package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/vcluster"
)

// podbridge's identity in a virtual cluster is the user podbridge in no
// group, with the grants of manifests/virtual/base/rbac.yaml, which the
// control-plane pod's rbac init container applies (vcluster.Bootstrap) at
// every start. The tenant, cluster-admin there, deletes the binding and
// strips the role: podbridge fails closed (a pod whose ConfigMap it must
// read is refused, naming the missing grant, and nothing of it reaches
// the host); the bootstrap step puts both back and the same pod is
// admitted. A bootstrap over grants as wanted writes nothing.
func TestTenantCannotKeepPodbridgesGrantsAway(t *testing.T) {
	two := startSecondTenant(t, caps.Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	grants, err := vcluster.Grants()
	if err != nil {
		t.Fatal(err)
	}
	// The tenant's podbridge runs as the user the grants bind, in no group.
	if written, err := vcluster.EnsureGrants(ctx, two.client, grants); err != nil || len(written) > 0 {
		t.Fatalf("bootstrap over the grants as applied: wrote %v (%v), want nothing", written, err)
	}

	// The tenant deletes the binding, makes another of that name to a role
	// that grants nearly nothing, and strips podbridge's role of ConfigMaps.
	if err := two.client.Delete(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "podbridge"}}); err != nil {
		t.Fatal(err)
	}
	rebound := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "podbridge"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:basic-user"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: vcluster.PodbridgeUser}},
	}
	if err := two.client.Create(ctx, rebound); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := two.client.Get(ctx, client.ObjectKey{Name: "podbridge"}, role); err != nil {
		t.Fatal(err)
	}
	role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "configmaps") })
	if err := two.client.Update(ctx, role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever happened, the grants the next tests of tenant two need.
		if _, err := vcluster.EnsureGrants(context.Background(), two.client, grants); err != nil {
			t.Errorf("restoring tenant two's grants: %v", err)
		}
	})

	// A pod whose ConfigMap podbridge must read and copy to the host.
	n := 0
	podWithConfig := func(ctx context.Context) (*corev1.Pod, error) {
		n++
		name := fmt.Sprintf("grants-%d", n)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string]string{"k": "v"}}
		if err := two.client.Create(ctx, cm); err != nil {
			return nil, err
		}
		pod := simplePod("default", name)
		pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}
		return pod, two.client.Create(ctx, pod)
	}
	var refused *corev1.Pod
	eventually(t, 30*time.Second, "a pod refused while podbridge lacks its grants", func(ctx context.Context) (bool, string) {
		pod, err := podWithConfig(ctx)
		if pod == nil || err == nil {
			return false, fmt.Sprintf("ConfigMap or pod created: %v", err)
		}
		refused = pod
		return strings.Contains(err.Error(), `User "podbridge" cannot get resource "configmaps"`), err.Error()
	})
	if err := two.host.Get(ctx, client.ObjectKey{Namespace: two.config.HostNamespace, Name: translate.HostName(refused.Name, refused.Namespace, two.config.VCluster)}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused pod's host pod: %v, want none", err)
	}

	// The next start of the control-plane pod: the rbac init container.
	written, err := vcluster.EnsureGrants(ctx, two.client, grants)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ClusterRole podbridge", "ClusterRoleBinding podbridge"}; !slices.Equal(written, want) {
		t.Errorf("the bootstrap step wrote %v, want %v", written, want)
	}
	restored := &rbacv1.ClusterRoleBinding{}
	if err := two.client.Get(ctx, client.ObjectKey{Name: "podbridge"}, restored); err != nil || restored.RoleRef.Name != "podbridge" || restored.UID == rebound.UID {
		t.Errorf("the binding after the bootstrap step: role %q, uid %s (the tenant's %s), %v; want podbridge's, made again", restored.RoleRef.Name, restored.UID, rebound.UID, err)
	}
	eventually(t, 30*time.Second, "the refused pod admitted once the grants are back", func(ctx context.Context) (bool, string) {
		pod := refused.DeepCopy()
		err := two.client.Create(ctx, pod)
		return err == nil, fmt.Sprint(err)
	})
	if err := two.client.Delete(ctx, refused, client.GracePeriodSeconds(0)); err != nil {
		t.Errorf("removing the admitted pod: %v", err)
	}
}
