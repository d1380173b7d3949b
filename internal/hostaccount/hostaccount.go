// Package hostaccount checks the host service account that host pods run
// as (translate.Config's HostServiceAccount) before podbridge makes any
// host pod. The host's ServiceAccount admission gives a pod that names no
// image pull secrets those of its service account, and mounts its token
// unless told not to: either would hand a tenant the platform's
// credentials. The webhook and the reflector refuse to start with an
// account that has any, or that is not marked as their virtual cluster's.
package hostaccount

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/internal/ownership"
)

// Errors returns why host pods may not run as sa, naming its fields; nil
// when they may.
func Errors(sa *corev1.ServiceAccount) field.ErrorList {
	var errs field.ErrorList
	if len(sa.ImagePullSecrets) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("imagePullSecrets"),
			"the host's ServiceAccount admission would give every tenant pod these pull secrets, so tenants would pull the platform's private images"))
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		errs = append(errs, field.Invalid(field.NewPath("automountServiceAccountToken"), sa.AutomountServiceAccountToken,
			"must be false: podbridge never mounts the host token, and an account that mounts it by default is one mistake away from giving it to a tenant"))
	}
	return errs
}

// Check reads the service account name in namespace and returns an error
// naming what makes it unfit for the host pods of virtual cluster
// vcluster, or that it is missing. It must also be marked as that virtual
// cluster's (annotation podbridge.io/owner, package ownership): host
// policies that tell tenants apart by service account (a mesh's or a
// CNI's identities, a cloud's workload identity) then never take one
// virtual cluster's pods for another's, though both run in one namespace.
func Check(ctx context.Context, reader client.Reader, namespace, name, vcluster string) error {
	sa, err := check(ctx, reader, namespace, name)
	if sa == nil {
		return err
	}
	if owned := ownership.Check(sa, "ServiceAccount", vcluster); owned != nil {
		err = errors.Join(err, fmt.Errorf("host service account (--host-service-account): %w", owned))
	}
	return err
}

// check reads the account and says what makes it unfit; the account is
// nil when it could not be read.
func check(ctx context.Context, reader client.Reader, namespace, name string) (*corev1.ServiceAccount, error) {
	sa := &corev1.ServiceAccount{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, sa); err != nil {
		return nil, fmt.Errorf("reading host service account %s/%s (--host-service-account): %w", namespace, name, err)
	}
	if errs := Errors(sa); len(errs) > 0 {
		return sa, fmt.Errorf("host service account %s/%s (--host-service-account) is unfit for tenant pods: %w", namespace, name, errs.ToAggregate())
	}
	return sa, nil
}

// DefaultName is the account host pods of virtual cluster vcluster run
// as unless told otherwise: one per virtual cluster, so two in one host
// namespace do not share one.
func DefaultName(vcluster string) string {
	return "podbridge-workloads-" + vcluster
}

// AddedPullSecrets names the image pull secrets the host gave created that
// podbridge did not ask for in asked: its ServiceAccount admission copies
// the account's to a pod that names none. Check runs at start; this
// catches an account changed since. A host pod with any must go.
func AddedPullSecrets(asked, created *corev1.Pod) []string {
	var added []string
	for _, s := range created.Spec.ImagePullSecrets {
		if !slices.Contains(asked.Spec.ImagePullSecrets, s) {
			added = append(added, s.Name)
		}
	}
	return added
}
