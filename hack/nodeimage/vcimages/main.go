// Command vcimages packs static binaries into the images of a virtual
// cluster's control-plane pod (manifests/virtualcluster), offline like the
// real node's workload and CoreDNS images: no registry, no Docker engine.
// Each image is one layer holding its binary at /<name> (its entrypoint)
// and an empty, world-writable /tmp, run as the non-root user 65532; the
// Dockerfiles under hack/images build the same images for real
// registries. The test bed imports the tarball into the real node
// (realnode.Options.ExtraImages).
//
// Usage:
//
//	vcimages -out bin/vc/images.tar \
//	  -image podbridge.local/kine:v0.17.5=bin/vc/kine \
//	  -image podbridge.local/kube-apiserver:v1.37.2=bin/vc/kube-apiserver ...
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonRoot is the user every image runs as (distroless's nonroot).
const nonRoot = "65532:65532"

type images []string

func (i *images) String() string     { return strings.Join(*i, ",") }
func (i *images) Set(v string) error { *i = append(*i, v); return nil }

func main() {
	var list images
	out := flag.String("out", "", "the image tarball to write")
	flag.Var(&list, "image", "TAG=BINARY, repeated: one image per static binary")
	flag.Parse()
	if *out == "" || len(list) == 0 {
		log.Fatal("usage: vcimages -out FILE -image TAG=BINARY [-image TAG=BINARY ...]")
	}
	if err := build(list, *out); err != nil {
		log.Fatal(err)
	}
}

func build(list []string, out string) error {
	refs := map[name.Reference]v1.Image{}
	for _, spec := range list {
		tag, binary, ok := strings.Cut(spec, "=")
		if !ok || tag == "" || binary == "" {
			return fmt.Errorf("-image %q: want TAG=BINARY", spec)
		}
		ref, err := name.NewTag(tag)
		if err != nil {
			return fmt.Errorf("-image %q: %w", spec, err)
		}
		img, err := image(binary)
		if err != nil {
			return fmt.Errorf("-image %q: %w", spec, err)
		}
		refs[ref] = img
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// image is binary's image: refused unless the binary is static, since the
// image holds nothing else (no libc, no loader).
func image(binary string) (v1.Image, error) {
	if err := static(binary); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	path := filepath.Base(binary)
	layer, err := binaryLayer(path, bin)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/" + path}, WorkingDir: "/", User: nonRoot, Env: []string{"PATH=/"}})
	if err != nil {
		return nil, err
	}
	// A fixed creation time keeps the tarball reproducible.
	if img, err = mutate.CreatedAt(img, v1.Time{Time: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64" // what containerd matches on import
	return mutate.ConfigFile(img, cf)
}

// static refuses an ELF binary that names an interpreter (the dynamic
// loader) or shared libraries.
func static(binary string) error {
	f, err := elf.Open(binary)
	if err != nil {
		return fmt.Errorf("reading %s: %w", binary, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it names an interpreter): build it with CGO_ENABLED=0", binary)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("reading %s's libraries: %w", binary, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s links %v: build it with CGO_ENABLED=0", binary, libs)
	}
	return nil
}

// binaryLayer is one layer holding the binary at /path and /tmp.
func binaryLayer(path string, bin []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: path, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
