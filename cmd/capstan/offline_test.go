package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// commitAll writes files (relative path → content; "" deletes) into the work tree and
// commits them.
func commitAll(t *testing.T, repo *git.Repository, dir string, files map[string]string, msg string) {
	t.Helper()
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if content == "" {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "t", Email: "t@example.invalid", When: time.Now()}
	if _, err := wt.Commit(msg, &git.CommitOptions{Author: sig}); err != nil {
		t.Fatal(err)
	}
}

func TestDiffOfflineBaseHead(t *testing.T) {
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	stack := strings.NewReplacer("PRUNE", "true", "HEAL", "true", "STACK", "shop").Replace(stackDoc)
	commitAll(t, repo, dir, map[string]string{
		"deploy/capstan.yaml": stack,
		"deploy/compose.yaml": strings.Replace(twoServices, "REPLICAS", "1", 1),
		"README.md":           "not a manifest\n",
	}, "one")
	commitAll(t, repo, dir, map[string]string{
		"deploy/compose.yaml": strings.Replace(strings.Replace(twoServices, "REPLICAS", "3", 1), "MESSAGE: api", "MESSAGE: api2", 1),
	}, "two")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"head against base", []string{"--source", dir, "--path", "deploy", "--base", "HEAD~1", "--head", "HEAD"}, 2,
			[]string{"^ swarm/service/shop_web (ReplicasChanged)", "~ swarm/service/shop_api (SourceChanged)",
				"Plan: 0 to add, 2 to change, 0 to destroy."}},
		{"source is a subdirectory", []string{"--source", filepath.Join(dir, "deploy"), "--base", "HEAD~1", "--head", "HEAD"}, 2,
			[]string{"Plan: 0 to add, 2 to change, 0 to destroy."}},
		{"same revision", []string{"--source", dir, "--path", "deploy", "--base", "HEAD", "--head", "HEAD"}, 0,
			[]string{"No changes."}},
		{"unknown revision", []string{"--source", dir, "--base", "nope", "--head", "HEAD"}, 1, nil},
		{"base without head", []string{"--source", dir, "--base", "HEAD"}, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCapstan(t, append([]string{"diff", "--detailed-exitcode"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	// A stack removed by the pull request is a plan to delete it (apply still guards).
	commitAll(t, repo, dir, map[string]string{"deploy/capstan.yaml": "", "deploy/compose.yaml": ""}, "three")
	out, errOut, code := runCapstan(t, "diff", "--detailed-exitcode", "--source", dir, "--path", "deploy", "--base", "HEAD~1", "--head", "HEAD")
	if code != 2 || !strings.Contains(out, "- swarm/service/shop_web (NotInSource)") || !strings.Contains(out, "to destroy.") {
		t.Errorf("removing the stack: exit %d\n%s\n%s", code, out, errOut)
	}
}
