package reflector

import (
	"fmt"
	"testing"

	"github.com/podbridge/podbridge/translate"
)

func TestFieldsCutsRememberAndStayBounded(t *testing.T) {
	f := &fieldsCuts{cuts: map[string][]byte{}}
	tree := func(i int) []byte {
		return fmt.Appendf(nil, `{"f:metadata":{"f:labels":{"f:app-%d":{}}},"f:spec":{"f:containers":{}}}`, i)
	}
	for i := range maxFieldsCuts + 10 {
		raw := tree(i)
		if got, want := string(f.cut(raw)), string(translate.OwnedKeysFields(raw)); got != want {
			t.Fatalf("cut of tree %d = %s, want %s", i, got, want)
		}
		if again := string(f.cut(raw)); again != string(translate.OwnedKeysFields(raw)) {
			t.Fatalf("remembered cut of tree %d = %s", i, again)
		}
	}
	if len(f.cuts) > maxFieldsCuts {
		t.Errorf("%d cuts remembered, bound is %d", len(f.cuts), maxFieldsCuts)
	}
}
