package source

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Source is where the desired state comes from.
type Source interface {
	// Head returns the source's current revision without writing any files. For Git it
	// lists the remote refs once and downloads nothing.
	Head(ctx context.Context) (Revision, error)
	// Fetch makes the current revision's files available and returns them. It downloads
	// only what the cache lacks; an unchanged Git remote costs one ref listing.
	Fetch(ctx context.Context) (Snapshot, error)
	// String describes the source for messages, without credentials.
	String() string
}

// Snapshot is one revision of a source on disk.
type Snapshot struct {
	// Dir holds the manifests: the checkout (or local directory) joined with Options.Path.
	// It stays valid at least until the second-next Fetch of the same source returns.
	Dir string
	// Revision identifies the files in Dir.
	Revision Revision
}

// Options configure New.
type Options struct {
	// Source is a local directory or a Git URL: https://, http://, ssh://, file:// or the
	// scp-like user@host:path.
	Source string
	// Ref is a branch, tag, full ref name (refs/...) or a full 40-hex commit id of a Git
	// source. Empty means the remote's default branch (its HEAD). Local directories take
	// no ref.
	Ref string
	// Path is the subdirectory holding the manifests, relative to the source's root.
	Path string

	// CacheDir holds the Git cache. Empty means DefaultCacheDir().
	CacheDir string
	// Auth carries credentials for Git sources.
	Auth Auth
	// AllowRewrite follows a force-pushed branch or a moved tag instead of failing with
	// ErrHistoryRewritten or ErrTagMoved.
	AllowRewrite bool
	// FullHistory fetches complete history instead of depth 1. It costs more on the first
	// fetch and buys nothing capstan needs; it exists for comparison and for servers that
	// cannot serve shallow fetches.
	FullHistory bool
	// Logger receives operational messages (fetches, warnings). Nil discards them.
	Logger *slog.Logger
}

// New returns the Source that opts describe: a Git source when opts.Source is a URL, a
// local directory otherwise. It checks the options and the credentials' shape but does
// not touch the network.
func New(opts Options) (Source, error) {
	if opts.Source == "" {
		return nil, fmt.Errorf("no source: pass a directory or a Git URL")
	}
	if err := checkPath(opts.Path); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if IsGitURL(opts.Source) {
		return newGit(opts)
	}
	if opts.Ref != "" {
		return nil, fmt.Errorf("--ref applies to Git sources only; %q is a local directory", opts.Source)
	}
	if !opts.Auth.empty() {
		return nil, fmt.Errorf("Git credentials were given, but %q is a local directory, not a Git URL", opts.Source)
	}
	return newLocal(opts.Source, opts.Path)
}

// scpLike matches git's user@host:path form (no scheme, a user, a colon before any
// slash). A bare host:path is not accepted: it is too easily a local path.
var scpLike = regexp.MustCompile(`^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:[^/]?`)

// IsGitURL reports whether s names a Git remote rather than a local directory.
func IsGitURL(s string) bool {
	return strings.Contains(s, "://") || scpLike.MatchString(s)
}

// checkPath accepts a relative path that stays inside the source.
func checkPath(p string) error {
	if p == "" {
		return nil
	}
	if filepath.IsAbs(p) || !filepath.IsLocal(filepath.Clean(p)) {
		return fmt.Errorf("--path %q must be a relative path inside the source", p)
	}
	return nil
}

// DefaultCacheDir is the user cache directory plus /capstan ($XDG_CACHE_HOME/capstan or
// ~/.cache/capstan on Linux). Without a home directory (a container with no HOME), it
// falls back to the system temporary directory.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "capstan")
	}
	return filepath.Join(os.TempDir(), "capstan-cache")
}
