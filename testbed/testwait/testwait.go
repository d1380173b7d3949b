// Package testwait is the one wait podbridge's tests share: poll a
// condition until it holds or a deadline passes, and fail the test with
// the last state the condition described, never sleep.
package testwait

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Until polls condition every 100 ms until it holds, failing t after
// timeout with what and the last state condition reported.
func Until(t testing.TB, timeout time.Duration, what string, condition func(ctx context.Context) (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := ""
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, seen := condition(ctx)
		if ctx.Err() == nil {
			last = seen // not the deadline's own error
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
	}
}
