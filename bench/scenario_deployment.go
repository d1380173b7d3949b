package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/podbridge/podbridge/testbed/child"
)

const hostDeploymentMethod = "the same Deployment created on the host, rolled out by a host kube-controller-manager " +
	"(same binary and client limits as the virtual one: deployment and replicaset controllers, default --kube-api-qps 20) " +
	"that the bench runs for this scenario only; kube-scheduler and kwok run the pods on both paths"

// runDeployment is scenario 3: a Deployment rolled out on the host with a
// host controller manager, then the same one in the virtual cluster.
func (e *env) runDeployment(ctx context.Context) (DeploymentResults, error) {
	res := DeploymentResults{Replicas: e.cfg.DeploymentReplicas, HostMethod: hostDeploymentMethod}
	kcm, err := e.startHostControllerManager(ctx)
	if err != nil {
		return res, err
	}
	res.Host, err = e.rollout(ctx, nsRef{e.host, nsDeploy}, nil)
	err = errors.Join(err, kcm.Stop(context.Background()))
	if err != nil {
		return res, err
	}
	res.Virtual, err = e.rollout(ctx, nsRef{e.virtual, nsDeploy}, []nsRef{{e.host, hostNamespace}})
	res.Ratio = ratio(res.Virtual.ReadySeconds, res.Host.ReadySeconds)
	return res, err
}

func benchDeployment(name string, replicas int) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec()},
		},
	}
}

// rollout creates the Deployment, times it until every replica exists and
// until every replica is Ready, then removes it and its pods.
func (e *env) rollout(ctx context.Context, target nsRef, alsoEmpty []nsRef) (RolloutTimes, error) {
	n := e.cfg.DeploymentReplicas
	log := e.log.WithValues("cluster", target.c.name, "replicas", n)
	deployments := target.c.client.AppsV1().Deployments(target.namespace)
	// The controller manager creates pods at 20 per second (its client limit).
	timeout := 2*time.Minute + time.Duration(n)*200*time.Millisecond
	var times RolloutTimes
	log.Info("Creating Deployment")
	start := time.Now()
	if _, err := deployments.Create(ctx, benchDeployment("web", n), metav1.CreateOptions{}); err != nil {
		return times, fmt.Errorf("creating %s Deployment: %w", target.c.name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := e.checkAlive(); err != nil {
			return false, err
		}
		d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if times.AllCreatedSeconds == 0 && int(d.Status.Replicas) >= n {
			times.AllCreatedSeconds = time.Since(start).Seconds()
		}
		if int(d.Status.ReadyReplicas) >= n && int(d.Status.UpdatedReplicas) >= n {
			times.ReadySeconds = time.Since(start).Seconds()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return times, fmt.Errorf("waiting for the %s Deployment to be Ready: %w", target.c.name, err)
	}
	log.Info("Deployment Ready", "allCreatedSeconds", times.AllCreatedSeconds, "readySeconds", times.ReadySeconds)

	// Remove the Deployment, then its ReplicaSets, then the pods, so no
	// controller re-creates what was just deleted. Waiting for the garbage
	// collector would take its 20 QPS (and the host has none).
	background := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}
	if err := deployments.Delete(ctx, "web", background); err != nil {
		return times, fmt.Errorf("deleting %s Deployment: %w", target.c.name, err)
	}
	err = target.c.client.AppsV1().ReplicaSets(target.namespace).DeleteCollection(ctx, background, metav1.ListOptions{})
	if err != nil {
		return times, fmt.Errorf("deleting %s ReplicaSets: %w", target.c.name, err)
	}
	return times, e.emptyNamespaces(ctx, e.cleanupTimeout(n), target, alsoEmpty...)
}

// startHostControllerManager runs a kube-controller-manager on the host
// with the Deployment and ReplicaSet controllers only, and returns once it
// has observed a probe Deployment.
func (e *env) startHostControllerManager(ctx context.Context) (*child.Process, error) {
	path, err := e.cfg.Assets.Path("kube-controller-manager")
	if err != nil {
		return nil, err
	}
	kubeconfig := e.host.plane.Kubeconfig
	const name = "host-kube-controller-manager"
	kcm, err := child.Start(child.Command{Name: name, Path: path, LogFile: filepath.Join(e.dir, "logs", name+".log"), Args: []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
		"--controllers=deployment-controller,replicaset-controller",
		"--use-service-account-credentials=false",
	}})
	if err != nil {
		return nil, err
	}
	deployments := e.host.client.AppsV1().Deployments(nsDeploy)
	if _, err := deployments.Create(ctx, benchDeployment("kcm-probe", 0), metav1.CreateOptions{}); err != nil {
		return kcm, errors.Join(fmt.Errorf("creating probe Deployment: %w", err), kcm.Stop(context.Background()))
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := kcm.Exited(); err != nil {
			return false, err
		}
		d, err := deployments.Get(ctx, "kcm-probe", metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration >= d.Generation, nil
	})
	if err == nil {
		err = deployments.Delete(ctx, "kcm-probe", metav1.DeleteOptions{})
	}
	if err != nil {
		return kcm, errors.Join(fmt.Errorf("waiting for the host controller manager: %w", err), kcm.Stop(context.Background()))
	}
	return kcm, nil
}
