package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

func runCheck(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("podbridge check", flag.ContinueOnError)
	var cf clusterFlags
	cf.bind(fs)
	o := check.Options{}
	requestTimeout := fs.Duration("virtual-request-timeout", translate.DefaultVirtualRequestTimeout, "the virtual apiserver's --request-timeout, as given to the reflector")
	fs.DurationVar(&o.OrphanGracePeriod, "orphan-grace-period", 0, "host pods, Services, NetworkPolicies and claims younger than this without a virtual one are admissions under way, not violations (default: --virtual-request-timeout plus 10s)")
	fs.BoolVar(&o.Statuses, "statuses", true, "also compare phase, readiness, pod IP and node of each pod pair, and phase and capacity of each claim pair (run when the clusters are quiet)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.OrphanGracePeriod == 0 {
		o.OrphanGracePeriod = translate.OrphanGracePeriod(*requestTimeout)
	}
	hostCfg, virtualCfg, err := cf.configs("check")
	if err != nil {
		return err
	}
	host, err := client.New(hostCfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	virtual, err := client.New(virtualCfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	o.Config, o.Now = cf.translate, time.Now()
	violations, err := check.Run(ctx, host, virtual, o)
	if err != nil {
		return err
	}
	services, err := check.RunServices(ctx, host, virtual, o)
	if err != nil {
		return err
	}
	violations = append(violations, services...)
	slices, err := check.RunEndpointSlices(ctx, host, virtual, o)
	if err != nil {
		return err
	}
	violations = append(violations, slices...)
	policies, err := check.RunNetworkPolicies(ctx, host, virtual, o)
	if err != nil {
		return err
	}
	violations = append(violations, policies...)
	claims, err := check.RunClaims(ctx, host, virtual, o)
	if err != nil {
		return err
	}
	violations = append(violations, claims...)
	for _, v := range violations {
		fmt.Println(v)
	}
	if len(violations) > 0 {
		return fmt.Errorf("%d violations", len(violations))
	}
	fmt.Println("no violations")
	return nil
}
