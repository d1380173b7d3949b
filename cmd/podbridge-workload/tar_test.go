package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// tree writes files (relative name → content) under dir.
func tree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree reads every regular file under dir.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// What kubectl cp runs, in both directions: `tar cf - /abs/src` names
// members without the leading slash (as GNU tar does, and as kubectl's
// untar expects), and `tar -xmf - -C DIR` (with or without
// --no-preserve's options) puts them back.
func TestTarAsKubectlCpRunsIt(t *testing.T) {
	files := map[string]string{"a.txt": "alpha\n", "sub/b.bin": "\x00\x01binary", "sub/deeper/c": strings.Repeat("c", 70000)}
	src := filepath.Join(t.TempDir(), "src")
	tree(t, src, files)
	var archive, stderr bytes.Buffer
	if code := tarMain([]string{"cf", "-", src}, nil, &archive, &stderr); code != 0 {
		t.Fatalf("tar cf: exit %d: %s", code, stderr.String())
	}
	tr := tar.NewReader(bytes.NewReader(archive.Bytes()))
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
	prefix := strings.TrimLeft(src, "/")
	want := []string{prefix + "/", prefix + "/a.txt", prefix + "/sub/", prefix + "/sub/b.bin", prefix + "/sub/deeper/", prefix + "/sub/deeper/c"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("members %q, want %q", names, want)
	}
	for _, args := range [][]string{
		{"-xmf", "-", "-C"},
		{"--no-same-permissions", "--no-same-owner", "-xmf", "-", "-C"},
	} {
		dest := t.TempDir()
		if code := tarMain(append(args, dest), bytes.NewReader(archive.Bytes()), io.Discard, &stderr); code != 0 {
			t.Fatalf("tar %q: exit %d: %s", args, code, stderr.String())
		}
		if got := readTree(t, filepath.Join(dest, prefix)); !reflect.DeepEqual(got, files) {
			t.Errorf("tar %q extracted %v", args, got)
		}
	}
}

// The archives interoperate with GNU tar both ways.
func TestTarInteroperatesWithGNUTar(t *testing.T) {
	gnu, err := exec.LookPath("tar")
	if err != nil {
		t.Fatalf("GNU tar, the reference, is not installed: %v", err)
	}
	files := map[string]string{"x": "from podbridge\n", "d/y": "nested\n"}
	src := t.TempDir()
	tree(t, src, files)
	var ours, stderr bytes.Buffer
	if code := tarMain([]string{"cf", "-", src}, nil, &ours, &stderr); code != 0 {
		t.Fatalf("tar cf: exit %d: %s", code, stderr.String())
	}
	dest := t.TempDir()
	cmd := exec.Command(gnu, "-xmf", "-", "-C", dest)
	cmd.Stdin = &ours
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GNU tar extracting ours: %v: %s", err, out)
	}
	if got := readTree(t, filepath.Join(dest, src)); !reflect.DeepEqual(got, files) {
		t.Errorf("GNU tar extracted %v", got)
	}
	theirs, err := exec.Command(gnu, "cf", "-", src).Output()
	if err != nil {
		t.Fatalf("GNU tar cf: %v", err)
	}
	dest = t.TempDir()
	if code := tarMain([]string{"-xmf", "-", "-C", dest}, bytes.NewReader(theirs), io.Discard, &stderr); code != 0 {
		t.Fatalf("extracting GNU tar's: exit %d: %s", code, stderr.String())
	}
	if got := readTree(t, filepath.Join(dest, src)); !reflect.DeepEqual(got, files) {
		t.Errorf("extracted from GNU tar's archive: %v", got)
	}
}

// A member naming a place outside -C's directory is refused, and nothing
// is written there.
func TestTarExtractRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../escaped", "a/../../escaped", "/escaped-abs"} {
		var archive bytes.Buffer
		tw := tar.NewWriter(&archive)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		code := tarMain([]string{"-xmf", "-", "-C", dest}, &archive, io.Discard, &stderr)
		if name == "/escaped-abs" {
			// GNU tar strips the leading slash: it lands inside dest.
			if code != 0 {
				t.Errorf("%s: exit %d: %s", name, code, stderr.String())
			}
			if _, err := os.Stat(filepath.Join(dest, "escaped-abs")); err != nil {
				t.Errorf("%s not under dest: %v", name, err)
			}
			continue
		}
		if code == 0 || !strings.Contains(stderr.String(), "leaves the directory") {
			t.Errorf("%s: exit %d, %q; want refused", name, code, stderr.String())
		}
		if _, err := os.Stat(filepath.Join(parent, "escaped")); !os.IsNotExist(err) {
			t.Errorf("%s written outside dest: %v", name, err)
		}
	}
}

func TestTarArgsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"cf", "/tmp/archive.tar", "/x"}, // archive not stdout
		{"-xzf", "-"},                    // compression
		{"cf", "-"},                      // nothing to archive
		{"-xf", "-", "member"},           // named members
		{"--exclude=x", "cf", "-", "/x"}, // unknown long option
		{"cxf", "-", "/x"},
	} {
		var stderr bytes.Buffer
		if code := tarMain(args, strings.NewReader(""), io.Discard, &stderr); code == 0 {
			t.Errorf("tar %q accepted", args)
		}
	}
}

func TestTestCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-d", dir}, 0}, {[]string{"-d", file}, 1}, {[]string{"-d", filepath.Join(dir, "none")}, 1},
		{[]string{"-f", file}, 0}, {[]string{"-f", dir}, 1}, {[]string{"-e", file}, 0}, {[]string{"-x", file}, 2}, {[]string{"-d"}, 2},
	} {
		if got := testMain(tc.args); got != tc.want {
			t.Errorf("test %q = %d, want %d", tc.args, got, tc.want)
		}
	}
}
