package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/storage/memory"
)

// capstan speaks the fetch protocol through go-git's transport layer rather than
// go-git's Remote.Fetch, for two reasons:
//
//   - One conversation serves both the poll and the fetch: the ref advertisement that
//     says "nothing changed" is the same one a fetch needs, so a change costs one
//     info/refs GET and one upload-pack POST over HTTP (one connection over SSH).
//   - A shallow fetch into a shallow cache must ask for a thin pack. Without thin-pack,
//     git's upload-pack in shallow mode ignores the client's "haves" when choosing
//     objects and sends the new commit's whole tree again; with it, only the objects
//     the commit adds travel. go-git does not ask for thin packs (it cannot store them
//     as they come), so capstan stores them itself: it resolves the pack against the
//     cache and writes the new objects as one self-contained pack.

// conn is one conversation with the remote, begun with its ref advertisement.
type conn struct {
	sess transport.UploadPackSession
	adv  *packp.AdvRefs
	refs []*plumbing.Reference // hash refs, symbolic HEAD, and "<name>^{}" peeled entries
}

func (c *conn) close() { _ = c.sess.Close() }

// connect opens a session and reads the advertisement: over HTTP one GET of
// info/refs?service=git-upload-pack, nothing else.
func (g *Git) connect(ctx context.Context) (*conn, error) {
	ep, err := transport.NewEndpoint(g.url)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", g.url, err)
	}
	cl, err := client.NewClient(ep)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", g.url, err)
	}
	sess, err := cl.NewUploadPackSession(ep, g.auth)
	if err != nil {
		return nil, g.classify(err)
	}
	adv, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		_ = sess.Close()
		return nil, g.classify(err)
	}
	all, err := adv.AllReferences()
	if err != nil {
		_ = sess.Close()
		return nil, g.classify(err)
	}
	c := &conn{sess: sess, adv: adv}
	iter, err := all.IterReferences()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	_ = iter.ForEach(func(r *plumbing.Reference) error {
		c.refs = append(c.refs, r)
		return nil
	})
	for name, h := range adv.Peeled {
		c.refs = append(c.refs, plumbing.NewHashReference(plumbing.ReferenceName(name+"^{}"), h))
	}
	return c, nil
}

// fetchPack asks for wants at depth (0: no limit) and stores what arrives. It uses the
// conversation c once; further fetches need a new one (SSH sessions end with the pack).
func (g *Git) fetchPack(ctx context.Context, repo *git.Repository, c *conn, wants []plumbing.Hash, depth int) error {
	req := packp.NewUploadPackRequestFromCapabilities(c.adv.Capabilities)
	req.Wants = wants
	haves, err := haves(repo)
	if err != nil {
		return err
	}
	req.Haves = haves
	if len(haves) > 0 {
		// go-git hides thin-pack from the advertisement because it cannot store thin
		// packs; storePack can. Every git server implementation supports it.
		_ = req.Capabilities.Set(capability.ThinPack)
	}
	shallows, err := repo.Storer.Shallow()
	if err != nil {
		return fmt.Errorf("git cache: %w", err)
	}
	req.Shallows = shallows
	if depth > 0 {
		req.Depth = packp.DepthCommits(depth)
	}
	if depth > 0 || len(shallows) > 0 {
		if !c.adv.Capabilities.Supports(capability.Shallow) {
			return fmt.Errorf("source %s: the server does not support shallow fetches", g.url)
		}
		_ = req.Capabilities.Set(capability.Shallow)
	}
	if c.adv.Capabilities.Supports(capability.NoProgress) {
		_ = req.Capabilities.Set(capability.NoProgress)
	}

	resp, err := c.sess.UploadPack(ctx, req)
	if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
		return nil
	}
	if err != nil {
		return g.classify(err)
	}
	defer resp.Close()

	var data io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		data = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		data = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	if err := storePack(repo, data, len(haves) > 0); err != nil {
		return g.classify(fmt.Errorf("receiving pack: %w", err))
	}
	// The shallow list changes only once the objects are stored: a cache never claims
	// a boundary it does not have.
	if len(resp.Shallows) > 0 || len(resp.Unshallows) > 0 {
		if err := repo.Storer.SetShallow(mergeShallows(shallows, resp.Shallows, resp.Unshallows)); err != nil {
			return fmt.Errorf("git cache: %w", err)
		}
	}
	return nil
}

