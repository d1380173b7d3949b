// Package hostaccount checks the host service account that host pods run
// as (translate.Config's HostServiceAccount) before podbridge makes any
// host pod. The host's ServiceAccount admission gives a pod that names no
// image pull secrets those of its service account, and mounts its token
// unless told not to: either would hand a tenant the platform's
// credentials. The webhook and the reflector refuse to start with an
// account that has any.
package hostaccount

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
// naming what makes it unfit for host pods, or that it is missing.
func Check(ctx context.Context, reader client.Reader, namespace, name string) error {
	sa := &corev1.ServiceAccount{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, sa); err != nil {
		return fmt.Errorf("reading host service account %s/%s (--host-service-account): %w", namespace, name, err)
	}
	if errs := Errors(sa); len(errs) > 0 {
		return fmt.Errorf("host service account %s/%s (--host-service-account) is unfit for tenant pods: %w", namespace, name, errs.ToAggregate())
	}
	return nil
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
