package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	tests := map[string]string{
		"/var/lib/docker-n1/overlay2/abc/merged": "/var/lib/docker-n1/overlay2/abc/merged",
		`/run/with\040space`:                     "/run/with space",
		`/run/tab\011and\134backslash`:           "/run/tab\tand\\backslash",
		`/run/short\04`:                          `/run/short\04`,
	}
	for in, want := range tests {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for lines, want := range map[int]string{1: "d", 2: "c\nd", 10: "a\nb\nc\nd"} {
		if got := tail(p, lines); got != want {
			t.Errorf("tail(%d) = %q, want %q", lines, got, want)
		}
	}
}

// The test process is alive and belongs to no node; a PID that cannot exist is not alive.
func TestProcessChecks(t *testing.T) {
	if !alive(os.Getpid()) {
		t.Error("alive(self) = false")
	}
	if alive(0) || alive(1<<30) {
		t.Error("alive of an impossible PID = true")
	}
	for _, n := range layout {
		if ownsProcess(n, os.Getpid()) {
			t.Errorf("the test process counts as a process of %s", n.Name)
		}
	}
	if pp := parentPID(os.Getpid()); pp != os.Getppid() {
		t.Errorf("parentPID(self) = %d, want %d", pp, os.Getppid())
	}
}
