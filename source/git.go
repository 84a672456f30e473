package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Git follows one ref of a Git remote through a cache directory. It is safe for
// concurrent use, and several processes may share a cache directory: each operation
// holds a file lock on the remote's cache.
type Git struct {
	url          string // without credentials: the only form go-git ever sees
	ref          string
	path         string
	dir          string // this remote's cache: <CacheDir>/git/<hash of url>
	auth         transport.AuthMethod
	depth        int // 1 (shallow) or 0 (full history)
	allowRewrite bool
	log          *slog.Logger

	mu sync.Mutex
}

var _ Source = (*Git)(nil)

// Refs capstan keeps in a cache repository, beside the objects. They are state, not
// remote-tracking branches: what was accepted, what was refused, and scratch space.
const (
	refSeen     = "refs/capstan/seen/"     // + remote ref name: the commit last accepted
	refRejected = "refs/capstan/rejected/" // + remote ref name: a head refused as a rewrite
	refCommits  = "refs/capstan/commits/"  // + id: pinned commits, kept as haves
)

// infiniteDepth is git's own "deepen everything" value (what --unshallow sends).
const infiniteDepth = 0x7fffffff

// keepCheckouts is how many commit checkouts stay on disk per remote: the current one
// and the two before it, so a Snapshot stays valid while the next one is prepared.
const keepCheckouts = 3

func newGit(opts Options) (*Git, error) {
	clean, user, pass, err := splitCredentials(opts.Source)
	if err != nil {
		return nil, err
	}
	ep, err := transport.NewEndpoint(clean)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", RedactURL(opts.Source), err)
	}
	auth, err := opts.Auth.method(ep, user, pass, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", clean, err)
	}
	ref := opts.Ref
	if isCommitID(ref) {
		ref = strings.ToLower(ref)
	}
	root := opts.CacheDir
	if root == "" {
		root = DefaultCacheDir()
	}
	sum := sha256.Sum256([]byte(clean))
	name := hex.EncodeToString(sum[:16])
	depth := 1
	if opts.FullHistory {
		// A shallow cache cannot become a full one by fetching with depth 0, so the two
		// modes keep separate repositories.
		name += "-full"
		depth = 0
	}
	return &Git{
		url:          clean,
		ref:          ref,
		path:         opts.Path,
		dir:          filepath.Join(root, "git", name),
		auth:         auth,
		depth:        depth,
		allowRewrite: opts.AllowRewrite,
		log:          opts.Logger,
	}, nil
}

// splitCredentials removes a password (and for http(s), the user name too) from a URL,
// returning them separately so they travel only as an auth method.
func splitCredentials(raw string) (clean, user, pass string, err error) {
	if !strings.Contains(raw, "://") {
		return raw, "", "", nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("source %s: not a valid URL: %w", RedactURL(raw), errors.Unwrap(err))
	}
	if u.User == nil {
		return raw, "", "", nil
	}
	user = u.User.Username()
	pass, _ = u.User.Password()
	if u.Scheme == "ssh" {
		if pass != "" {
			return "", "", "", fmt.Errorf("source %s: ssh passwords are not supported; use --git-ssh-key-file", RedactURL(raw))
		}
		return raw, "", "", nil
	}
	u.User = nil
	return u.String(), user, pass, nil
}

func (g *Git) String() string { return g.url }

// CacheDir is the directory holding this remote's cached repository and checkouts.
func (g *Git) CacheDir() string { return g.dir }

// Head lists the remote's refs and returns the revision the ref points at. It downloads
// no objects. A pinned commit needs no network at all. A deleted ref or a moved tag is
// reported as such; a force-push can only be recognised by Fetch.
func (g *Git) Head(ctx context.Context) (Revision, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if isCommitID(g.ref) {
		return gitRevision(g.ref, g.ref), nil
	}
	unlock, repo, err := g.openLocked(ctx)
	if err != nil {
		return Revision{}, err
	}
	defer unlock()
	t, c, err := g.remoteTarget(ctx, repo)
	if err != nil {
		return Revision{}, err
	}
	c.close()
	return gitRevision(t.display, t.commit.String()), nil
}

