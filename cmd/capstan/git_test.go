package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
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
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/source"
)

// TestDiffAndApplyFromGit runs diff and apply against a Git server on 127.0.0.1 and
// counts, at the server, what each run asks for: a second run on an unchanged remote
// lists the refs and fetches nothing.
func TestDiffAndApplyFromGit(t *testing.T) {
	e := newSwarmEnv(t, "git")
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null") // the server runs the git binary
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	prev := log.Writer()
	log.SetOutput(io.Discard) // gittestserver logs every request
	t.Cleanup(func() { log.SetOutput(prev) })

	srv := gittestserver.NewGitServer(t.TempDir()).AutoCreate()
	var counts requestCounter
	srv.AddHTTPMiddlewares(counts.middleware)
	if err := srv.StartHTTP(); err != nil {
		t.Fatal(err)
	}
	defer srv.StopHTTP()
	url := srv.HTTPAddress() + "/config.git"

	repo := newPushRepo(t, url)
	compose := strings.Replace(twoServices, "REPLICAS", "1", 1)
	c1 := repo.commitAndPush(map[string]string{
		"stacks/" + e.stack + "/capstan.yaml": strings.ReplaceAll(stackDocWith(true, true), "STACK", e.stack),
		"stacks/" + e.stack + "/compose.yaml": compose,
		"README.md":                           "the manifests live under stacks/\n",
	})
	rev1 := "main@sha1:" + c1.String()
	cache := t.TempDir()
	// Its own instance: other stacks on a shared engine are not this test's to plan.
	args := []string{"--instance", e.stack, "--source", url, "--ref", "main", "--path", "stacks", "--cache-dir", cache}

	diff := func() (planJSON, string) {
		t.Helper()
		out, errOut, code := runCapstan(t, append([]string{"diff", "--detailed-exitcode", "-o", "json"}, args...)...)
		if code == 1 {
			t.Fatalf("diff failed:\n%s\n%s", out, errOut)
		}
		var rev struct {
			Revision string `json:"revision"`
		}
		if err := json.Unmarshal([]byte(out), &rev); err != nil {
			t.Fatalf("plan JSON: %v\n%s", err, out)
		}
		return decodePlanJSON(t, out), rev.Revision
	}

	// First run: the cache is empty, one upload-pack fetches the commit.
	counts.reset()
	plan, rev := diff()
	if rev != rev1 {
		t.Errorf("plan revision %q, want %q", rev, rev1)
	}
	if len(plan.Changes) != 3 { // network, web, api
		t.Errorf("first diff planned %d changes, want 3 creates: %+v", len(plan.Changes), plan.Changes)
	}
	if n := counts.count("POST", "/git-upload-pack"); n != 1 {
		t.Errorf("first diff: %d upload-pack requests, want 1 (%v)", n, counts.all())
	}

	// Second run, nothing pushed: the ref listing only.
	counts.reset()
	plan2, rev := diff()
	if rev != rev1 || len(plan2.Changes) != len(plan.Changes) {
		t.Errorf("second diff: revision %q with %d changes, want %q with %d", rev, len(plan2.Changes), rev1, len(plan.Changes))
	}
	if got := counts.all(); len(got) != 1 || !strings.HasSuffix(got[0], "/info/refs") {
		t.Errorf("second diff on an unchanged remote sent %v, want only GET .../info/refs", got)
	}

	// apply from Git stamps the revision on what it creates.
	out, errOut, code := runCapstan(t, append([]string{"apply"}, args...)...)
	if code != 0 {
		t.Fatalf("apply exited %d:\n%s\n%s", code, out, errOut)
	}
	if got := e.service("web").Spec.Labels[resource.LabelRevision]; got != rev1 {
		t.Errorf("web label %s = %q, want %q", resource.LabelRevision, got, rev1)
	}

	// A pushed commit: one upload-pack, and the plan is a scale at the new revision.
	c2 := repo.commitAndPush(map[string]string{"stacks/" + e.stack + "/compose.yaml": strings.Replace(twoServices, "REPLICAS", "2", 1)})
	counts.reset()
	plan3, rev := diff()
	if want := "main@sha1:" + c2.String(); rev != want {
		t.Errorf("after a push: revision %q, want %q", rev, want)
	}
	if len(plan3.Changes) != 1 || plan3.Changes[0].Action != "scale" {
		t.Errorf("after a push: plan %+v, want one scale", plan3.Changes)
	}
	if n := counts.count("POST", "/git-upload-pack"); n != 1 {
		t.Errorf("after a push: %d upload-pack requests, want 1", n)
	}

	// A wrong ref fails with the source's message and plans nothing.
	out, errOut, code = runCapstan(t, "diff", "--instance", e.stack, "--source", url, "--ref", "nope", "--cache-dir", cache)
	if code != 1 || !strings.Contains(errOut, "ref not found") {
		t.Errorf("unknown ref: exit %d\n%s\n%s", code, out, errOut)
	}
}

