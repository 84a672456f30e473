package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Local is a directory on disk. It needs no Git: its revision is a digest of the files
// under Dir, so it changes exactly when a file's name, content, executable bit or a
// symlink's target changes. `.git` directories are left out of the digest. (A local
// checkout whose commit should be recorded is better given as a file:// URL.)
type Local struct {
	root string
	dir  string
}

var _ Source = (*Local)(nil)

func newLocal(root, path string) (*Local, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", root, err)
	}
	return &Local{root: root, dir: filepath.Join(abs, path)}, nil
}

func (l *Local) String() string { return l.root }

// Head digests the directory.
func (l *Local) Head(ctx context.Context) (Revision, error) {
	st, err := os.Stat(l.dir)
	if err != nil {
		return Revision{}, &Error{Kind: ErrPathNotFound, Source: l.root, Detail: l.dir, Err: unwrapPathError(err), Hint: "check --source and --path"}
	}
	if !st.IsDir() {
		return Revision{}, &Error{Kind: ErrPathNotFound, Source: l.root, Detail: l.dir + " is not a directory"}
	}
	sum, err := digestDir(ctx, l.dir)
	if err != nil {
		return Revision{}, fmt.Errorf("source %s: %w", l.root, err)
	}
	return Revision{Ref: "local", Digest: "sha256:" + sum}, nil
}

// Fetch returns the directory itself: there is nothing to download.
func (l *Local) Fetch(ctx context.Context) (Snapshot, error) {
	rev, err := l.Head(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Dir: l.dir, Revision: rev}, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// digestDir hashes a directory tree in a stable order (WalkDir is lexical): for each
// entry its slash path, its kind and mode bit, and its content hash or link target.
func digestDir(ctx context.Context, dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" && p != dir {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "link\x00%s\x00%s\x00", rel, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			sum, err := fileSHA256(p)
			if err != nil {
				return err
			}
			exec := "0"
			if info.Mode()&0o111 != 0 {
				exec = "1"
			}
			fmt.Fprintf(h, "file\x00%s\x00%s\x00%s\x00", rel, exec, sum)
		}
		// Sockets, devices and pipes are no manifests; they do not count.
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
