package main

import (
	"context"
	"strings"
	"testing"
)

// Each wrong combination of the client certificate flags is refused with
// an error naming the flag to fix, before anything connects anywhere.
func TestWebhookClientFlags(t *testing.T) {
	base := []string{"--virtual-kubeconfig=/nonexistent", "--host-namespace=ns", "--vcluster-name=vc"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--cert-mode=files"}, "--client-ca-file"},
		{[]string{"--cert-mode=self-managed", "--cert-hosts=x", "--client-ca-file=ca.crt"}, "--client-ca-file is for --cert-mode=files"},
		{[]string{"--cert-mode=files", "--client-ca-file=ca.crt", "--client-ca-secret=s"}, "--client-ca-secret is not used"},
		{[]string{"--client-ca-secret="}, "--client-ca-secret must not be empty"},
		{[]string{"--client-common-name="}, "--client-common-name must not be empty"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			err := runWebhook(context.Background(), append(append([]string{}, base...), tt.args...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
