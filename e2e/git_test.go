//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fluxcd/pkg/gittestserver"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

const repoName = "wordpress.git"

// gitServer is a real Git HTTP server (gittestserver: git http-backend's protocol through
// the git binary) behind a TCP relay on a fixed 127.0.0.1 port. capstan talks to the
// relay; stopping the relay is "the Git server is down" (connections refused) while the
// developer still pushes to the server directly.
type gitServer struct {
	srv  *gittestserver.GitServer
	addr string // the relay's address, fixed for the suite's lifetime

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newGitServer(dir string) (*gitServer, error) {
	srv := gittestserver.NewGitServer(dir).AutoCreate()
	if err := srv.StartHTTP(); err != nil {
		return nil, fmt.Errorf("git server: %w", err)
	}
	g := &gitServer{srv: srv, conns: map[net.Conn]bool{}}
	if err := g.up(); err != nil {
		srv.StopHTTP()
		return nil, err
	}
	return g, nil
}

// url is what capstan polls.
func (g *gitServer) url() string { return "http://" + g.addr + "/" + repoName }

// directURL bypasses the relay.
func (g *gitServer) directURL() string { return g.srv.HTTPAddress() + "/" + repoName }

// up starts relaying (again, on the same port).
func (g *gitServer) up() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		return nil
	}
	addr := g.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	// The port was ours a moment ago; give a lingering socket a moment to go.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("git relay: %w", err)
	}
	g.ln, g.addr = ln, ln.Addr().String()
	target := g.srv.HTTPAddress()[len("http://"):]
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.track(c, true)
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer g.track(c, false)
				relay(c, target)
			}()
		}
	}()
	return nil
}

// down closes the port and every open connection.
func (g *gitServer) down() {
	g.mu.Lock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
}

func (g *gitServer) close() {
	g.down()
	g.wg.Wait()
	g.srv.StopHTTP()
}

func (g *gitServer) track(c net.Conn, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.conns[c] = true
	} else {
		delete(g.conns, c)
		c.Close()
	}
}

func relay(c net.Conn, target string) {
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// workRepo is a developer's checkout on disk: it commits whole file sets and pushes
// them to the server.
type workRepo struct {
	dir  string
	repo *git.Repository
	wt   *git.Worktree
	when time.Time
}

func newWorkRepo(dir, remote string) (*workRepo, error) {
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.Main},
	})
	if err != nil {
		return nil, fmt.Errorf("init checkout: %w", err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{remote}}); err != nil {
		return nil, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, err
	}
	return &workRepo{dir: dir, repo: repo, wt: wt, when: time.Now().UTC().Truncate(time.Second)}, nil
}

// commit makes the checkout's tracked files exactly files (paths relative to the root),
// commits on the current branch and pushes it. It returns the commit id.
func (w *workRepo) commit(msg string, files map[string]string) (plumbing.Hash, error) {
	if err := w.write(files); err != nil {
		return plumbing.ZeroHash, err
	}
	w.when = w.when.Add(time.Second)
	sig := &object.Signature{Name: "capstan e2e", Email: "e2e@capstan.invalid", When: w.when}
	h, err := w.wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit: %w", err)
	}
	return h, w.push()
}

// write replaces the worktree's files with files and stages the result.
func (w *workRepo) write(files map[string]string) error {
	idx, err := w.repo.Storer.Index()
	if err != nil {
		return err
	}
	for _, e := range idx.Entries {
		if _, keep := files[e.Name]; !keep {
			if _, err := w.wt.Remove(e.Name); err != nil {
				return fmt.Errorf("remove %s: %w", e.Name, err)
			}
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(w.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			return err
		}
		if _, err := w.wt.Add(name); err != nil {
			return fmt.Errorf("add %s: %w", name, err)
		}
	}
	return nil
}

// push pushes the current branch to the server, directly (not through the relay).
func (w *workRepo) push() error {
	head, err := w.repo.Head()
	if err != nil {
		return err
	}
	spec := config.RefSpec("+" + head.Name().String() + ":" + head.Name().String())
	err = w.repo.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("push %s: %w", head.Name().Short(), err)
	}
	return nil
}

// branch switches the checkout to name, creating it at HEAD when it does not exist.
func (w *workRepo) branch(name string) error {
	ref := plumbing.NewBranchReferenceName(name)
	_, err := w.repo.Reference(ref, false)
	return w.wt.Checkout(&git.CheckoutOptions{Branch: ref, Create: err != nil, Force: true})
}