func mergeShallows(old, add, remove []plumbing.Hash) []plumbing.Hash {
	set := map[plumbing.Hash]bool{}
	for _, h := range old {
		set[h] = true
	}
	for _, h := range add {
		set[h] = true
	}
	for _, h := range remove {
		delete(set, h)
	}
	out := make([]plumbing.Hash, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// haves are the commits the cache's own refs point at: each is complete (its tree and
// blobs are all here), which is what a "have" promises.
func haves(repo *git.Repository) ([]plumbing.Hash, error) {
	iter, err := repo.Storer.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("git cache: %w", err)
	}
	set := map[plumbing.Hash]bool{}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() != plumbing.HashReference || !strings.HasPrefix(r.Name().String(), "refs/capstan/") {
			return nil
		}
		if h, err := peel(repo, r.Hash()); err == nil {
			set[h] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]plumbing.Hash, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	const max = 64
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// storePack stores a received pack. A self-contained pack (no haves were sent) streams
// straight into a pack file. A thin pack may hold deltas against objects the cache
// already has; it is resolved in memory against the cache and written out as a new,
// self-contained pack, so the cache stays readable by go-git and by git.
func storePack(repo *git.Repository, r io.Reader, thin bool) error {
	if !thin {
		err := packfile.UpdateObjectStorage(repo.Storer, r)
		if errors.Is(err, packfile.ErrEmptyPackfile) {
			return nil
		}
		return err
	}
	mem := &overlay{ObjectStorage: &memory.NewStorage().ObjectStorage, base: repo.Storer}
	parser, err := packfile.NewParserWithStorage(packfile.NewScanner(r), mem)
	if err != nil {
		return err
	}
	if _, err := parser.Parse(); err != nil {
		if errors.Is(err, packfile.ErrEmptyPackfile) {
			return nil
		}
		return err
	}
	var hashes []plumbing.Hash
	for h := range mem.Objects {
		hashes = append(hashes, h)
	}
	if len(hashes) == 0 {
		return nil
	}
	pw, ok := repo.Storer.(storer.PackfileWriter)
	if !ok {
		for _, o := range mem.Objects {
			if _, err := repo.Storer.SetEncodedObject(o); err != nil {
				return err
			}
		}
		return nil
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return err
	}
	if _, err := packfile.NewEncoder(w, mem.ObjectStorage, false).Encode(hashes, 10); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// overlay keeps new objects in memory and finds the bases of thin-pack deltas in the
// cache.
type overlay struct {
	*memory.ObjectStorage
	base storer.EncodedObjectStorer
}

func (o *overlay) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	obj, err := o.ObjectStorage.EncodedObject(t, h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return o.base.EncodedObject(t, h)
	}
	return obj, err
}

func (o *overlay) HasEncodedObject(h plumbing.Hash) error {
	if err := o.ObjectStorage.HasEncodedObject(h); err == nil {
		return nil
	}
	return o.base.HasEncodedObject(h)
}

func (o *overlay) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	n, err := o.ObjectStorage.EncodedObjectSize(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return o.base.EncodedObjectSize(h)
	}
	return n, err
}

// maxPacks is how many pack files a cache may collect (every update adds one) before
// they are compacted into one.
const maxPacks = 16

// compact rewrites the cache's objects into a single pack when packs have piled up,
// keeping only what capstan's refs reach (old heads and their trees are dropped), and
// trims the shallow list to commits that are still there.
func compact(repo *git.Repository) error {
	pos, ok := repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return nil
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) <= maxPacks {
		return err
	}
	keep, err := reachable(repo)
	if err != nil {
		return err
	}
	pw, ok := repo.Storer.(storer.PackfileWriter)
	if !ok {
		return nil
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return err
	}
	hashes := make([]plumbing.Hash, 0, len(keep))
	for h := range keep {
		hashes = append(hashes, h)
	}
	packHash, err := packfile.NewEncoder(w, repo.Storer, false).Encode(hashes, 10)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for _, p := range packs {
		if p != packHash {
			if err := pos.DeleteOldObjectPackAndIndex(p, time.Time{}); err != nil {
				return err
			}
		}
	}
	if los, ok := repo.Storer.(storer.LooseObjectStorer); ok {
		_ = los.ForEachObjectHash(func(h plumbing.Hash) error {
			return los.DeleteLooseObject(h)
		})
	}
	shallows, err := repo.Storer.Shallow()
	if err != nil {
		return err
	}
	var still []plumbing.Hash
	for _, h := range shallows {
		if keep[h] {
			still = append(still, h)
		}
	}
	return repo.Storer.SetShallow(still)
}

// reachable is every object capstan's refs reach, stopping where a shallow cache's
// history stops.
func reachable(repo *git.Repository) (map[plumbing.Hash]bool, error) {
	seen := map[plumbing.Hash]bool{}
	var walkTree func(h plumbing.Hash) error
	walkTree = func(h plumbing.Hash) error {
		if seen[h] {
			return nil
		}
		seen[h] = true
		t, err := object.GetTree(repo.Storer, h)
		if err != nil {
			return err
		}
		for _, e := range t.Entries {
			switch {
			case e.Mode == filemode.Dir:
				if err := walkTree(e.Hash); err != nil {
					return err
				}
			case e.Mode == filemode.Submodule:
			default:
				seen[e.Hash] = true
			}
		}
		return nil
	}
	iter, err := repo.Storer.IterReferences()
	if err != nil {
		return nil, err
	}
	var queue []plumbing.Hash
	_ = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference {
			queue = append(queue, r.Hash())
		}
		return nil
	})
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if seen[h] {
			continue
		}
		obj, err := repo.Storer.EncodedObject(plumbing.AnyObject, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			continue // beyond the shallow boundary
		}
		if err != nil {
			return nil, err
		}
		seen[h] = true
		switch obj.Type() {
		case plumbing.TagObject:
			t, err := object.DecodeTag(repo.Storer, obj)
			if err != nil {
				return nil, err
			}
			queue = append(queue, t.Target)
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(repo.Storer, obj)
			if err != nil {
				return nil, err
			}
			if err := walkTree(c.TreeHash); err != nil {
				return nil, err
			}
			queue = append(queue, c.ParentHashes...)
		}
	}
	return seen, nil
}