// requestCounter records the method and path of every request the Git server serves.
type requestCounter struct {
	mu   sync.Mutex
	reqs []string
}

func (c *requestCounter) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.reqs = append(c.reqs, r.Method+" "+r.URL.Path)
		c.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (c *requestCounter) reset() {
	c.mu.Lock()
	c.reqs = nil
	c.mu.Unlock()
}

func (c *requestCounter) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.reqs...)
}

func (c *requestCounter) count(method, suffix string) int {
	n := 0
	for _, r := range c.all() {
		if strings.HasPrefix(r, method+" ") && strings.HasSuffix(r, suffix) {
			n++
		}
	}
	return n
}

// pushRepo is a developer's clone in memory that commits to main and pushes.
type pushRepo struct {
	t    *testing.T
	repo *git.Repository
	when time.Time
}

func newPushRepo(t *testing.T, url string) *pushRepo {
	t.Helper()
	repo, err := git.InitWithOptions(memory.NewStorage(), memfs.New(), git.InitOptions{DefaultBranch: plumbing.Main})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		t.Fatal(err)
	}
	return &pushRepo{t: t, repo: repo, when: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (p *pushRepo) commitAndPush(files map[string]string) plumbing.Hash {
	p.t.Helper()
	wt, err := p.repo.Worktree()
	if err != nil {
		p.t.Fatal(err)
	}
	for name, content := range files {
		f, err := wt.Filesystem.Create(name)
		if err != nil {
			p.t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			p.t.Fatal(err)
		}
		f.Close()
		if _, err := wt.Add(name); err != nil {
			p.t.Fatal(err)
		}
	}
	p.when = p.when.Add(time.Minute)
	h, err := wt.Commit("update", &git.CommitOptions{Author: &object.Signature{Name: "Test", Email: "test@example.com", When: p.when}})
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.repo.Push(&git.PushOptions{RefSpecs: []config.RefSpec{"refs/heads/main:refs/heads/main"}}); err != nil {
		p.t.Fatal(err)
	}
	return h
}

// TestSourceFlagsOptions checks where each credential comes from; it needs no engine.
func TestSourceFlagsOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "tok-from-file\n")
	key := write("key", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n")
	t.Setenv("CAPSTAN_GIT_USERNAME", "env-user")
	t.Setenv("CAPSTAN_GIT_SSH_KEY_PASSPHRASE_FILE", write("pass", "from-env-file\n"))
	t.Setenv("CAPSTAN_GIT_KNOWN_HOSTS", "github.com ssh-ed25519 AAAA")

	f := sourceFlags{source: "https://git.example.com/r.git", gitPasswordFile: token, gitSSHKeyFile: key, cacheDir: dir, gitAllowRewrite: true}
	opts, err := f.options(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := opts.Auth
	if a.Username != "env-user" || a.Password != "tok-from-file" || !strings.HasPrefix(string(a.SSHKey), "-----BEGIN") ||
		a.SSHKeyPassphrase != "from-env-file" || string(a.KnownHosts) != "github.com ssh-ed25519 AAAA" ||
		opts.CacheDir != dir || !opts.AllowRewrite {
		t.Errorf("options = %+v (auth %v)", opts, a)
	}

	// A directory source ignores credentials from the environment...
	local := sourceFlags{source: dir}
	if opts, err := local.options(nil); err != nil || !reflect.DeepEqual(opts.Auth, source.Auth{}) {
		t.Errorf("local source: auth %v, %v; want none", opts.Auth, err)
	}
	// ...but explicit flags with a directory are a mistake worth an error.
	out, errOut, code := runCapstan(t, "diff", "--source", dir, "--git-password-file", token)
	if code != 1 || !strings.Contains(errOut, "local directory") {
		t.Errorf("directory with --git-password-file: exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "tok-from-file") {
		t.Errorf("the token was printed")
	}
	t.Setenv("CAPSTAN_GIT_PASSWORD", "x")
	t.Setenv("CAPSTAN_GIT_PASSWORD_FILE", token)
	if _, err := (&sourceFlags{source: "https://git.example.com/r.git"}).options(nil); err == nil {
		t.Errorf("CAPSTAN_GIT_PASSWORD and CAPSTAN_GIT_PASSWORD_FILE both set: no error")
	}
}
