// Command corednsimage packs the static coredns binary hack/coredns builds
// into an image tarball the real node can import (make node-bins), offline
// like the workload image: one layer with /coredns, its entrypoint, and
// nothing else (no shell, no resolver configuration of this machine). The
// Corefile comes from the pod (`-conf FILE` in its args, from a mounted
// ConfigMap): a coredns run without one would serve the whoami plugin,
// which is not compiled in, and exit.
//
// Usage: corednsimage -binary bin/node/coredns -out bin/node/coredns.tar [-tag REF]
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DefaultTag is the reference docs/testing.md documents.
const DefaultTag = "podbridge.local/coredns:1.15.0"

func main() {
	binary := flag.String("binary", "", "the static coredns binary")
	out := flag.String("out", "", "the image tarball to write")
	tag := flag.String("tag", DefaultTag, "the image's reference")
	flag.Parse()
	if *binary == "" || *out == "" {
		log.Fatal("usage: corednsimage -binary FILE -out FILE [-tag REF]")
	}
	if err := build(*binary, *out, *tag); err != nil {
		log.Fatal(err)
	}
}

func build(binary, out, tag string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	layer, err := binaryLayer(bin)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	// Port 53 and the health (8080) and ready (8181) plugins' defaults.
	img, err = mutate.Config(img, v1.Config{
		Entrypoint: []string{"/coredns"}, WorkingDir: "/",
		ExposedPorts: map[string]struct{}{"53/udp": {}, "53/tcp": {}, "8080/tcp": {}, "8181/tcp": {}},
	})
	if err != nil {
		return err
	}
	// A fixed creation time keeps the tarball reproducible.
	if img, err = mutate.CreatedAt(img, v1.Time{Time: time.Unix(0, 0)}); err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64" // what containerd matches on import
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, map[name.Reference]v1.Image{ref: img}); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// binaryLayer is one layer holding the binary at /coredns and /tmp.
func binaryLayer(bin []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "coredns", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch}); err != nil {
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
