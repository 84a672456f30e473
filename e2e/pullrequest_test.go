//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestPullRequestPlan is the pull-request workflow of examples/ci: on a branch, capstan
// diff prints the plan as Markdown for the PR comment — against the live swarm, and
// offline (--base/--head: desired against desired, no cluster). Both comment bodies are
// golden files (go test -tags e2e ./e2e/ -run TestPullRequestPlan -update).
func TestPullRequestPlan(t *testing.T) {
	s := setup(t)
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
	live := []string{"--instance", s.stack, "--slb-endpoint", s.emu.URL()}

	// A checkout of main matches what runs.
	out, errOut, code := s.capstan(t, nil, append([]string{"diff", "--source", s.repo.dir, "-o", "markdown", "--detailed-exitcode"}, live...)...)
	if code != 0 || !strings.Contains(out, "No changes") {
		t.Errorf("diff of main against the swarm running it: exit %d, want 0 and no changes\n%s\n%s", code, out, errOut)
	}

	// The pull request: scale mysql to 3 and change wordpress's message.
	if err := s.repo.branch("scale-mysql"); err != nil {
		t.Fatal(err)
	}
	d := baseline()
	d.MysqlScale = 3
	d.Message = "from-the-branch"
	if _, err := s.repo.commit("scale mysql to 3, new message", s.files(d)); err != nil {
		t.Fatal(err)
	}
	liveOut, errOut, code := s.capstan(t, nil, append([]string{"diff", "--source", s.repo.dir, "-o", "markdown", "--detailed-exitcode"}, live...)...)
	if code != 2 {
		t.Fatalf("diff of the branch against the swarm: exit %d, want 2 (changes)\n%s\n%s", code, liveOut, errOut)
	}
	s.golden(t, "pr-comment-live.md", liveOut)

	// Offline, as the CI job without cluster access runs it: no engine is reachable.
	offOut, errOut, code := s.capstan(t, []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, "diff", "--source", s.repo.dir,
		"--base", "main", "--head", "scale-mysql", "-o", "markdown", "--detailed-exitcode", "--instance", s.stack)
	if code != 2 {
		t.Fatalf("offline diff main..scale-mysql: exit %d, want 2\n%s\n%s", code, offOut, errOut)
	}
	s.golden(t, "pr-comment-offline.md", offOut)
	// main is what runs, so main..branch is the same plan as branch against the swarm.
	if diff := cmp.Diff(afterTitle(liveOut), afterTitle(offOut)); diff != "" {
		t.Errorf("offline and live plans differ (-live +offline):\n%s", diff)
	}
	// The daemon follows main only: the pushed branch changed nothing.
	if st := s.dmn.status(t); st.SourceRevision != rev {
		t.Errorf("capstan run moved to %s after a push to a branch", st.SourceRevision)
	}
}

// capstan runs the binary once with the SLB credentials in its environment (plus env)
// and returns stdout, stderr and the exit code.
func (s *suite) capstan(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(append(os.Environ(),
		"ALIBABA_CLOUD_ACCESS_KEY_ID="+slbKeyID,
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET="+slbKeySecret,
	), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("capstan %v: %v", args, err)
	return "", "", -1
}

var (
	digestRE = regexp.MustCompile(`@sha(1|256):[0-9a-f]{40,64}`)
)

// golden compares got, with the run's stack name and revision ids replaced by
// placeholders, to testdata/name; -update rewrites the file.
func (s *suite) golden(t testing.TB, name, got string) {
	t.Helper()
	got = strings.ReplaceAll(got, s.stack, "STACK")
	got = digestRE.ReplaceAllString(got, "@sha$1:REVISION")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

// afterTitle drops a plan's first line, which names the revision.
func afterTitle(md string) string {
	_, rest, _ := strings.Cut(md, "\n")
	return rest
}
