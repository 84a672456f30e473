package manifests

import (
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"sort"
	"sync"

	"github.com/capstan-dev/capstan/resource"
)

// Converted stacks are kept in a process-wide cache, so a daemon that reloads its source
// tree on every new revision only pays compose-go for the stacks a commit touched (about
// 10 ms per stack instead of about 20 ms of CPU in compose-go).
//
// An entry is keyed by everything a load depends on: the stack name, the source root
// and where it really is, the path, real path and bytes of every compose file, and the
// variables. It also remembers the other files the load read (env_file, label_file,
// secret and config files) by path, real path and content hash; a lookup reads them
// again and uses the entry only when all of them are unchanged. Only loads without
// errors are kept, and only those that read nothing capstan cannot see in advance:
// stacks whose services extend another file are always loaded afresh.
//
// Callers get a deep copy of the cached resources, so nothing they change leaks into
// the next load.

// composeCacheMax bounds the number of stacks kept; the least recently used goes first.
const composeCacheMax = 512

type composeCacheKey [sha256.Size]byte

type composeCacheEntry struct {
	res   []resource.Resource
	probs Problems
	reads []composeRead
	used  uint64
}

// composeRead is one file a load read besides its compose files.
type composeRead struct {
	path string
	real string // symlinks resolved; "" when it does not resolve
	sum  [sha256.Size]byte
	err  string // why it could not be read; "" when it was
}

var composeCache = struct {
	sync.Mutex
	entries      map[composeCacheKey]*composeCacheEntry
	tick         uint64
	hits, misses int
	disabled     bool
}{entries: map[composeCacheKey]*composeCacheEntry{}}

// resetComposeCache empties the cache (benchmarks measure cold loads with it).
func resetComposeCache() {
	composeCache.Lock()
	defer composeCache.Unlock()
	composeCache.entries = map[composeCacheKey]*composeCacheEntry{}
	composeCache.hits, composeCache.misses = 0, 0
}

func resetComposeCacheStats() {
	composeCache.Lock()
	defer composeCache.Unlock()
	composeCache.hits, composeCache.misses = 0, 0
}

func composeCacheStats() (hits, misses int) {
	composeCache.Lock()
	defer composeCache.Unlock()
	return composeCache.hits, composeCache.misses
}

// cacheKey hashes the inputs of this load; the compose files must have been read.
func (l *composeLoader) cacheKey() composeCacheKey {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("capstan compose cache v1"))
	field([]byte(l.in.Stack))
	field([]byte(l.in.Root))
	field([]byte(l.realRoot))
	for _, d := range l.docs {
		field([]byte(d.abs))
		field([]byte(composeRealPath(d.abs)))
		field(d.data)
	}
	names := make([]string, 0, len(l.in.Env))
	for k := range l.in.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		field([]byte(k))
		field([]byte(l.in.Env[k]))
	}
	var key composeCacheKey
	h.Sum(key[:0])
	return key
}

func composeRealPath(p string) string {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return ""
	}
	return real
}

// readRecorded reads a file the load depends on, bounded in size, and remembers it
// for the cache.
func (l *composeLoader) readRecorded(abs string) ([]byte, error) {
	data, err := readComposeInput(abs)
	l.recordRead(abs, data, err)
	return data, err
}

func (l *composeLoader) recordRead(abs string, data []byte, err error) {
	r := composeRead{path: abs, real: composeRealPath(abs)}
	if err != nil {
		r.err = err.Error()
	} else {
		r.sum = sha256.Sum256(data)
	}
	l.readsMu.Lock()
	l.reads = append(l.reads, r)
	l.readsMu.Unlock()
}

// unchanged reports whether a recorded file still reads the same.
func (r composeRead) unchanged() bool {
	if composeRealPath(r.path) != r.real {
		return false
	}
	data, err := readComposeInput(r.path)
	if err != nil || r.err != "" {
		return err != nil && r.err == err.Error()
	}
	return sha256.Sum256(data) == r.sum
}

// cached returns a copy of the cached result for key, if there is one whose other
// files are unchanged.
func cachedCompose(key composeCacheKey) ([]resource.Resource, Problems, bool) {
	composeCache.Lock()
	e, ok := composeCache.entries[key]
	disabled := composeCache.disabled
	composeCache.Unlock()
	if !ok || disabled {
		composeCacheMiss()
		return nil, nil, false
	}
	// Files are read outside the lock; the entry itself is never modified once stored.
	for _, r := range e.reads {
		if !r.unchanged() {
			composeCacheMiss()
			return nil, nil, false
		}
	}
	composeCache.Lock()
	composeCache.tick++
	e.used = composeCache.tick
	composeCache.hits++
	composeCache.Unlock()
	return deepCopyResources(e.res), append(Problems(nil), e.probs...), true
}

func composeCacheMiss() {
	composeCache.Lock()
	composeCache.misses++
	composeCache.Unlock()
}

// storeCompose keeps a copy of a successful load.
func storeCompose(key composeCacheKey, res []resource.Resource, probs Problems, reads []composeRead) {
	e := &composeCacheEntry{res: deepCopyResources(res), probs: append(Problems(nil), probs...), reads: reads}
	composeCache.Lock()
	defer composeCache.Unlock()
	if composeCache.disabled {
		return
	}
	composeCache.tick++
	e.used = composeCache.tick
	composeCache.entries[key] = e
	for len(composeCache.entries) > composeCacheMax {
		var oldest composeCacheKey
		first := true
		for k, v := range composeCache.entries {
			if first || v.used < composeCache.entries[oldest].used {
				oldest, first = k, false
			}
		}
		delete(composeCache.entries, oldest)
	}
}

func deepCopyResources(in []resource.Resource) []resource.Resource {
	if in == nil {
		return nil
	}
	out := make([]resource.Resource, len(in))
	for i := range in {
		out[i] = resource.DeepCopy(in[i])
	}
	return out
}

// ResetCache empties the in-process cache of converted compose stacks. A new process
// starts with it empty; benchmarks that run a one-shot command in-process call it so
// they measure what a fresh `capstan diff` or `apply` pays.
func ResetCache() { resetComposeCache() }
