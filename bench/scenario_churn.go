package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// runChurn is scenario 7: ChurnPods pods in ChurnWaves waves; each wave is
// deleted (in a seeded order) while the next one is created, so deletes
// meet pods in every state, unbound ones included. Then both sides must
// become empty: no orphan on either.
func (e *env) runChurn(ctx context.Context) (ChurnResults, error) {
	waveSize := e.cfg.ChurnPods / e.cfg.ChurnWaves
	res := ChurnResults{Pods: waveSize * e.cfg.ChurnWaves, Waves: e.cfg.ChurnWaves}
	concurrency := e.cfg.Concurrency[len(e.cfg.Concurrency)-1]
	pods := e.virtual.client.CoreV1().Pods(nsChurn)
	rng := rand.New(rand.NewPCG(uint64(e.cfg.Seed), 7))
	timeout := e.cleanupTimeout(e.cfg.ChurnPods) + time.Duration(e.cfg.ChurnPods)*50*time.Millisecond
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	orphansBefore, err := e.orphanDeletes(ctx)
	if err != nil {
		return res, err
	}

	var (
		mu       sync.Mutex
		deleting sync.WaitGroup
	)
	record := func(run loadResult, create bool) {
		mu.Lock()
		defer mu.Unlock()
		if create {
			res.CreateErrors += run.Errors
		} else {
			res.DeleteErrors += run.Errors
		}
		if res.FirstError == "" {
			res.FirstError = run.FirstError
		}
	}
	start := time.Now()
	for wave := range e.cfg.ChurnWaves {
		names := podNames(fmt.Sprintf("churn%d", wave), waveSize)
		e.log.Info("Creating churn wave", "wave", wave, "pods", waveSize)
		record(createPods(cctx, pods, names, "churn", concurrency), true)
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		deleting.Go(func() { record(deletePods(cctx, pods, names, concurrency), false) })
	}
	deleting.Wait()
	lastDelete := time.Now()
	res.WallSeconds = lastDelete.Sub(start).Seconds()
	e.log.Info("Deleted every churn wave; waiting for both sides to empty", "createErrors", res.CreateErrors, "deleteErrors", res.DeleteErrors)
	waitErr := e.waitEmpty(cctx, timeout, nsRef{e.virtual, nsChurn}, nsRef{e.host, hostNamespace})
	res.ConvergeSeconds = time.Since(lastDelete).Seconds()

	// The orphan check proper: count what is left, whatever the wait said.
	if res.HostPodsLeft, err = countPods(ctx, e.host.client, hostNamespace); err != nil {
		return res, err
	}
	for _, ns := range virtualNamespaces {
		n, err := countPods(ctx, e.virtual.client, ns)
		if err != nil {
			return res, err
		}
		res.VirtualPodsLeft += n
	}
	secrets, err := e.host.client.CoreV1().Secrets(hostNamespace).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return res, fmt.Errorf("counting host secrets: %w", err)
	}
	res.HostSecretsLeft = len(secrets.Items)
	if secrets.RemainingItemCount != nil {
		res.HostSecretsLeft += int(*secrets.RemainingItemCount)
	}
	orphansAfter, err := e.orphanDeletes(ctx)
	if err != nil {
		return res, err
	}
	// The reflector restarted in scenario 6: its counter began again there.
	res.OrphanDeletes = orphansAfter - orphansBefore
	// Failed creates and deletes are podbridge's answers under load: they
	// are figures of the run, reported, not a failure of the harness.
	if res.CreateErrors+res.DeleteErrors > 0 {
		e.log.Info("Churn requests failed", "createErrors", res.CreateErrors, "deleteErrors", res.DeleteErrors, "first", res.FirstError)
	}
	return res, waitErr
}

// orphanDeletes reads how many orphan host pods the reflector has deleted.
func (e *env) orphanDeletes(ctx context.Context) (float64, error) {
	f, err := e.pb.reflector.Scrape(ctx)
	if err != nil {
		return 0, err
	}
	return f.Sum("podbridge_reflector_actions_total", map[string]string{"action": "orphan_delete"}), nil
}
