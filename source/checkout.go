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
// in them: they are plain files. A file that the previous checkout already holds with
// the same content and mode is hard-linked from it instead of written again: a
// one-file commit in a large repository costs one file write, not thousands.
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
	prevName, prev := g.previousCheckout(repo, parent)
	if err := g.writeTreeFrom(repo, h, parent, filepath.Base(tmp), prevName, prev); err != nil {
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

// blobAt is a tree entry's content and mode: what must match for a file to be reused.
type blobAt struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// previousCheckout finds the most recently used checkout and indexes its commit's tree
// by path. Any trouble just means nothing is reused.
func (g *Git) previousCheckout(repo *git.Repository, parent string) (string, map[string]blobAt) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return "", nil
	}
	var best string
	var bestTime time.Time
	for _, e := range entries {
		if !e.IsDir() || !isCommitID(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err == nil && info.ModTime().After(bestTime) {
			best, bestTime = e.Name(), info.ModTime()
		}
	}
	if best == "" {
		return "", nil
	}
	commit, err := object.GetCommit(repo.Storer, plumbing.NewHash(best))
	if err != nil {
		return "", nil
	}
	tree, err := commit.Tree()
	if err != nil {
		return "", nil
	}
	index := map[string]blobAt{}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, e, err := w.Next()
		if err != nil {
			break
		}
		if e.Mode == filemode.Regular || e.Mode == filemode.Executable || e.Mode == filemode.Deprecated {
			index[name] = blobAt{e.Hash, e.Mode}
		}
	}
	return best, index
}

// writeTree writes every file of the commit h under dir, which must exist and be empty.
func (g *Git) writeTree(repo *git.Repository, h plumbing.Hash, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	return g.writeTreeFrom(repo, h, filepath.Dir(abs), filepath.Base(abs), "", nil)
}

// writeTreeFrom writes the commit's files into parent/name, linking unchanged files from
// parent/prevName. Everything goes through an os.Root on parent, so no entry (a crafted
// tree, a symlinked directory) can write outside it.
func (g *Git) writeTreeFrom(repo *git.Repository, h plumbing.Hash, parent, name, prevName string, prev map[string]blobAt) error {
	commit, err := object.GetCommit(repo.Storer, h)
	if err != nil {
		return err
	}
	tree, err := commit.Tree()
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(parent)
	if err != nil {
		return err
	}
	defer root.Close()
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	made := map[string]bool{}
	for {
		path, e, err := w.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		// Directories are made for the files in them; submodules are another
		// repository's content and are left out.
		if e.Mode == filemode.Dir || e.Mode == filemode.Submodule {
			continue
		}
		if !safeTreePath(path) {
			g.log.Warn("skipping a file with an unsafe path", "source", g.url, "path", path)
			continue
		}
		local := filepath.FromSlash(path)
		if d := filepath.Dir(local); d != "." && !made[d] {
			if err := root.MkdirAll(filepath.Join(name, d), 0o755); err != nil {
				return err
			}
			made[d] = true
		}
		dst := filepath.Join(name, local)
		if p, ok := prev[path]; ok && p == (blobAt{e.Hash, e.Mode}) {
			if root.Link(filepath.Join(prevName, local), dst) == nil {
				continue
			}
		}
		if err := g.writeEntry(repo, root, dst, path, e); err != nil {
			return err
		}
	}
}

func (g *Git) writeEntry(repo *git.Repository, root *os.Root, dst, path string, e object.TreeEntry) error {
	blob, err := object.GetBlob(repo.Storer, e.Hash)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch e.Mode {
	case filemode.Symlink:
		r, err := blob.Reader()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(r, 4096))
		r.Close()
		if err != nil {
			return err
		}
		target := string(b)
		// A link may point anywhere in the repository, never out of it: a manifest
		// must not be able to read the host's files through one.
		if filepath.IsAbs(target) || !filepath.IsLocal(filepath.Join(filepath.Dir(filepath.FromSlash(path)), target)) {
			g.log.Warn("skipping a symlink that points outside the repository", "source", g.url, "path", path, "target", target)
			return nil
		}
		return root.Symlink(target, dst)
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		perm := os.FileMode(0o644)
		if e.Mode == filemode.Executable {
			perm = 0o755
		}
		return writeBlob(root, dst, perm, blob)
	}
	return nil
}

func writeBlob(root *os.Root, name string, perm os.FileMode, f *object.Blob) error {
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
