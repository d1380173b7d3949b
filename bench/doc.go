// Package bench measures podbridge against the direct path on real local
// control planes, side by side in one run (issue 6, `make bench`).
//
// It starts a host (etcd, kube-apiserver, kube-scheduler, kwok) and a
// virtual control plane (etcd, kube-apiserver, kube-controller-manager)
// with testbed/controlplane, runs `podbridge webhook` and `podbridge
// reflector` as separate processes (so their CPU time and peak RSS can be
// read from /proc and the reflector can be restarted), and drives load with
// client-go over loopback only. Every scenario has a fixed seed, a stated
// size and a deadline:
//
//  1. create latency and throughput: direct to the host apiserver, to the
//     virtual apiserver without the webhook, and through podbridge;
//  2. the webhook's admission stages, from its own histogram;
//  3. time to Ready of a Deployment, virtual against host;
//  4. reflection lag of host status changes at a steady rate;
//  5. CPU, peak RSS and apiserver requests per pod through a pod's life;
//  6. reflector cold start with every pod in place;
//  7. churn in waves, then an orphan check on both sides.
//
// The results are a Markdown report, the raw figures as JSON and a PNG of
// the create-latency distributions. The concerns live in one file each:
// config.go (sizes), env.go (control planes and clients), podbridge.go
// (podbridge's processes, run with testbed/child), load.go (load
// generator), watch.go (pod watcher), stats.go (statistics), metrics.go
// (request accounting; scrapes are testbed/promscrape's), apiprofile.go
// (both apiservers' CPU profiles over a series, per pod), proc.go
// (process cost sampling), scenario_*.go, results.go (the figures),
// targets.go (issue 6's targets), report.go (Markdown) and plot.go (PNG).
package bench
