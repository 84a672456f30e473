package source

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// checkout returns a directory holding the commit's files, writing it when it does not
// exist yet. Checkouts are immutable, one per commit, written to a temporary name and
// renamed into place, so a reader never sees half a tree. There is no index and no .git
// in them: they are plain files.
func (g *Git) checkout(repo *git.Repository, h plumbing.Hash) (string, error) {
	parent := filepath.Join(g.dir, "checkouts")
	dir := filepath.Join(parent, h.String())
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // most recently used: kept by gcCheckouts
		return dir, g.gcCheckouts(parent)
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return "", err
	}
	if err := g.writeTree(repo, h, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return dir, g.gcCheckouts(parent)
}

// writeTree writes every file of the commit under dir through an os.Root, so no entry
// (a crafted tree, a symlinked directory) can write outside it.
func (g *Git) writeTree(repo *git.Repository, h plumbing.Hash, dir string) error {
	commit, err := object.GetCommit(repo.Storer, h)
	if err != nil {
		return err
	}
	tree, err := commit.Tree()
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	// Files skips submodules: their content is another repository, not this one.
	return tree.Files().ForEach(func(f *object.File) error {
		name := f.Name
		if !safeTreePath(name) {
			g.log.Warn("skipping a file with an unsafe path", "source", g.url, "path", name)
			return nil
		}
		local := filepath.FromSlash(name)
		if d := filepath.Dir(local); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		switch f.Mode {
		case filemode.Symlink:
			target, err := f.Contents()
			if err != nil {
				return err
			}
			// A link may point anywhere in the repository, never out of it: a manifest
			// must not be able to read the host's files through one.
			if filepath.IsAbs(target) || !filepath.IsLocal(filepath.Join(filepath.Dir(local), target)) {
				g.log.Warn("skipping a symlink that points outside the repository", "source", g.url, "path", name, "target", target)
				return nil
			}
			return root.Symlink(target, local)
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			perm := os.FileMode(0o644)
			if f.Mode == filemode.Executable {
				perm = 0o755
			}
			return writeBlob(root, local, perm, f)
		}
		return nil
	})
}

func writeBlob(root *os.Root, name string, perm os.FileMode, f *object.File) error {
	r, err := f.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// safeTreePath refuses what git itself refuses to check out: absolute paths, "..", and
// any ".git" component.
func safeTreePath(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") {
			return false
		}
	}
	return path.Clean(name) == name
}

// gcCheckouts removes leftovers of interrupted checkouts and all but the most recently
// used keepCheckouts checkouts. The caller holds the cache lock.
func (g *Git) gcCheckouts(parent string) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	type co struct {
		name string
		used time.Time
	}
	var cos []co
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			_ = os.RemoveAll(filepath.Join(parent, e.Name()))
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		cos = append(cos, co{e.Name(), info.ModTime()})
	}
	sort.Slice(cos, func(i, j int) bool { return cos[i].used.After(cos[j].used) })
	for i := keepCheckouts; i < len(cos); i++ {
		if err := os.RemoveAll(filepath.Join(parent, cos[i].name)); err != nil {
			return fmt.Errorf("removing old checkout: %w", err)
		}
	}
	return nil
}
