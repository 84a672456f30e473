package source

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/pkg/gittestserver"
	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// The tests run real Git servers on 127.0.0.1: gittestserver (git http-backend's
// protocol through the git binary, and SSH) with repositories pushed to by go-git.

func TestMain(m *testing.M) {
	// The servers run the git binary: keep the machine's git configuration out of it.
	os.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	os.Unsetenv("SSH_AUTH_SOCK")
	os.Unsetenv("SSH_KNOWN_HOSTS")
	// gitkit logs every request through the standard logger.
	log.SetOutput(io.Discard)
	code := m.Run()
	runBenchCleanup()
	os.Exit(code)
}

// gitServer is a gittestserver with a counter in front of its HTTP handler.
type gitServer struct {
	*gittestserver.GitServer
	mu    sync.Mutex
	reqs  []string // "GET /repo.git/info/refs", "POST /repo.git/git-upload-pack"
	bytes int64    // response bytes sent
}

type serverOpt func(*gittestserver.GitServer)

func withAuth(user, pass string) serverOpt {
	return func(s *gittestserver.GitServer) { s.Auth(user, pass) }
}

func newGitServer(t testing.TB, opts ...serverOpt) *gitServer {
	t.Helper()
	return newGitServerAt(t, t.TempDir(), opts...)
}

// newGitServerAt serves the repositories under root.
func newGitServerAt(t testing.TB, root string, opts ...serverOpt) *gitServer {
	t.Helper()
	gs := gittestserver.NewGitServer(root).AutoCreate()
	for _, o := range opts {
		o(gs)
	}
	s := &gitServer{GitServer: gs}
	gs.AddHTTPMiddlewares(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cw := &countingWriter{ResponseWriter: w}
			next.ServeHTTP(cw, r)
			s.mu.Lock()
			s.reqs = append(s.reqs, r.Method+" "+r.URL.Path)
			s.bytes += cw.n
			s.mu.Unlock()
		})
	})
	if err := gs.StartHTTP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.StopHTTP)
	return s
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *gitServer) url(repo string) string { return s.HTTPAddress() + "/" + repo }

// reset forgets the requests counted so far.
func (s *gitServer) reset() {
	s.mu.Lock()
	s.reqs, s.bytes = nil, 0
	s.mu.Unlock()
}

// count returns how many requests had a path ending in suffix ("/git-upload-pack",
// "/info/refs").
func (s *gitServer) count(suffix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reqs {
		if strings.HasSuffix(r, suffix) {
			n++
		}
	}
	return n
}

func (s *gitServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func (s *gitServer) sent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// setHead points the server repository's HEAD at a branch.
func (s *gitServer) setHead(t testing.TB, repo, branch string) {
	t.Helper()
	p := filepath.Join(s.Root(), repo, "HEAD")
	if err := os.WriteFile(p, []byte("ref: refs/heads/"+branch+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// upstream is a developer's clone, in memory, that commits and pushes real commits.
type upstream struct {
	t    testing.TB
	repo *git.Repository
	wt   *git.Worktree
	url  string
	auth transport.AuthMethod
	when time.Time
}

func newUpstream(t testing.TB, url string, auth transport.AuthMethod) *upstream {
	t.Helper()
	repo, err := git.InitWithOptions(memory.NewStorage(), memfs.New(), git.InitOptions{DefaultBranch: plumbing.Main})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	return &upstream{t: t, repo: repo, wt: wt, url: url, auth: auth, when: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// commit writes files (an empty value deletes the file) and commits them on the
// current branch.
func (u *upstream) commit(msg string, files map[string]string) plumbing.Hash {
	u.t.Helper()
	fs := u.wt.Filesystem
	for name, content := range files {
		if content == "" {
			if _, err := u.wt.Remove(name); err != nil {
				u.t.Fatal(err)
			}
			continue
		}
		if err := fs.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			u.t.Fatal(err)
		}
		f, err := fs.Create(name)
		if err != nil {
			u.t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			u.t.Fatal(err)
		}
		f.Close()
		if _, err := u.wt.Add(name); err != nil {
			u.t.Fatal(err)
		}
	}
	u.when = u.when.Add(time.Minute)
	h, err := u.wt.Commit(msg, &git.CommitOptions{
		Author:            &object.Signature{Name: "Test", Email: "test@example.com", When: u.when},
		AllowEmptyCommits: true,
	})
	if err != nil {
		u.t.Fatal(err)
	}
	return h
}

// resetTo moves the current branch back to h (to rewrite history after it).
func (u *upstream) resetTo(h plumbing.Hash) {
	u.t.Helper()
	if err := u.wt.Reset(&git.ResetOptions{Commit: h, Mode: git.HardReset}); err != nil {
		u.t.Fatal(err)
	}
}

// checkoutBranch switches to branch, creating it at HEAD when it does not exist.
func (u *upstream) checkoutBranch(name string) {
	u.t.Helper()
	ref := plumbing.NewBranchReferenceName(name)
	_, err := u.repo.Reference(ref, false)
	if err := u.wt.Checkout(&git.CheckoutOptions{Branch: ref, Create: err != nil, Keep: true}); err != nil {
		u.t.Fatal(err)
	}
}

func (u *upstream) tag(name string, h plumbing.Hash, annotated bool) {
	u.t.Helper()
	var opts *git.CreateTagOptions
	if annotated {
		opts = &git.CreateTagOptions{Message: "release " + name, Tagger: &object.Signature{Name: "Test", Email: "test@example.com", When: u.when}}
	}
	_ = u.repo.DeleteTag(name)
	if _, err := u.repo.CreateTag(name, h, opts); err != nil {
		u.t.Fatal(err)
	}
}

// push pushes refspecs ("+refs/heads/main:refs/heads/main", ":refs/heads/gone").
func (u *upstream) push(specs ...string) {
	u.t.Helper()
	var rs []config.RefSpec
	for _, s := range specs {
		rs = append(rs, config.RefSpec(s))
	}
	err := u.repo.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: rs, Auth: u.auth})
	if err != nil && err != git.NoErrAlreadyUpToDate {
		u.t.Fatalf("push %v: %v", specs, err)
	}
}

func (u *upstream) pushMain() { u.push("+refs/heads/main:refs/heads/main") }

func basicAuth(user, pass string) transport.AuthMethod {
	return &githttp.BasicAuth{Username: user, Password: pass}
}

// newSource builds a Source with a per-test cache directory unless opts has one.
func newSource(t testing.TB, opts Options) Source {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustFetch(t testing.TB, s Source) Snapshot {
	t.Helper()
	snap, err := s.Fetch(ctxT(t))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return snap
}

func readFile(t testing.TB, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logBuffer is a slog logger writing text into a buffer, for tests that look at logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
