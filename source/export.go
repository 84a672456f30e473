package source

import (
	"fmt"
	"log/slog"
	"path/filepath"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// ExportRevision writes the files of revision rev ("HEAD", a branch, "origin/main", a
// tag or a commit id — anything `git rev-parse` accepts that go-git resolves) of the local
// Git repository that contains dir into dst, which must exist and be empty. It needs no
// network: it is what `capstan diff --base/--head` plans from in a pull request's
// checkout. The revision it returns names rev as given.
func ExportRevision(dir, rev, dst string) (Revision, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return Revision{}, fmt.Errorf("open the Git repository at %s: %w", dir, err)
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return Revision{}, fmt.Errorf("revision %q in %s: %w (fetch it first, e.g. git fetch origin)", rev, dir, err)
	}
	g := &Git{url: dir, log: slog.New(slog.DiscardHandler)}
	if err := g.writeTree(repo, *h, dst); err != nil {
		return Revision{}, fmt.Errorf("write revision %q of %s: %w", rev, dir, err)
	}
	return Revision{Ref: rev, Digest: "sha1:" + h.String()}, nil
}

// repoRoot is the top directory of the work tree holding dir, for mapping a --source
// subdirectory to its path inside the exported tree.
func repoRoot(dir string) (string, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	return wt.Filesystem.Root(), nil
}

// RepoPath returns dir relative to the top of its Git work tree ("" at the top), so that
// a subdirectory given as --source finds the same files in an exported revision.
func RepoPath(dir string) (string, error) {
	root, err := repoRoot(dir)
	if err != nil {
		return "", fmt.Errorf("open the Git repository at %s: %w", dir, err)
	}
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	rootAbs, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	if abs, err = filepath.Abs(abs); err != nil {
		return "", err
	}
	rel, err := filepath.Rel(rootAbs, abs)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", fmt.Errorf("%s is not inside the work tree %s", dir, root)
	}
	if rel == "." {
		rel = ""
	}
	return filepath.ToSlash(rel), nil
}
