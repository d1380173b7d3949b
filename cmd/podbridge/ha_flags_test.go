package main

import (
	"strings"
	"testing"
)

// create refuses a bad --etcd-egress by its flag, before any host call.
func TestCreateRefusesABadEtcdEgress(t *testing.T) {
	err := runCreate(t.Context(), []string{"team-a", "-n", "tenants", "--store=etcd", "--etcd-servers=https://10.0.0.1:2379", "--etcd-egress=not-a-cidr"})
	if err == nil || !strings.Contains(err.Error(), "--etcd-egress") {
		t.Errorf("error %v, want one naming --etcd-egress", err)
	}
}
