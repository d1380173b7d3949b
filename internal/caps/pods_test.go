package caps

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

func podMeta(name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// The count is what the informer shows plus creates admitted and not yet
// shown; a create over the cap is refused naming the flag, and room comes
// back as pods go or a failed create releases its reservation.
func TestHostPodsCap(t *testing.T) {
	now := time.Unix(1000, 0)
	h := NewHostPods(3)
	h.now = func() time.Time { return now }
	events := h.Handler()
	events.OnAdd(podMeta("a"), true)
	events.OnAdd(podMeta("b"), true)

	if _, err := h.Reserve("c"); err != nil {
		t.Fatalf("third pod refused: %v", err)
	}
	_, err := h.Reserve("d")
	var limit *LimitError
	if !errors.As(err, &limit) || limit.Flag != FlagMaxHostPods || limit.Use != 3 || !strings.Contains(err.Error(), "--max-host-pods") {
		t.Fatalf("fourth pod: %v, want the cap named with 3 in use", err)
	}
	if _, err := h.Reserve("a"); err != nil {
		t.Errorf("a retried admission of a pod the host has was refused: %v", err)
	}
	// c is seen: its reservation turns into a seen pod, the count stays 3.
	events.OnAdd(podMeta("c"), false)
	if _, err := h.Reserve("d"); err == nil {
		t.Fatal("fourth pod admitted once the third was seen")
	}
	events.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "ns/a", Obj: podMeta("a")})
	release, err := h.Reserve("d")
	if err != nil {
		t.Fatalf("a pod gone left no room: %v", err)
	}
	release()
	if _, err := h.Reserve("e"); err != nil {
		t.Fatalf("a released reservation left no room: %v", err)
	}
	// A reservation the informer never confirms (the create's answer was
	// lost) lapses rather than holding room for ever.
	now = now.Add(2 * reservationLifetime)
	if _, err := h.Reserve("f"); err != nil {
		t.Fatalf("a lapsed reservation still counted: %v", err)
	}
}

func TestHostPodsNoCap(t *testing.T) {
	h := NewHostPods(0)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := h.Reserve(name); err != nil {
			t.Fatal(err)
		}
	}
	var unset *HostObjects
	if _, err := unset.Reserve("a"); err != nil {
		t.Fatal(err)
	}
}

// The cap on host Services counts and refuses as the cap on host pods,
// naming its own flag.
func TestHostServicesCap(t *testing.T) {
	h := NewHostServices(1)
	h.Handler().OnAdd(podMeta("a"), true)
	_, err := h.Reserve("b")
	var limit *LimitError
	if !errors.As(err, &limit) || limit.Flag != FlagMaxHostServices || !strings.Contains(err.Error(), "host Service b") || !strings.Contains(err.Error(), "--max-host-services") {
		t.Errorf("over the cap: %v", err)
	}
	if _, err := h.Reserve("a"); err != nil {
		t.Errorf("a Service already counted: %v", err)
	}
}
