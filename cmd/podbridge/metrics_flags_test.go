package main

import (
	"context"
	"strings"
	"testing"
)

// A metrics certificate folder without tls.crt and tls.key is refused,
// naming the flag, before anything connects: controller-runtime would
// otherwise serve a self-signed certificate instead without a word.
func TestMetricsCertDirMustHoldTheCertificate(t *testing.T) {
	args := []string{"--virtual-kubeconfig=/nonexistent", "--host-namespace=ns", "--vcluster-name=vc", "--metrics-cert-dir=" + t.TempDir()}
	for name, run := range map[string]func(context.Context, []string) error{"webhook": runWebhook, "reflector": runReflector} {
		err := run(context.Background(), args)
		if err == nil || !strings.Contains(err.Error(), "--metrics-cert-dir") || !strings.Contains(err.Error(), "tls.crt") {
			t.Errorf("%s: got %v, want an error naming --metrics-cert-dir and tls.crt", name, err)
		}
	}
}
