// Command nodeimage packs the static podbridge-workload binary into the
// image tarball the real node imports (make node-bins): there is no
// registry and no Docker engine here, so images are built from the binary
// alone with go-containerregistry. Kept in a module of its own so podbridge
// does not depend on it.
//
// Usage: nodeimage -binary bin/node/podbridge-workload -out bin/node/images.tar
//
// The tarball holds two tags of one layer: the pause image (entrypoint
// `podbridge-workload pause`: containerd runs the sandbox's image without
// arguments, so it needs its own entrypoint) and the workload image
// (entrypoint `podbridge-workload`, steps from the pod's args). /tar and
// /test link to the binary, which plays them for kubectl cp.
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

func main() {
	binary := flag.String("binary", "", "the static podbridge-workload binary")
	out := flag.String("out", "", "the image tarball to write")
	pause := flag.String("pause", "podbridge.local/pause:1", "the pause image's tag")
	workload := flag.String("workload", "podbridge.local/workload:1", "the workload image's tag")
	flag.Parse()
	if *binary == "" || *out == "" {
		log.Fatal("usage: nodeimage -binary FILE -out FILE")
	}
	if err := build(*binary, *out, *pause, *workload); err != nil {
		log.Fatal(err)
	}
}

const path = "/podbridge-workload"

func build(binary, out, pauseTag, workloadTag string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	layer, err := binaryLayer(bin)
	if err != nil {
		return err
	}
	base, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	images := map[name.Reference]v1.Image{}
	for tag, entrypoint := range map[string][]string{
		pauseTag:    {path, "pause"},
		workloadTag: {path},
	} {
		ref, err := name.NewTag(tag)
		if err != nil {
			return err
		}
		img, err := mutate.Config(base, v1.Config{Entrypoint: entrypoint, WorkingDir: "/", Env: []string{"PATH=/"}})
		if err != nil {
			return err
		}
		// A fixed creation time keeps the tarball reproducible.
		if img, err = mutate.CreatedAt(img, v1.Time{Time: time.Unix(0, 0)}); err != nil {
			return err
		}
		img, err = mutate.ConfigFile(img, withPlatform(img))
		if err != nil {
			return err
		}
		images[ref] = img
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, images); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// withPlatform sets the OS and architecture containerd matches on import.
func withPlatform(img v1.Image) *v1.ConfigFile {
	cf, err := img.ConfigFile()
	if err != nil {
		log.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return cf
}

// binaryLayer is one layer holding the binary at path, its aliases /tar
// and /test, and /tmp.
func binaryLayer(bin []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: path[1:], Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	// kubectl cp runs `tar` and `test`, found on PATH (/): the binary plays
	// both when invoked under those names.
	for _, alias := range []string{"tar", "test"} {
		if err := tw.WriteHeader(&tar.Header{Name: alias, Typeflag: tar.TypeSymlink, Linkname: path[1:], Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
