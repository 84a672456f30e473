package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
)

// planJSON is the part of the JSON plan format the tests read.
type planJSON struct {
	Changes []struct {
		Action string `json:"action"`
		Key    string `json:"key"`
		Reason string `json:"reason"`
	} `json:"changes"`
	Drift []struct {
		Key      string `json:"key"`
		Reverted bool   `json:"reverted"`
		Diff     []struct {
			Path string `json:"path"`
		} `json:"diff"`
	} `json:"drift"`
}

func decodePlanJSON(t *testing.T, out string) planJSON {
	t.Helper()
	var p planJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, out)
	}
	return p
}

func mustDiff(t *testing.T, e *swarmEnv, wantCode int) string {
	t.Helper()
	out, code := e.diff("-o", "json")
	if code != wantCode {
		t.Fatalf("diff exit %d, want %d\n%s", code, wantCode, out)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sameKeys(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func networkInspectOptions() network.InspectOptions { return network.InspectOptions{} }

func dockerCLI(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return string(out), err
}

// copyExample copies an example directory into dst, renaming its stack to stack so tests
// never collide with a demo's objects. Bare .dab files are left behind: they would add a
// second stack under the old name.
func copyExample(t *testing.T, src, dst, stack string) {
	t.Helper()
	old := filepath.Base(src)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if strings.HasSuffix(p, ".dab") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := string(b)
		s = strings.ReplaceAll(s, "name: "+old+"\n", "name: "+stack+"\n")
		s = strings.ReplaceAll(s, "stack: "+old, "stack: "+stack)
		return os.WriteFile(filepath.Join(dst, rel), []byte(s), 0o644)
	})
	if err != nil {
		t.Fatalf("copy example: %v", err)
	}
}