// Fetch brings the ref's current commit into the cache — nothing when it is already
// there — checks that it may follow it, and returns its checkout.
func (g *Git) Fetch(ctx context.Context) (Snapshot, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	unlock, repo, err := g.openLocked(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	defer unlock()

	start := time.Now()
	var rev Revision
	var commit plumbing.Hash
	var fetched bool
	if isCommitID(g.ref) {
		commit = plumbing.NewHash(g.ref)
		fetched, err = g.fetchCommit(ctx, repo, commit)
		rev = gitRevision(g.ref, g.ref)
	} else {
		var t target
		var c *conn
		t, c, err = g.remoteTarget(ctx, repo)
		if err == nil {
			commit, fetched, err = g.fetchRef(ctx, repo, c, t)
			c.close()
			rev = gitRevision(t.display, commit.String())
		}
	}
	if err != nil {
		return Snapshot{}, err
	}
	if fetched {
		g.log.Info("fetched git revision", "source", g.url, "revision", rev.String(), "duration", time.Since(start).Round(time.Millisecond))
	} else {
		g.log.Debug("git revision unchanged", "source", g.url, "revision", rev.String())
	}

	dir, err := g.checkout(repo, commit)
	if err != nil {
		return Snapshot{}, fmt.Errorf("source %s: checkout %s: %w", g.url, rev, err)
	}
	if fetched {
		// After the checkout: compaction deletes the pack files this repo value read.
		if err := compact(repo); err != nil {
			g.log.Warn("git cache compaction failed; it is retried after the next fetch", "dir", g.dir, "err", err)
		}
	}
	snap := Snapshot{Dir: filepath.Join(dir, g.path), Revision: rev}
	if g.path != "" {
		st, err := os.Stat(snap.Dir)
		if err != nil || !st.IsDir() {
			return Snapshot{}, &Error{Kind: ErrPathNotFound, Source: g.url, Ref: g.ref,
				Detail: fmt.Sprintf("%q is not a directory in %s", g.path, rev), Hint: "check --path"}
		}
	}
	return snap, nil
}

// openLocked takes the cache lock and opens (or creates) the cache repository. It opens
// the repository anew each time: another process may have added packs and refs.
func (g *Git) openLocked(ctx context.Context) (unlock func(), repo *git.Repository, err error) {
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("git cache: %w", err)
	}
	unlock, err = lockFile(ctx, filepath.Join(g.dir, "lock"))
	if err != nil {
		return nil, nil, err
	}
	repo, err = g.openRepo()
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return unlock, repo, nil
}

func (g *Git) openRepo() (*git.Repository, error) {
	path := filepath.Join(g.dir, "repo")
	repo, err := git.PlainOpen(path)
	if err == nil {
		return repo, nil
	}
	if !errors.Is(err, git.ErrRepositoryNotExists) {
		// A cache is only a cache: one that cannot be read is rebuilt.
		g.log.Warn("git cache unreadable; recreating it", "dir", path, "err", err)
		if err := os.RemoveAll(path); err != nil {
			return nil, fmt.Errorf("git cache: %w", err)
		}
	}
	repo, err = git.PlainInit(path, true)
	if err != nil {
		return nil, fmt.Errorf("git cache: %w", err)
	}
	// The URL, without credentials, so that people (and git) can tell what this is.
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{g.url}}); err != nil {
		return nil, fmt.Errorf("git cache: %w", err)
	}
	return repo, nil
}

// target is the remote ref a Git source follows, as the listing shows it.
type target struct {
	name    plumbing.ReferenceName // refs/heads/main
	display string                 // main
	want    plumbing.Hash          // what the remote advertises: a commit, or a tag object
	commit  plumbing.Hash          // the commit, annotated tags peeled
	tag     bool
}

// remoteTarget opens a conversation with the remote and resolves the ref from its
// advertisement, reporting a deleted ref and a moved tag from the listing alone. On
// success the caller closes the returned conn.
func (g *Git) remoteTarget(ctx context.Context, repo *git.Repository) (target, *conn, error) {
	c, err := g.connect(ctx)
	if err != nil {
		return target{}, nil, err
	}
	t, err := g.judgeTarget(repo, c.refs)
	if err != nil {
		c.close()
		return target{}, nil, err
	}
	return t, c, nil
}

