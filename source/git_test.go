package source

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

const stackYAML = "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: web\nspec:\n  compose: [compose.yaml]\n"

func composeYAML(replicas string) string {
	return "services:\n  web:\n    image: nginx\n    deploy:\n      replicas: " + replicas + "\n"
}

// objectCount is the number of objects in the source's cache repository.
func objectCount(t *testing.T, s Source) int {
	t.Helper()
	repo, err := git.PlainOpen(filepath.Join(s.(*Git).CacheDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	iter, err := repo.Storer.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = iter.ForEach(func(plumbing.EncodedObject) error { n++; return nil })
	return n
}

func TestGitFetchPollAndIncrementalUpdate(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("config.git"), nil)
	up.commit("first", map[string]string{
		"README.md":                    "not a manifest\n",
		"stacks/web/capstan.yaml":      stackYAML,
		"stacks/web/compose.yaml":      composeYAML("1"),
		"stacks/web/scripts/run.sh":    "#!/bin/sh\n",
		"other/unrelated/big-file.txt": strings.Repeat("x", 10000),
	})
	c1 := up.commit("second", map[string]string{"stacks/web/compose.yaml": composeYAML("2")})
	up.pushMain()

	cache := t.TempDir()
	opts := Options{Source: srv.url("config.git"), Ref: "main", Path: "stacks", CacheDir: cache}

	// First fetch: one listing, one upload-pack.
	srv.reset()
	snap := mustFetch(t, newSource(t, opts))
	if want := "main@sha1:" + c1.String(); snap.Revision.String() != want {
		t.Errorf("revision %q, want %q", snap.Revision, want)
	}
	if got := readFile(t, snap.Dir, "web/compose.yaml"); got != composeYAML("2") {
		t.Errorf("compose.yaml = %q", got)
	}
	if filepath.Base(filepath.Dir(snap.Dir)) != c1.String() {
		t.Errorf("snapshot dir %s is not the checkout of %s", snap.Dir, c1)
	}
	if n := srv.count("/git-upload-pack"); n != 1 {
		t.Errorf("first fetch made %d upload-pack requests, want 1: %v", n, srv.requests())
	}

	// A new process (a new Source on the same cache), nothing pushed: one listing and
	// no upload-pack at all, same directory.
	srv.reset()
	again := newSource(t, opts)
	snap2 := mustFetch(t, again)
	if snap2 != snap {
		t.Errorf("unchanged remote: snapshot %+v, want %+v", snap2, snap)
	}
	if got := srv.requests(); len(got) != 1 || !strings.HasSuffix(got[0], "/info/refs") {
		t.Errorf("no-change fetch requests = %v, want exactly one GET info/refs", got)
	}
	rev, err := again.Head(ctxT(t))
	if err != nil || rev != snap.Revision {
		t.Errorf("Head = %v, %v; want %v", rev, err, snap.Revision)
	}
	if n := srv.count("/git-upload-pack"); n != 0 {
		t.Errorf("Head made %d upload-pack requests", n)
	}

	// One commit that changes one file: one upload-pack, and only the new objects —
	// the commit, the trees on the changed path (root, stacks, stacks/web) and the
	// blob — arrive. Nothing is cloned again.
	before := objectCount(t, again)
	c2 := up.commit("third", map[string]string{"stacks/web/compose.yaml": composeYAML("3")})
	up.pushMain()
	srv.reset()
	snap3 := mustFetch(t, again)
	if want := "main@sha1:" + c2.String(); snap3.Revision.String() != want {
		t.Errorf("after push: revision %q, want %q", snap3.Revision, want)
	}
	if got := readFile(t, snap3.Dir, "web/compose.yaml"); got != composeYAML("3") {
		t.Errorf("after push: compose.yaml = %q", got)
	}
	if got := readFile(t, snap3.Dir, "web/capstan.yaml"); got != stackYAML {
		t.Errorf("unchanged file after push = %q", got)
	}
	if n := srv.count("/git-upload-pack"); n != 1 {
		t.Errorf("update made %d upload-pack requests, want 1: %v", n, srv.requests())
	}
	if added := objectCount(t, again) - before; added != 5 {
		t.Errorf("update added %d objects to the cache, want 5 (commit, 3 trees, 1 blob)", added)
	}
	// The old snapshot is still there for whoever is still reading it.
	if got := readFile(t, snap.Dir, "web/compose.yaml"); got != composeYAML("2") {
		t.Errorf("previous snapshot changed: %q", got)
	}
	// Unchanged files are the previous checkout's, linked; the changed one is new.
	same := func(name string) bool {
		a, err1 := os.Stat(filepath.Join(snap.Dir, name))
		b, err2 := os.Stat(filepath.Join(snap3.Dir, name))
		return err1 == nil && err2 == nil && os.SameFile(a, b)
	}
	if !same("web/capstan.yaml") || !same("web/scripts/run.sh") {
		t.Errorf("unchanged files were written again instead of linked")
	}
	if same("web/compose.yaml") {
		t.Errorf("the changed file is shared with the previous checkout")
	}
}

func TestGitExecutableBitAndSymlinks(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("links.git"), nil)
	up.commit("files", map[string]string{"a/compose.yaml": composeYAML("1")})
	// go-git's worktree has no API for modes; write the tree entries through the index.
	wt := up.wt
	fsys := wt.Filesystem
	if err := fsys.Symlink("compose.yaml", "a/alias.yaml"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Symlink("/etc/passwd", "a/escape"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Symlink("../../outside", "a/escape2"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/alias.yaml", "a/escape", "a/escape2"} {
		if _, err := wt.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	h := up.commit("links", nil)
	up.pushMain()

	var logs logBuffer
	snap := mustFetch(t, newSource(t, Options{Source: srv.url("links.git"), Ref: "main", Logger: logs.logger()}))
	if snap.Revision.Commit() != h.String() {
		t.Fatalf("revision %v, want %s", snap.Revision, h)
	}
	if got, err := os.Readlink(filepath.Join(snap.Dir, "a/alias.yaml")); err != nil || got != "compose.yaml" {
		t.Errorf("in-repo symlink = %q, %v", got, err)
	}
	if got := readFile(t, snap.Dir, "a/alias.yaml"); got != composeYAML("1") {
		t.Errorf("reading through the symlink = %q", got)
	}
	for _, p := range []string{"a/escape", "a/escape2"} {
		if _, err := os.Lstat(filepath.Join(snap.Dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("symlink %s pointing outside the repository was written (err %v)", p, err)
		}
	}
	if !strings.Contains(logs.String(), "outside the repository") {
		t.Errorf("skipped symlinks were not logged:\n%s", logs.String())
	}
}

func TestGitForcePushIsRefused(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	a := up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	b := up.commit("b", map[string]string{"compose.yaml": composeYAML("2")})
	up.pushMain()
	cache := t.TempDir()
	opts := Options{Source: srv.url("r.git"), Ref: "main", CacheDir: cache}
	s := newSource(t, opts)
	if got := mustFetch(t, s).Revision.Commit(); got != b.String() {
		t.Fatalf("fetched %s, want %s", got, b)
	}

	// The classic rewrite: drop b, commit something else on a, force-push.
	up.resetTo(a)
	b2 := up.commit("b rewritten", map[string]string{"compose.yaml": composeYAML("9")})
	up.pushMain()
	_, err := s.Fetch(ctxT(t))
	if !errors.Is(err, ErrHistoryRewritten) {
		t.Fatalf("after a force-push: err = %v, want ErrHistoryRewritten", err)
	}
	for _, want := range []string{b.String(), b2.String(), "--git-allow-rewrite"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// Asked again, the verdict is remembered: no pack is fetched for it.
	srv.reset()
	if _, err := s.Fetch(ctxT(t)); !errors.Is(err, ErrHistoryRewritten) {
		t.Fatalf("second fetch: err = %v, want ErrHistoryRewritten", err)
	}
	if n := srv.count("/git-upload-pack"); n != 0 {
		t.Errorf("refusing a known rewrite made %d upload-pack requests", n)
	}

	// Following it deliberately works, and then it is the new baseline.
	opts.AllowRewrite = true
	if got := mustFetch(t, newSource(t, opts)).Revision.Commit(); got != b2.String() {
		t.Fatalf("with AllowRewrite: fetched %s, want %s", got, b2)
	}
	c := up.commit("c", map[string]string{"compose.yaml": composeYAML("3")})
	up.pushMain()
	if got := mustFetch(t, s).Revision.Commit(); got != c.String() {
		t.Fatalf("after accepting the rewrite, a normal push: fetched %s, want %s", got, c)
	}
}

func TestGitSeveralCommitsAtOnceAreFollowed(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	up.pushMain()
	s := newSource(t, Options{Source: srv.url("r.git"), Ref: "main"})
	mustFetch(t, s)
	var last plumbing.Hash
	for i := range 40 { // more than the first deepening step (16)
		last = up.commit("more", map[string]string{"compose.yaml": composeYAML(string(rune('a' + i%26)))})
	}
	up.pushMain()
	if got := mustFetch(t, s).Revision.Commit(); got != last.String() {
		t.Fatalf("fetched %s, want %s", got, last)
	}
}

func TestGitDeletedBranchAndMissingRef(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	up.pushMain()
	up.push("+refs/heads/main:refs/heads/feature")
	s := newSource(t, Options{Source: srv.url("r.git"), Ref: "feature"})
	mustFetch(t, s)

	up.push(":refs/heads/feature")
	_, err := s.Fetch(ctxT(t))
	if !errors.Is(err, ErrRefDeleted) {
		t.Fatalf("deleted branch: err = %v, want ErrRefDeleted", err)
	}
	if _, err := s.Head(ctxT(t)); !errors.Is(err, ErrRefDeleted) {
		t.Errorf("Head on a deleted branch: err = %v, want ErrRefDeleted", err)
	}

	never := newSource(t, Options{Source: srv.url("r.git"), Ref: "no-such-branch"})
	_, err = never.Fetch(ctxT(t))
	if !errors.Is(err, ErrRefNotFound) || errors.Is(err, ErrRefDeleted) {
		t.Fatalf("missing ref: err = %v, want ErrRefNotFound", err)
	}
	if !strings.Contains(err.Error(), "no-such-branch") {
		t.Errorf("error does not name the ref: %v", err)
	}
	_, err = newSource(t, Options{Source: srv.url("r.git"), Ref: "abc1234"}).Fetch(ctxT(t))
	if !errors.Is(err, ErrRefNotFound) || !strings.Contains(err.Error(), "full 40-hex") {
		t.Errorf("abbreviated commit: err = %v, want ErrRefNotFound with a hint", err)
	}
}

func TestGitTags(t *testing.T) {
	for _, annotated := range []bool{false, true} {
		name := "lightweight"
		if annotated {
			name = "annotated"
		}
		t.Run(name, func(t *testing.T) {
			srv := newGitServer(t)
			up := newUpstream(t, srv.url("r.git"), nil)
			a := up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
			b := up.commit("b", map[string]string{"compose.yaml": composeYAML("2")})
			up.pushMain()
			up.tag("v1.0.0", a, annotated)
			up.push("+refs/tags/v1.0.0:refs/tags/v1.0.0")

			s := newSource(t, Options{Source: srv.url("r.git"), Ref: "v1.0.0"})
			snap := mustFetch(t, s)
			if want := "v1.0.0@sha1:" + a.String(); snap.Revision.String() != want {
				t.Fatalf("revision %s, want %s", snap.Revision, want)
			}
			if got := readFile(t, snap.Dir, "compose.yaml"); got != composeYAML("1") {
				t.Errorf("tag content = %q", got)
			}
			srv.reset()
			mustFetch(t, s)
			if n := srv.count("/git-upload-pack"); n != 0 {
				t.Errorf("unchanged tag: %d upload-pack requests", n)
			}

			up.tag("v1.0.0", b, annotated)
			up.push("+refs/tags/v1.0.0:refs/tags/v1.0.0")
			srv.reset()
			_, err := s.Fetch(ctxT(t))
			if !errors.Is(err, ErrTagMoved) {
				t.Fatalf("moved tag: err = %v, want ErrTagMoved", err)
			}
			if n := srv.count("/git-upload-pack"); n != 0 {
				t.Errorf("a moved tag is recognised from the listing, but %d upload-pack requests were made", n)
			}
			if _, err := s.Head(ctxT(t)); !errors.Is(err, ErrTagMoved) {
				t.Errorf("Head: err = %v, want ErrTagMoved", err)
			}
		})
	}
}

func TestGitPinnedCommit(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	a := up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	b := up.commit("b", map[string]string{"compose.yaml": composeYAML("2")})
	up.commit("c", map[string]string{"compose.yaml": composeYAML("3")})
	up.pushMain()

	cache := t.TempDir()
	for _, h := range []plumbing.Hash{a, b} {
		// a is deep in history (git's upload-pack refuses it as a want by default, so
		// the branches are searched); b is found the same way.
		opts := Options{Source: srv.url("r.git"), Ref: strings.ToUpper(h.String()), CacheDir: cache}
		snap := mustFetch(t, newSource(t, opts))
		if want := h.String() + "@sha1:" + h.String(); snap.Revision.String() != want {
			t.Fatalf("revision %s, want %s", snap.Revision, want)
		}
		srv.reset()
		again := newSource(t, opts)
		if got := mustFetch(t, again); got != snap {
			t.Errorf("second fetch %+v, want %+v", got, snap)
		}
		if _, err := again.Head(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if got := srv.requests(); len(got) != 0 {
			t.Errorf("a cached pinned commit needs no network, but made %v", got)
		}
	}
	missing := strings.Repeat("ab", 20)
	_, err := newSource(t, Options{Source: srv.url("r.git"), Ref: missing, CacheDir: cache}).Fetch(ctxT(t))
	if !errors.Is(err, ErrRefNotFound) {
		t.Errorf("unknown commit: err = %v, want ErrRefNotFound", err)
	}
}

func TestGitDefaultBranchAndFullRefs(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	a := up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	up.pushMain()
	up.checkoutBranch("dev")
	d := up.commit("d", map[string]string{"compose.yaml": composeYAML("4")})
	up.push("+refs/heads/dev:refs/heads/dev")
	srv.setHead(t, "r.git", "main")

	snap := mustFetch(t, newSource(t, Options{Source: srv.url("r.git")}))
	if want := "main@sha1:" + a.String(); snap.Revision.String() != want {
		t.Errorf("default branch: revision %s, want %s", snap.Revision, want)
	}
	snap = mustFetch(t, newSource(t, Options{Source: srv.url("r.git"), Ref: "refs/heads/dev"}))
	if want := "dev@sha1:" + d.String(); snap.Revision.String() != want {
		t.Errorf("full ref: revision %s, want %s", snap.Revision, want)
	}

	// A branch and a tag with one name: ambiguous, said so.
	up.tag("dev", a, false)
	up.push("+refs/tags/dev:refs/tags/dev")
	_, err := newSource(t, Options{Source: srv.url("r.git"), Ref: "dev"}).Fetch(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("branch and tag named dev: err = %v, want ambiguous", err)
	}
}

func TestGitPath(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	up.commit("a", map[string]string{"deploy/prod/compose.yaml": composeYAML("1"), "README.md": "x"})
	up.pushMain()
	snap := mustFetch(t, newSource(t, Options{Source: srv.url("r.git"), Ref: "main", Path: "deploy/prod"}))
	if got := readFile(t, snap.Dir, "compose.yaml"); got != composeYAML("1") {
		t.Errorf("--path content = %q", got)
	}
	for _, p := range []string{"deploy/staging", "README.md"} {
		_, err := newSource(t, Options{Source: srv.url("r.git"), Ref: "main", Path: p}).Fetch(ctxT(t))
		if !errors.Is(err, ErrPathNotFound) || !strings.Contains(err.Error(), p) {
			t.Errorf("--path %s: err = %v, want ErrPathNotFound naming it", p, err)
		}
	}
	for _, p := range []string{"../x", "/abs", "a/../../b"} {
		if _, err := New(Options{Source: srv.url("r.git"), Path: p}); err == nil {
			t.Errorf("--path %q accepted", p)
		}
	}
}

func TestGitConcurrentFetches(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	h := up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	up.pushMain()
	cache := t.TempDir()
	// Two processes' worth of sources on one cache, and one source used by two
	// goroutines.
	shared := newSource(t, Options{Source: srv.url("r.git"), Ref: "main", CacheDir: cache})
	other := newSource(t, Options{Source: srv.url("r.git"), Ref: "main", CacheDir: cache})
	errs := make(chan error, 6)
	revs := make(chan string, 6)
	for i := range 6 {
		s := shared
		if i%2 == 1 {
			s = other
		}
		go func() {
			snap, err := s.Fetch(ctxT(t))
			errs <- err
			revs <- snap.Revision.Commit()
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		if got := <-revs; got != h.String() {
			t.Errorf("revision %s, want %s", got, h)
		}
	}
	if n := srv.count("/git-upload-pack"); n != 1 {
		t.Errorf("six concurrent fetches of one commit made %d upload-pack requests, want 1", n)
	}
}

func TestGitCacheStaysCompactAndValid(t *testing.T) {
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	up.commit("a", map[string]string{"compose.yaml": composeYAML("0"), "other.txt": "x"})
	up.pushMain()
	s := newSource(t, Options{Source: srv.url("r.git"), Ref: "main"})
	mustFetch(t, s)
	var last plumbing.Hash
	for i := range maxPacks + 4 {
		last = up.commit("next", map[string]string{"compose.yaml": composeYAML(string(rune('a' + i)))})
		up.pushMain()
		if got := mustFetch(t, s).Revision.Commit(); got != last.String() {
			t.Fatalf("update %d: fetched %s, want %s", i, got, last)
		}
	}
	repoDir := filepath.Join(s.(*Git).CacheDir(), "repo")
	packs, _ := filepath.Glob(filepath.Join(repoDir, "objects", "pack", "*.pack"))
	if len(packs) > maxPacks {
		t.Errorf("%d pack files after %d updates, want at most %d", len(packs), maxPacks+4, maxPacks)
	}
	checkouts, _ := os.ReadDir(filepath.Join(s.(*Git).CacheDir(), "checkouts"))
	if len(checkouts) != keepCheckouts {
		t.Errorf("%d checkouts kept, want %d", len(checkouts), keepCheckouts)
	}
	// The cache is a repository git itself accepts, with the URL and no more in its
	// config.
	if _, err := exec.LookPath("git"); err == nil {
		if out, err := exec.Command("git", "-C", repoDir, "fsck", "--no-dangling").CombinedOutput(); err != nil {
			t.Errorf("git fsck on the cache: %v\n%s", err, out)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(repoDir, "config"))
	if err != nil || !strings.Contains(string(cfg), srv.url("r.git")) {
		t.Errorf("cache config does not name the remote: %s %v", cfg, err)
	}
}

func TestGitFileURL(t *testing.T) {
	if _, err := exec.LookPath("git-upload-pack"); err != nil {
		if _, err := exec.LookPath("git"); err != nil {
			t.Skip("file:// runs git-upload-pack, and git is not installed")
		}
	}
	srv := newGitServer(t)
	up := newUpstream(t, srv.url("r.git"), nil)
	h := up.commit("a", map[string]string{"deploy/compose.yaml": composeYAML("1")})
	up.pushMain()
	s := newSource(t, Options{Source: "file://" + filepath.Join(srv.Root(), "r.git"), Ref: "main", Path: "deploy"})
	snap := mustFetch(t, s)
	if snap.Revision.Commit() != h.String() || readFile(t, snap.Dir, "compose.yaml") != composeYAML("1") {
		t.Errorf("file:// fetch: %+v", snap)
	}
	h2 := up.commit("b", map[string]string{"deploy/compose.yaml": composeYAML("2")})
	up.pushMain()
	if got := mustFetch(t, s).Revision.Commit(); got != h2.String() {
		t.Errorf("file:// update: %s, want %s", got, h2)
	}
}
