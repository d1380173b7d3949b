// Command e2eimages builds, offline, the container images the Kubernetes
// conformance suite's selected specs run, under the exact references the
// suite names (`e2e.test --list-images`), into one tarball the real node
// imports (make conformance). There is no registry and no Docker engine
// here: each image is assembled with go-containerregistry from binaries
// built from Go source or taken from Debian packages.
//
// Usage: e2eimages -list images.txt -out images.tar -busybox FILE -sh FILE
// -agnhost FILE -nnp FILE -pause FILE -curl FILE -nc FILE -kubernetes DIR
//
// The images, each a stand-in for the suite's own:
//
//   - busybox: Debian's busybox-static with a link for every applet in
//     /bin (as the suite's image has them) and at Debian's paths, and
//     /bin/sh Debian's bash-static (POSIX mode when called as sh). Debian
//     bookworm's busybox is 1.35, whose sh drops environment variables
//     whose names are not shell identifiers (data-1) before running a
//     command; the suite's busybox 1.37 keeps them, and its envFrom specs
//     read them with `sh -c env`. bash keeps them too.
//   - agnhost (every version the suite names): the busybox base plus
//     agnhost built from the kubernetes module's source, /agnhost-2, the
//     porter's localhost certificate, /uploads and the image's user and
//     group; /bin/bash is the same bash, and /usr/bin/curl this machine's
//     curl (Debian's) with the libraries it loads, as the suite's alpine
//     base has curl (its exec hooks run it), and /usr/bin/nc Debian's
//     netcat-openbsd with its libraries, as the suite's image installs
//     netcat-openbsd: the Services specs' exec pods run
//     `nc -v -t -w 2 HOST PORT` (and -u), options busybox's nc lacks.
//   - nonewprivs: busybox plus the suite's nnp program, setuid root.
//   - nonroot: busybox running as user 1234.
//   - kitten, nautilus: agnhost plus their picture and data.json, serving
//     them with test-webserver.
//   - pause: the pause program compiled from the kubernetes module's
//     build/pause/linux/pause.c, as user 65535.
//
// Only references of registry.k8s.io are built: the suite names images of
// other registries (gcr.io/k8s-authenticated-test, invalid.registry.k8s.io)
// to see their pulls fail. References this command does not build are
// printed on stderr, one per line, prefixed "not built:".
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type inputs struct {
	busybox, sh, agnhost, nnp, pause, curl, nc, kubernetes string
}

func main() {
	var in inputs
	list := flag.String("list", "", "the suite's image references, one a line (e2e.test --list-images)")
	out := flag.String("out", "", "the image tarball to write")
	flag.StringVar(&in.busybox, "busybox", "", "Debian's static busybox binary")
	flag.StringVar(&in.sh, "sh", "", "Debian's static bash binary, the images' /bin/sh")
	flag.StringVar(&in.agnhost, "agnhost", "", "the static agnhost binary")
	flag.StringVar(&in.nnp, "nnp", "", "the static nnp binary (test/images/nonewprivs)")
	flag.StringVar(&in.pause, "pause", "", "the static pause binary (build/pause/linux/pause.c)")
	flag.StringVar(&in.curl, "curl", "", "this machine's curl (Debian's), copied into agnhost with the libraries it loads")
	flag.StringVar(&in.nc, "nc", "", "Debian's netcat-openbsd nc, copied into agnhost as /usr/bin/nc with the libraries it loads")
	flag.StringVar(&in.kubernetes, "kubernetes", "", "the k8s.io/kubernetes module's folder (pictures, certificates)")
	flag.Parse()
	if *list == "" || *out == "" || in.busybox == "" || in.sh == "" || in.agnhost == "" || in.nnp == "" || in.pause == "" || in.curl == "" || in.nc == "" || in.kubernetes == "" {
		log.Fatal("usage: e2eimages -list FILE -out FILE -busybox FILE -sh FILE -agnhost FILE -nnp FILE -pause FILE -curl FILE -nc FILE -kubernetes DIR")
	}
	refs, err := readList(*list)
	if err != nil {
		log.Fatal(err)
	}
	if err := build(refs, in, *out); err != nil {
		log.Fatal(err)
	}
}

func readList(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var refs []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" {
			refs = append(refs, line)
		}
	}
	return refs, s.Err()
}

// builders make each image the command knows, by the last element of its
// repository (busybox, agnhost, ...).
type builders map[string]func() (v1.Image, error)

