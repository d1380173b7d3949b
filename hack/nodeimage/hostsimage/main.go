// Command hostsimage packs the static podbridge-hosts binary
// (cmd/podbridge-hosts: the init container that writes /etc/hosts of pods
// with a subdomain) into an image tarball the real node can import, offline
// like the workload and CoreDNS images: one layer with /podbridge-hosts,
// its entrypoint, run as user 65532 (translate.HostsUID), and nothing else.
// The node tests build it and pass it to podbridge as --hosts-image.
//
// Usage: hostsimage -binary FILE -out FILE [-tag REF]
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

// DefaultTag is the reference the node tests configure.
const DefaultTag = "podbridge.local/hosts:1"

func main() {
	binary := flag.String("binary", "", "the static podbridge-hosts binary")
	out := flag.String("out", "", "the image tarball to write")
	tag := flag.String("tag", DefaultTag, "the image's reference")
	flag.Parse()
	if *binary == "" || *out == "" {
		log.Fatal("usage: hostsimage -binary FILE -out FILE [-tag REF]")
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
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/podbridge-hosts"}, WorkingDir: "/", User: "65532:65532"})
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

// binaryLayer is one layer holding the binary at /podbridge-hosts.
func binaryLayer(bin []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "podbridge-hosts", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch}); err != nil {
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
