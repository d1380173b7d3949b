package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The image has no shell and no coreutils; kubectl cp runs `tar` and
// `test` in the container. The image links both names to this binary,
// which plays them (tarMain, testMain) when invoked under them: just what
// kubectl cp sends, with GNU tar's member names.

// tarMain is `tar cf - PATH...` (PATH's tree to stdout) and
// `tar [--no-same-permissions] [--no-same-owner] -xmf - [-C DIR]` (stdin
// into DIR), the two commands kubectl cp runs.
func tarMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	op, dir, paths, err := tarArgs(args)
	if err == nil {
		switch op {
		case 'c':
			err = tarCreate(stdout, stderr, paths)
		case 'x':
			err = tarExtract(stdin, dir)
		}
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "tar: %v\n", err)
		return 2
	}
	return 0
}

// tarArgs reads GNU tar's old-style (`cf`) and short (`-xmf`) option
// bundles, -C DIR and the long options kubectl cp may add. The archive
// must be stdin or stdout (`f -`).
func tarArgs(args []string) (op byte, dir string, paths []string, err error) {
	dir = "."
	archive := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--no-same-permissions" || a == "--no-same-owner":
			// Ownership and modes are not restored anyway.
		case strings.HasPrefix(a, "--"):
			return 0, "", nil, fmt.Errorf("unsupported option %s", a)
		case i == 0 || (strings.HasPrefix(a, "-") && a != "-"):
			for _, c := range []byte(strings.TrimPrefix(a, "-")) {
				switch c {
				case 'c', 'x':
					if op != 0 && op != c {
						return 0, "", nil, errors.New("both c and x")
					}
					op = c
				case 'm', 'v':
				case 'f', 'C':
					if i+1 >= len(args) {
						return 0, "", nil, fmt.Errorf("option %c needs an argument", c)
					}
					i++
					if c == 'f' {
						archive = args[i]
					} else {
						dir = args[i]
					}
				default:
					return 0, "", nil, fmt.Errorf("unsupported option %c", c)
				}
			}
		default:
			paths = append(paths, a)
		}
	}
	switch {
	case op == 0:
		return 0, "", nil, errors.New("one of c or x is needed")
	case archive != "-":
		return 0, "", nil, fmt.Errorf("archive %q: only - (stdin, stdout) is supported", archive)
	case op == 'c' && len(paths) == 0:
		return 0, "", nil, errors.New("nothing to archive")
	case op == 'x' && len(paths) > 0:
		return 0, "", nil, errors.New("extracting named members is not supported")
	}
	return op, dir, paths, nil
}

// tarCreate writes each path's tree, named as GNU tar names it (leading
// slashes removed).
func tarCreate(out, stderr io.Writer, paths []string) error {
	tw := tar.NewWriter(out)
	warned := false
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			link := ""
			if info.Mode()&fs.ModeSymlink != 0 {
				if link, err = os.Readlink(path); err != nil {
					return err
				}
			}
			hdr, err := tar.FileInfoHeader(info, link)
			if err != nil {
				return err
			}
			name := strings.TrimLeft(filepath.ToSlash(path), "/")
			if name != filepath.ToSlash(path) && !warned {
				_, _ = fmt.Fprintln(stderr, "tar: Removing leading `/' from member names")
				warned = true
			}
			if info.IsDir() && !strings.HasSuffix(name, "/") {
				name += "/"
			}
			hdr.Name = name
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// tarExtract writes the archive's directories, files and symlinks under
// dir; a member naming a place outside dir is refused. (A symlink member
// followed by one written through it could still leave dir: this tar runs
// inside a test container, on the container's own files.)
func tarExtract(in io.Reader, dir string) error {
	tr := tar.NewReader(in)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// Leading slashes are dropped, as GNU tar drops them.
		rel := filepath.Clean(filepath.FromSlash(strings.TrimLeft(hdr.Name, "/")))
		if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("member %q leaves the directory", hdr.Name)
		}
		target := filepath.Join(dir, rel)
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("member %q: unsupported type %c", hdr.Name, hdr.Typeflag)
		}
	}
}

// testMain is `test -d|-f|-e PATH`, which kubectl cp runs to learn whether
// the destination is a directory: exit 0 when it holds, 1 when not.
func testMain(args []string) int {
	if len(args) != 2 {
		return 2
	}
	info, err := os.Stat(args[1])
	switch {
	case err != nil:
		return 1
	case args[0] == "-e", args[0] == "-d" && info.IsDir(), args[0] == "-f" && info.Mode().IsRegular():
		return 0
	case args[0] == "-d" || args[0] == "-f":
		return 1
	}
	return 2
}