func build(refs []string, in inputs, out string) error {
	img := &imager{in: in}
	known := builders{
		"busybox":    img.busybox,
		"agnhost":    img.agnhostImage,
		"nonewprivs": img.nonewprivs,
		"nonroot":    img.nonroot,
		"kitten":     func() (v1.Image, error) { return img.picture("kitten") },
		"nautilus":   func() (v1.Image, error) { return img.picture("nautilus") },
		"pause":      img.pauseImage,
	}
	images := map[name.Reference]v1.Image{}
	var built, missing []string
	for _, r := range refs {
		ref, err := name.NewTag(r)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", r, err)
		}
		// Only the suite's own registry: an image of another (the private
		// registry's agnhost, an invalid registry's) is one the suite
		// expects a pull of to fail.
		mk, ok := known[path.Base(ref.RepositoryStr())]
		if !ok || ref.RegistryStr() != "registry.k8s.io" {
			missing = append(missing, r)
			continue
		}
		image, err := mk()
		if err != nil {
			return fmt.Errorf("building %s: %w", r, err)
		}
		images[ref] = image
		built = append(built, r)
	}
	sort.Strings(missing)
	for _, r := range missing {
		fmt.Fprintln(os.Stderr, "not built:", r)
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, images); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	for _, r := range built {
		fmt.Fprintln(os.Stderr, "built:", r)
	}
	return os.Rename(tmp, out)
}

// imager builds each image once.
type imager struct {
	in           inputs
	base, agnhst v1.Image
}

var epoch = time.Unix(0, 0)

// finish sets what every image shares: the platform containerd matches on
// import, a fixed creation time (a reproducible tarball) and the config.
func finish(img v1.Image, cfg v1.Config) (v1.Image, error) {
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = "/"
	}
	img, err := mutate.Config(img, cfg)
	if err != nil {
		return nil, err
	}
	if img, err = mutate.CreatedAt(img, v1.Time{Time: epoch}); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

const passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
const group = "root:x:0:\nnobody:x:65534:\n"

func (m *imager) baseLayers() (v1.Image, error) {
	if m.base != nil {
		return m.base, nil
	}
	l := newLayer()
	for _, dir := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "etc", "home", "var", "var/tmp"} {
		l.dir(dir, 0o755)
	}
	l.dir("tmp", 0o1777)
	l.dir("root", 0o700)
	if err := l.file("bin/busybox", m.in.busybox, 0o755); err != nil {
		return nil, err
	}
	applets, err := exec.Command(m.in.busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox's applets: %w", err)
	}
	// The suite's busybox has every applet in /bin (its specs run
	// /bin/sysctl); the Debian paths (/usr/bin/env, ...) are kept too.
	linked := map[string]bool{"bin/sh": true, "bin/busybox": true}
	for _, applet := range strings.Fields(string(applets)) {
		for _, link := range []string{"bin/" + path.Base(applet), applet} {
			if !linked[link] {
				linked[link] = true
				l.symlink(link, "/bin/busybox")
			}
		}
	}
	if err := l.file("bin/sh", m.in.sh, 0o755); err != nil {
		return nil, err
	}
	l.content("etc/passwd", []byte(passwd), 0o644)
	l.content("etc/group", []byte(group), 0o644)
	if m.base, err = l.appendTo(empty.Image); err != nil {
		return nil, err
	}
	return m.base, nil
}

func (m *imager) busybox() (v1.Image, error) {
	base, err := m.baseLayers()
	if err != nil {
		return nil, err
	}
	return finish(base, v1.Config{Cmd: []string{"sh"}})
}

func (m *imager) nonroot() (v1.Image, error) {
	base, err := m.baseLayers()
	if err != nil {
		return nil, err
	}
	return finish(base, v1.Config{Cmd: []string{"sh"}, User: "1234"})
}

func (m *imager) nonewprivs() (v1.Image, error) {
	base, err := m.baseLayers()
	if err != nil {
		return nil, err
	}
	l := newLayer()
	if err := l.file("usr/local/bin/nnp", m.in.nnp, 0o4755); err != nil {
		return nil, err
	}
	img, err := l.appendTo(base)
	if err != nil {
		return nil, err
	}
	return finish(img, v1.Config{Cmd: []string{"nnp"}})
}

