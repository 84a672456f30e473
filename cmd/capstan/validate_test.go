package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/manifests"
)

func runValidate(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"validate"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const validateDAB = `{"Version": "0.1", "Services": {"web": {"Image": "web:1", "Ports": [{"Port": 80}]}}}`

func TestValidateExamples(t *testing.T) {
	stdout, stderr, code := runValidate(t, "--path", filepath.Join("..", "..", "examples"))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	want := filepath.Join("..", "..", "examples") + " is valid: 3 stacks, 5 services, 2 routes\n"
	if stdout != want || stderr != "" {
		t.Errorf("stdout %q, stderr %q; want stdout %q", stdout, stderr, want)
	}
}

func TestValidateText(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		wantCode int
		want     string // with ROOT for the --path
	}{
		{
			name:     "valid with a warning",
			files:    map[string]string{"web.dab": validateDAB, "legacy.yaml": "apiVersion: v1\nkind: ConfigMap\n# apiVersion: capstan.dev/v1alpha1\n"},
			wantCode: 0,
			want: "ROOT/legacy.yaml:1: warning: document with apiVersion \"v1\" is not a capstan manifest; skipped\n" +
				"ROOT is valid: 1 stack, 1 service, 0 routes (1 warning)\n",
		},
		{
			name: "every problem at once",
			files: map[string]string{
				"web.dab": validateDAB,
				"a/route.yaml": "apiVersion: capstan.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec:\n" +
					"  service: {stack: web, name: web, targetPort: 81}\n  loadBalancer: {id: lb-1, region: cn-hangzhou}\n  listener: {protocol: http, port: 80}\n",
				"b/stack.yaml": "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata: {name: api}\nspec: {bundle: api.dab, prunee: true}\n",
			},
			wantCode: 1,
			want: "ROOT/a/route.yaml:5: spec.service.targetPort: service web_web does not publish container port 81 (it publishes 80/tcp)\n" +
				"ROOT/b/stack.yaml:4: spec.prunee: unknown field; did you mean \"prune\"?\n" +
				"ROOT is not valid: 2 errors\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeTree(t, tt.files)
			stdout, stderr, code := runValidate(t, "--path", root)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			want := strings.ReplaceAll(tt.want, "ROOT", filepath.ToSlash(root))
			if diff := cmp.Diff(want, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if stderr != "" {
				t.Errorf("stderr: %q", stderr)
			}
		})
	}
}

func TestValidateJSON(t *testing.T) {
	root := writeTree(t, map[string]string{
		"web.dab":    validateDAB,
		"stack.yaml": "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata: {name: api}\nspec: {bundle: missing.dab}\n",
	})
	stdout, _, code := runValidate(t, "--path", root, "-o", "json")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var got validateReport
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	want := validateReport{
		Valid: false, Path: root, Errors: 1,
		Problems: manifests.Problems{{File: filepath.ToSlash(root) + "/stack.yaml", Line: 4, Severity: manifests.Error,
			Message: `spec.bundle: "missing.dab" does not exist`}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	stdout, _, code = runValidate(t, "--path", filepath.Join("..", "..", "examples"), "-o", "json")
	if code != 0 {
		t.Fatalf("examples: exit %d\n%s", code, stdout)
	}
	got = validateReport{}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Valid || got.Stacks != 3 || got.Services != 5 || got.Routes != 2 || got.Problems == nil || len(got.Problems) != 0 {
		t.Errorf("examples report: %+v", got)
	}
	if !strings.Contains(stdout, `"problems": []`) {
		t.Errorf("problems must be [] rather than null when there are none:\n%s", stdout)
	}
}

func TestValidateBadFlags(t *testing.T) {
	_, stderr, code := runValidate(t, "-o", "yaml")
	if code != 1 || !strings.Contains(stderr, `-o "yaml": want text or json`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runValidate(t, "--path", filepath.Join(t.TempDir(), "nope"))
	if code != 1 || stderr != "" {
		t.Errorf("missing path: exit %d, stderr %q", code, stderr)
	}
}
