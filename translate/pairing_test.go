package translate

import (
	"testing"
	"time"
)

func TestOrphanGracePeriodOutlivesEveryCreate(t *testing.T) {
	for _, tc := range []struct {
		requestTimeout, want time.Duration
	}{
		{0, time.Minute + 10*time.Second},
		{time.Minute, time.Minute + 10*time.Second},
		{15 * time.Second, 25 * time.Second},
		{-time.Second, time.Minute + 10*time.Second},
	} {
		if got := OrphanGracePeriod(tc.requestTimeout); got != tc.want {
			t.Errorf("OrphanGracePeriod(%s) = %s, want %s", tc.requestTimeout, got, tc.want)
		}
	}
}