func (g *Git) judgeTarget(repo *git.Repository, refs []*plumbing.Reference) (target, error) {
	t, err := resolveRef(refs, g.ref)
	if errors.Is(err, ErrRefNotFound) {
		for _, name := range candidateNames(g.ref) {
			if seen := readRef(repo, refSeen+name); !seen.IsZero() {
				return target{}, &Error{Kind: ErrRefDeleted, Source: g.url, Ref: g.ref,
					Detail: fmt.Sprintf("%s no longer exists (last fetched at sha1:%s)", name, seen),
					Hint:   "restore the ref on the remote, or point --ref elsewhere"}
			}
		}
	}
	if err != nil {
		return target{}, g.refError(err)
	}
	if t.tag && !g.allowRewrite {
		if seen := readRef(repo, refSeen+t.name.String()); !seen.IsZero() && seen != t.commit {
			return target{}, g.tagMoved(t, seen)
		}
	}
	return t, nil
}

func (g *Git) refError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Source, e.Ref = g.url, g.ref
		return e
	}
	return fmt.Errorf("source %s: %w", g.url, err)
}

func (g *Git) tagMoved(t target, seen plumbing.Hash) error {
	return &Error{Kind: ErrTagMoved, Source: g.url, Ref: g.ref,
		Detail: fmt.Sprintf("%s was sha1:%s when last fetched and is now sha1:%s", t.name, seen, t.commit),
		Hint:   "a release tag is expected never to move; to follow it anyway, pass --git-allow-rewrite"}
}

func (g *Git) rewritten(t target, seen, now plumbing.Hash, cached bool) error {
	detail := fmt.Sprintf("%s moved from sha1:%s to sha1:%s, which does not descend from it (force-push?)", t.name, seen, now)
	if cached {
		detail += "; refused before"
	}
	return &Error{Kind: ErrHistoryRewritten, Source: g.url, Ref: g.ref, Detail: detail,
		Hint: "to follow the rewritten branch, pass --git-allow-rewrite"}
}

// fetchRef makes the target's commit available and decides whether it may be followed.
// It reports whether anything was fetched.
func (g *Git) fetchRef(ctx context.Context, repo *git.Repository, c *conn, t target) (plumbing.Hash, bool, error) {
	seenName := plumbing.ReferenceName(refSeen + t.name.String())
	rejectedName := plumbing.ReferenceName(refRejected + t.name.String())
	seen := readRef(repo, seenName.String())
	if seen == t.commit && hasCommit(repo, t.commit) {
		return t.commit, false, nil
	}
	if !t.tag && !g.allowRewrite && !seen.IsZero() && readRef(repo, rejectedName.String()) == t.commit {
		return plumbing.ZeroHash, false, g.rewritten(t, seen, t.commit, true)
	}

	commit := t.commit
	fetched := false
	if !hasCommit(repo, commit) {
		if err := g.fetchPack(ctx, repo, c, []plumbing.Hash{t.want}, g.depth); err != nil {
			return plumbing.ZeroHash, false, err
		}
		fetched = true
		got, err := peel(repo, t.want)
		if err != nil || got != commit {
			return plumbing.ZeroHash, fetched, fmt.Errorf("source %s: %s: the fetched objects do not contain sha1:%s", g.url, t.name, commit)
		}
	}

	if !t.tag && !g.allowRewrite && !seen.IsZero() && seen != commit {
		ok, err := g.descends(ctx, repo, t, seen, commit)
		if err != nil {
			return plumbing.ZeroHash, fetched, err
		}
		if !ok {
			if err := setRef(repo, rejectedName, commit); err != nil {
				return plumbing.ZeroHash, fetched, err
			}
			return plumbing.ZeroHash, fetched, g.rewritten(t, seen, commit, false)
		}
	}
	if err := setRef(repo, seenName, commit); err != nil {
		return plumbing.ZeroHash, fetched, err
	}
	_ = repo.Storer.RemoveReference(rejectedName)
	return commit, fetched, nil
}

