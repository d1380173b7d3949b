package main

import (
	"context"
	"strings"
	"testing"
)

// The real node's options without --real-node are refused before anything
// starts, naming the flag missing.
func TestDevRealNodeFlagsNeedARealNode(t *testing.T) {
	for _, args := range [][]string{
		{"--tenants-on-real-node"},
		{"--node-extra-images=images.tar"},
		{"--runtime-handlers=test-handler"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			err := runDev(context.Background(), append([]string{"--state-dir=" + t.TempDir()}, args...))
			if err == nil || !strings.Contains(err.Error(), "need --real-node") {
				t.Errorf("got %v, want an error naming --real-node", err)
			}
		})
	}
}
