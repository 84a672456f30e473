package source

import (
	"fmt"
	"strings"
)

// Revision identifies one state of a source: `<ref>@sha1:<40 hex>` for a Git commit,
// `local@sha256:<64 hex>` for a local directory's content. It is what capstan writes to
// the dev.capstan.revision label and prints in plans, logs and status.
type Revision struct {
	// Ref is the ref as the remote names it, shortened the way people write it: "main"
	// for refs/heads/main, "v1.2.0" for refs/tags/v1.2.0, other refs in full
	// ("refs/pull/7/head"), a pinned commit as its 40-hex id, "local" for a directory.
	Ref string
	// Digest is "sha1:<40 hex>" (the commit) or "sha256:<64 hex>" (a directory's content).
	Digest string
}

// String formats the revision as `<ref>@<digest>`; the zero Revision is "".
func (r Revision) String() string {
	if r.IsZero() {
		return ""
	}
	return r.Ref + "@" + r.Digest
}

// IsZero reports whether r is the zero Revision.
func (r Revision) IsZero() bool { return r.Ref == "" && r.Digest == "" }

// Commit returns the 40-hex commit id of a Git revision, or "" for a directory's.
func (r Revision) Commit() string {
	if h, ok := strings.CutPrefix(r.Digest, "sha1:"); ok {
		return h
	}
	return ""
}

// ParseRevision parses the String form.
func ParseRevision(s string) (Revision, error) {
	for _, algo := range []struct {
		name string
		n    int
	}{{"sha1", 40}, {"sha256", 64}} {
		i := strings.LastIndex(s, "@"+algo.name+":")
		if i <= 0 {
			continue
		}
		hex := s[i+len(algo.name)+2:]
		if len(hex) != algo.n || !isLowerHex(hex) {
			return Revision{}, fmt.Errorf("revision %q: want %d lowercase hex digits after %s:", s, algo.n, algo.name)
		}
		return Revision{Ref: s[:i], Digest: algo.name + ":" + hex}, nil
	}
	return Revision{}, fmt.Errorf("revision %q: want <ref>@sha1:<40 hex> or <ref>@sha256:<64 hex>", s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isCommitID reports whether s is a full 40-hex commit id.
func isCommitID(s string) bool { return len(s) == 40 && isLowerHex(strings.ToLower(s)) }

func gitRevision(ref, commit string) Revision {
	return Revision{Ref: ref, Digest: "sha1:" + commit}
}