// descends reports whether now has old among its ancestors. A shallow cache lacks the
// history in between, so it deepens step by step — most pushes add one commit, whose
// parent is old itself and needs no fetch at all.
func (g *Git) descends(ctx context.Context, repo *git.Repository, t target, old, now plumbing.Hash) (bool, error) {
	steps := []int{16, 256, infiniteDepth}
	if g.depth == 0 {
		steps = nil // full history is already here
	}
	for i := 0; ; i++ {
		found, complete, err := isAncestor(ctx, repo, old, now)
		if err != nil || found {
			return found, err
		}
		if complete {
			return false, nil
		}
		if i == len(steps) {
			return false, fmt.Errorf("source %s: cannot tell whether %s descends from sha1:%s: history incomplete after a full fetch", g.url, t.name, old)
		}
		g.log.Debug("deepening to check ancestry", "source", g.url, "ref", t.name.String(), "depth", steps[i])
		if err := g.fetchAgain(ctx, repo, []plumbing.Hash{t.want}, steps[i]); err != nil {
			return false, err
		}
	}
}

// isAncestor walks now's history in the cache looking for old. complete is false when
// the walk reached commits whose parents are not in the cache (a shallow boundary).
func isAncestor(ctx context.Context, repo *git.Repository, old, now plumbing.Hash) (found, complete bool, err error) {
	complete = true
	seen := map[plumbing.Hash]bool{now: true}
	queue := []plumbing.Hash{now}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return false, false, err
		}
		h := queue[0]
		queue = queue[1:]
		if h == old {
			return true, true, nil
		}
		c, err := object.GetCommit(repo.Storer, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			complete = false
			continue
		}
		if err != nil {
			return false, false, err
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, complete, nil
}

// fetchCommit makes a pinned commit available: from the cache with no network; else via
// a ref whose tip it is; else by id, where the server allows it; else by searching the
// branches and tags, deeper each time.
func (g *Git) fetchCommit(ctx context.Context, repo *git.Repository, h plumbing.Hash) (bool, error) {
	keep := plumbing.ReferenceName(refCommits + h.String())
	if hasCommit(repo, h) {
		return false, setRef(repo, keep, h)
	}
	c, err := g.connect(ctx)
	if err != nil {
		return false, err
	}
	var tip, all []plumbing.Hash
	for _, r := range c.refs {
		if r.Type() != plumbing.HashReference {
			continue
		}
		name := r.Name().String()
		if r.Hash() == h {
			// A tag's peeled entry names the commit; the want is the tag itself.
			unpeeled := strings.TrimSuffix(name, "^{}")
			for _, r2 := range c.refs {
				if r2.Name().String() == unpeeled && r2.Type() == plumbing.HashReference {
					tip = []plumbing.Hash{r2.Hash()}
				}
			}
		}
		if (strings.HasPrefix(name, "refs/heads/") || strings.HasPrefix(name, "refs/tags/")) && !strings.HasSuffix(name, "^{}") {
			all = append(all, r.Hash())
		}
	}
	if tip == nil {
		// Servers that allow any reachable commit in a want (GitHub, GitLab) answer this
		// directly; git's defaults do not, and that is not an error yet.
		tip = []plumbing.Hash{h}
	}
	err = g.fetchPack(ctx, repo, c, tip, g.depth)
	c.close()
	if err != nil {
		g.log.Debug("fetch by commit id refused; searching branches and tags", "source", g.url, "commit", h.String(), "err", err)
	}
	depths := []int{16, 256, infiniteDepth}
	if g.depth == 0 {
		depths = []int{0}
	}
	for _, d := range depths {
		if hasCommit(repo, h) || len(all) == 0 {
			break
		}
		if err := g.fetchAgain(ctx, repo, all, d); err != nil {
			return true, err
		}
	}
	if !hasCommit(repo, h) {
		return true, &Error{Kind: ErrRefNotFound, Source: g.url, Ref: g.ref,
			Detail: "no branch or tag of the remote contains this commit"}
	}
	return true, setRef(repo, keep, h)
}

// fetchAgain fetches in a new conversation, for the rounds after the first.
func (g *Git) fetchAgain(ctx context.Context, repo *git.Repository, wants []plumbing.Hash, depth int) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return g.fetchPack(ctx, repo, c, wants, depth)
}

