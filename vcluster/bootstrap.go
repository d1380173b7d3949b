package vcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/manifests/virtual"
)

// The bootstrap step: podbridge's identity in the virtual cluster
// (PodbridgeUser) is in no group, so its grants must exist before the
// webhook and the reflector start. The control-plane pod's rbac init
// container, after the apiserver's startup probe passed, applies them as
// an administrator whose certificate it issues itself, in memory, from the
// claim's client CA, for BootstrapValidity; no admin credential is written
// to the claim, and the webhook and the reflector mount neither the CA nor
// anything else of the claim but their own kubeconfig.
const (
	// BootstrapUser is the bootstrap step's identity, in system:masters.
	BootstrapUser = "podbridge:vcluster-bootstrap"
	// BootstrapValidity bounds the bootstrap step's certificate.
	BootstrapValidity = 10 * time.Minute
	// BootstrapFieldManager owns the fields of the grants it applies.
	BootstrapFieldManager = "podbridge-bootstrap"
)

// Grants are podbridge's grants in the virtual cluster, as
// manifests/virtual/base/rbac.yaml holds them: the ClusterRole podbridge
// and its ClusterRoleBinding to the user podbridge.
func Grants() ([]*unstructured.Unstructured, error) {
	var objects []*unstructured.Unstructured
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(virtual.RBAC), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return objects, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding manifests/virtual/base/rbac.yaml: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		switch obj.GetKind() {
		case "ClusterRole", "ClusterRoleBinding":
		default:
			return nil, fmt.Errorf("manifests/virtual/base/rbac.yaml: %s %s is not a grant the bootstrap step applies", obj.GetKind(), obj.GetName())
		}
		objects = append(objects, obj)
	}
}

// BootstrapConfig is a client configuration for the apiserver at server as
// BootstrapUser, issued now from the client CA under dir/pki and trusting
// the serving CA there. It exists only in memory.
func BootstrapConfig(dir, server string, now time.Time) (*rest.Config, error) {
	pki := filepath.Join(dir, pkiDir)
	clientCA, err := loadCA(pki, "client-ca")
	if err != nil {
		return nil, err
	}
	servingCA, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's CA: %w", err)
	}
	admin, err := clientCA.client(BootstrapUser, []string{"system:masters"}, now, BootstrapValidity)
	if err != nil {
		return nil, fmt.Errorf("issuing the bootstrap step's certificate: %w", err)
	}
	return &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{CAData: servingCA, CertData: admin.Cert, KeyData: admin.Key}}, nil
}

// loadCA reads pki/name.crt and .key, which must exist.
func loadCA(pki, name string) (keyPair, error) {
	cert, certErr := os.ReadFile(filepath.Join(pki, name+".crt"))
	key, keyErr := os.ReadFile(filepath.Join(pki, name+".key"))
	if err := errors.Join(certErr, keyErr); err != nil {
		return keyPair{}, fmt.Errorf("reading %s in %s (the init container makes it): %w", name, pki, err)
	}
	ca := keyPair{Cert: cert, Key: key}
	if _, _, err := ca.parse(); err != nil {
		return keyPair{}, fmt.Errorf("%s in %s: %w", name, pki, err)
	}
	return ca, nil
}

// Bootstrap makes podbridge's grants in the virtual cluster at cfg what
// Grants says, retrying each second until they are or ctx ends: the
// control-plane pod's rbac init container, at every start of the pod, so
// that grants a tenant deleted or changed are back when podbridge starts.
func Bootstrap(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	grants, err := Grants()
	if err != nil {
		return err
	}
	log := logf.FromContext(ctx)
	var last error
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		written, err := EnsureGrants(ctx, c, grants)
		if err != nil {
			last = err
			log.Info("Applying podbridge's grants in the virtual cluster failed; retrying", "error", err.Error())
			return false, nil
		}
		if len(written) > 0 {
			log.Info("Applied podbridge's grants in the virtual cluster", "objects", written)
		} else {
			log.Info("podbridge's grants in the virtual cluster were as wanted")
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("applying podbridge's grants in the virtual cluster: %w", errors.Join(err, last))
	}
	return nil
}

// EnsureGrants writes each of grants that is missing or differs in what
// it grants (a ClusterRole's rules and aggregation, a binding's role and
// subjects): created, or updated with exactly those fields (a binding to
// another role is deleted and made again: roleRef cannot change); one as
// wanted is not written (a write would pass the tenant's admission
// webhooks for nothing). Labels and annotations are left: they grant
// nothing. It then reads each written one back: what a tenant's webhook
// changed on the way is an error, not a grant. It returns what it wrote.
func EnsureGrants(ctx context.Context, c client.Client, grants []*unstructured.Unstructured) ([]string, error) {
	var written []string
	for _, want := range grants {
		name := want.GetKind() + " " + want.GetName()
		same, err := ensureGrant(ctx, c, want, true)
		if err != nil {
			return written, err
		}
		if same {
			continue
		}
		written = append(written, name)
		if same, err := ensureGrant(ctx, c, want, false); err != nil {
			return written, err
		} else if !same {
			return written, fmt.Errorf("%s differs from what was written: something in the virtual cluster's admission changed it", name)
		}
	}
	return written, nil
}

// ensureGrant reads want's object and says whether it grants what want
// does; when it does not and write is set, it writes it.
func ensureGrant(ctx context.Context, c client.Client, want *unstructured.Unstructured, write bool) (bool, error) {
	name := want.GetKind() + " " + want.GetName()
	owner := client.FieldOwner(BootstrapFieldManager)
	switch want.GetKind() {
	case "ClusterRole":
		w, live := &rbacv1.ClusterRole{}, &rbacv1.ClusterRole{}
		found, err := readGrant(ctx, c, want, w, live)
		if err != nil || (found && apiequality.Semantic.DeepEqual(w.Rules, live.Rules) && apiequality.Semantic.DeepEqual(w.AggregationRule, live.AggregationRule)) {
			return err == nil, err
		}
		if !write {
			return false, nil
		}
		if !found {
			return false, wrapWrite(name, c.Create(ctx, w, owner))
		}
		live.Rules, live.AggregationRule = w.Rules, w.AggregationRule
		return false, wrapWrite(name, c.Update(ctx, live, owner))
	case "ClusterRoleBinding":
		w, live := &rbacv1.ClusterRoleBinding{}, &rbacv1.ClusterRoleBinding{}
		found, err := readGrant(ctx, c, want, w, live)
		if err != nil || (found && w.RoleRef == live.RoleRef && apiequality.Semantic.DeepEqual(w.Subjects, live.Subjects)) {
			return err == nil, err
		}
		if !write {
			return false, nil
		}
		if found && w.RoleRef != live.RoleRef {
			if err := c.Delete(ctx, live, client.Preconditions{UID: &live.UID}); client.IgnoreNotFound(err) != nil {
				return false, wrapWrite(name, err)
			}
			found = false
		}
		if !found {
			return false, wrapWrite(name, c.Create(ctx, w, owner))
		}
		live.Subjects = w.Subjects
		return false, wrapWrite(name, c.Update(ctx, live, owner))
	}
	return false, fmt.Errorf("%s is not a grant the bootstrap step applies", name)
}

// readGrant decodes want into w and reads its object into live, saying
// whether it exists.
func readGrant(ctx context.Context, c client.Client, want *unstructured.Unstructured, w, live client.Object) (bool, error) {
	name := want.GetKind() + " " + want.GetName()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(want.Object, w); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	err := c.Get(ctx, client.ObjectKey{Name: want.GetName()}, live)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", name, err)
	}
	return true, nil
}

func wrapWrite(name string, err error) error {
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