// agnhostLayers is the agnhost image's file system, as its Dockerfile
// makes it on its base.
func (m *imager) agnhostLayers() (v1.Image, error) {
	if m.agnhst != nil {
		return m.agnhst, nil
	}
	base, err := m.baseLayers()
	if err != nil {
		return nil, err
	}
	l := newLayer()
	if err := l.file("agnhost", m.in.agnhost, 0o755); err != nil {
		return nil, err
	}
	l.symlink("agnhost-2", "agnhost")
	if err := l.program("usr/bin/curl", m.in.curl); err != nil {
		return nil, err
	}
	if err := l.program("usr/bin/nc", m.in.nc); err != nil {
		return nil, err
	}
	l.symlink("bin/bash", "sh")
	l.dir("uploads", 0o755)
	porter := filepath.Join(m.in.kubernetes, "test/images/agnhost/porter")
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		if err := l.file(f, filepath.Join(porter, f), 0o644); err != nil {
			return nil, err
		}
	}
	l.content("etc/passwd", []byte(passwd+"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"), 0o644)
	l.content("etc/group", []byte(group+"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"), 0o644)
	if m.agnhst, err = l.appendTo(base); err != nil {
		return nil, err
	}
	return m.agnhst, nil
}

func (m *imager) agnhostImage() (v1.Image, error) {
	img, err := m.agnhostLayers()
	if err != nil {
		return nil, err
	}
	return finish(img, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}})
}

// picture is the kitten or nautilus image: agnhost serving a picture and
// data.json from /.
func (m *imager) picture(which string) (v1.Image, error) {
	img, err := m.agnhostLayers()
	if err != nil {
		return nil, err
	}
	html := filepath.Join(m.in.kubernetes, "test/images", which, "html")
	l := newLayer()
	for _, f := range []string{which + ".jpg", "data.json"} {
		if err := l.file(f, filepath.Join(html, f), 0o644); err != nil {
			return nil, err
		}
	}
	if img, err = l.appendTo(img); err != nil {
		return nil, err
	}
	return finish(img, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"test-webserver"}})
}

func (m *imager) pauseImage() (v1.Image, error) {
	l := newLayer()
	if err := l.file("pause", m.in.pause, 0o755); err != nil {
		return nil, err
	}
	img, err := l.appendTo(empty.Image)
	if err != nil {
		return nil, err
	}
	return finish(img, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535", Env: []string{"PATH=/"}})
}

// layer is a tar layer being written, entries in the order added.
type layer struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	err  error
	dirs map[string]bool
	// libs are the libraries program added.
	libs map[string]bool
}

func newLayer() *layer {
	l := &layer{dirs: map[string]bool{}, libs: map[string]bool{}}
	l.tw = tar.NewWriter(&l.buf)
	return l
}

// program adds the dynamically linked binary at name, and each library
// ldd says it loads at the path ldd names (the files, not their links).
func (l *layer) program(name, binary string) error {
	out, err := exec.Command("ldd", binary).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", binary, err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>":
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		}
		if len(f) > 0 && f[len(f)-1] == "found" { // "libx.so => not found"
			return fmt.Errorf("ldd %s: %s", binary, strings.TrimSpace(line))
		}
		if lib == "" || l.libs[lib] {
			continue // the vDSO, or a library another program loads too
		}
		l.libs[lib] = true
		l.parents(lib[1:])
		if err := l.file(lib[1:], lib, 0o755); err != nil {
			return err
		}
	}
	l.parents(name)
	return l.file(name, binary, 0o755)
}

// parents adds the folders above name this layer has not added.
func (l *layer) parents(name string) {
	dir := path.Dir(name)
	if dir == "." || l.dirs[dir] {
		return
	}
	l.parents(dir)
	l.dir(dir, 0o755)
}

func (l *layer) header(h *tar.Header) {
	if l.err == nil {
		h.ModTime = epoch
		l.err = l.tw.WriteHeader(h)
	}
}

func (l *layer) dir(name string, mode int64) {
	l.dirs[name] = true
	l.header(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode})
}

func (l *layer) symlink(name, target string) {
	l.header(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777})
}

func (l *layer) content(name string, b []byte, mode int64) {
	l.header(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(b))})
	if l.err == nil {
		_, l.err = l.tw.Write(b)
	}
}

func (l *layer) file(name, from string, mode int64) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	l.content(name, b, mode)
	return nil
}

func (l *layer) appendTo(img v1.Image) (v1.Image, error) {
	if l.err == nil {
		l.err = l.tw.Close()
	}
	if l.err != nil {
		return nil, l.err
	}
	b := l.buf.Bytes()
	tl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, tl)
}