// resolveRef finds want among the listed refs: "" is the remote's HEAD, refs/... is
// exact, a short name is a branch or a tag (both at once is ambiguous).
func resolveRef(refs []*plumbing.Reference, want string) (target, error) {
	hashes := map[plumbing.ReferenceName]plumbing.Hash{}
	peeled := map[plumbing.ReferenceName]plumbing.Hash{}
	var head *plumbing.Reference
	for _, r := range refs {
		name := r.Name().String()
		switch {
		case name == "HEAD":
			head = r
		case strings.HasSuffix(name, "^{}"):
			if r.Type() == plumbing.HashReference {
				peeled[plumbing.ReferenceName(strings.TrimSuffix(name, "^{}"))] = r.Hash()
			}
		case r.Type() == plumbing.HashReference:
			hashes[r.Name()] = r.Hash()
		}
	}
	mk := func(name plumbing.ReferenceName) target {
		t := target{name: name, want: hashes[name], commit: hashes[name], display: name.String()}
		if p, ok := peeled[name]; ok {
			t.commit = p
		}
		switch {
		case name.IsBranch():
			t.display = name.Short()
		case name.IsTag():
			t.display = name.Short()
			t.tag = true
		}
		return t
	}
	switch {
	case want == "":
		if head == nil {
			return target{}, &Error{Kind: ErrRefNotFound, Detail: "the remote has no HEAD (empty repository?)", Hint: "pass --ref"}
		}
		if head.Type() == plumbing.SymbolicReference {
			if _, ok := hashes[head.Target()]; ok {
				return mk(head.Target()), nil
			}
			return target{}, &Error{Kind: ErrRefNotFound, Detail: fmt.Sprintf("the remote's HEAD points at %s, which does not exist", head.Target()), Hint: "pass --ref"}
		}
		return target{name: "HEAD", display: "HEAD", want: head.Hash(), commit: head.Hash()}, nil
	case strings.HasPrefix(want, "refs/"):
		if _, ok := hashes[plumbing.ReferenceName(want)]; ok {
			return mk(plumbing.ReferenceName(want)), nil
		}
	default:
		var found []plumbing.ReferenceName
		for _, n := range candidateNames(want) {
			if _, ok := hashes[plumbing.ReferenceName(n)]; ok {
				found = append(found, plumbing.ReferenceName(n))
			}
		}
		switch len(found) {
		case 1:
			return mk(found[0]), nil
		case 2:
			return target{}, fmt.Errorf("ref %q is ambiguous: both %s and %s exist; pass the full name as --ref", want, found[0], found[1])
		}
	}
	e := &Error{Kind: ErrRefNotFound, Detail: "no branch or tag of that name on the remote"}
	if len(want) >= 4 && len(want) < 40 && isLowerHex(strings.ToLower(want)) {
		e.Hint = "an abbreviated commit id cannot be resolved on a remote; pass the full 40-hex id"
	}
	return target{}, e
}

// candidateNames are the full names a configured ref may stand for.
func candidateNames(want string) []string {
	switch {
	case want == "" || isCommitID(want):
		return nil
	case strings.HasPrefix(want, "refs/"):
		return []string{want}
	}
	return []string{"refs/heads/" + want, "refs/tags/" + want}
}

func readRef(repo *git.Repository, name string) plumbing.Hash {
	r, err := repo.Storer.Reference(plumbing.ReferenceName(name))
	if err != nil || r.Type() != plumbing.HashReference {
		return plumbing.ZeroHash
	}
	return r.Hash()
}

func setRef(repo *git.Repository, name plumbing.ReferenceName, h plumbing.Hash) error {
	if err := repo.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
		return fmt.Errorf("git cache: %w", err)
	}
	return nil
}

func hasCommit(repo *git.Repository, h plumbing.Hash) bool {
	_, err := object.GetCommit(repo.Storer, h)
	return err == nil
}

// peel follows annotated tags to the commit they name.
func peel(repo *git.Repository, h plumbing.Hash) (plumbing.Hash, error) {
	for range 10 {
		if h.IsZero() {
			return h, errors.New("no object")
		}
		tag, err := object.GetTag(repo.Storer, h)
		if err != nil {
			break // not a tag object: a commit, or something hasCommit refuses
		}
		h = tag.Target
	}
	if !hasCommit(repo, h) {
		return h, fmt.Errorf("sha1:%s is not a commit", h)
	}
	return h, nil
}
