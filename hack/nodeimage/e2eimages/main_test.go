package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// Two programs that load the same libraries (agnhost's curl and nc both
// load libc) add each library to the layer once.
func TestProgramAddsSharedLibrariesOnce(t *testing.T) {
	bin, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	l := newLayer()
	for _, name := range []string{"usr/bin/a", "usr/bin/b"} {
		if err := l.program(name, bin); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.tw.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	r := tar.NewReader(bytes.NewReader(l.buf.Bytes()))
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name]++
	}
	libs := 0
	for name, n := range seen {
		if strings.Contains(name, ".so") {
			libs++
			if n != 1 {
				t.Errorf("%s added %d times", name, n)
			}
		}
	}
	if libs == 0 || seen["usr/bin/a"] != 1 || seen["usr/bin/b"] != 1 {
		t.Errorf("layer entries: %v", seen)
	}
}
