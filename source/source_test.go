package source

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRevisionRoundTrip(t *testing.T) {
	h := strings.Repeat("0123456789abcdef", 3)[:40]
	d := strings.Repeat("ab", 32)
	cases := []struct {
		in   string
		want Revision
	}{
		{"main@sha1:" + h, Revision{Ref: "main", Digest: "sha1:" + h}},
		{"feature/x@y@sha1:" + h, Revision{Ref: "feature/x@y", Digest: "sha1:" + h}},
		{"refs/pull/7/head@sha1:" + h, Revision{Ref: "refs/pull/7/head", Digest: "sha1:" + h}},
		{h + "@sha1:" + h, Revision{Ref: h, Digest: "sha1:" + h}},
		{"local@sha256:" + d, Revision{Ref: "local", Digest: "sha256:" + d}},
	}
	for _, tc := range cases {
		got, err := ParseRevision(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRevision(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
	if r, _ := ParseRevision("main@sha1:" + h); r.Commit() != h {
		t.Errorf("Commit() = %q", r.Commit())
	}
	for _, bad := range []string{"", "main", "main@sha1:abc", "@sha1:" + h, "main@sha1:" + strings.ToUpper(h), "main@md5:" + h, "main@sha256:" + h} {
		if r, err := ParseRevision(bad); err == nil {
			t.Errorf("ParseRevision(%q) = %+v, want an error", bad, r)
		}
	}
	if (Revision{}).String() != "" {
		t.Error("the zero Revision does not print as empty")
	}
}

func TestIsGitURL(t *testing.T) {
	for s, want := range map[string]bool{
		"https://github.com/acme/config.git": true,
		"http://127.0.0.1:8080/r.git":        true,
		"ssh://git@github.com/acme/config":   true,
		"git@github.com:acme/config.git":     true,
		"deploy@git.example.com:config":      true,
		"file:///srv/git/config.git":         true,
		"./examples/wordpress":               false,
		"/srv/config":                        false,
		"C:/config":                          false,
		"config":                             false,
		"dir/with@sign:colon":                false,
	} {
		if got := IsGitURL(s); got != want {
			t.Errorf("IsGitURL(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:tok@github.com/a/b.git": "https://github.com/a/b.git",
		"https://tok@github.com/a/b.git":      "https://github.com/a/b.git",
		"ssh://git@github.com/a/b.git":        "ssh://git@github.com/a/b.git",
		"ssh://git:pw@github.com/a/b.git":     "ssh://git@github.com/a/b.git",
		"git@github.com:a/b.git":              "git@github.com:a/b.git",
		"https://github.com/a/b.git":          "https://github.com/a/b.git",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := causeText(errors.New(`Get "https://u:secret@h/x": refused`)); strings.Contains(got, "secret") {
		t.Errorf("causeText kept the password: %s", got)
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLocalRevisionIsAContentDigest(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"stacks/web/compose.yaml": composeYAML("1"), "stacks/web/capstan.yaml": stackYAML, "README.md": "x"})
	s := newSource(t, Options{Source: dir, Path: "stacks"})
	snap := mustFetch(t, s)
	if snap.Dir != filepath.Join(dir, "stacks") {
		t.Errorf("Dir = %s", snap.Dir)
	}
	if snap.Revision.Ref != "local" || !strings.HasPrefix(snap.Revision.Digest, "sha256:") {
		t.Fatalf("revision %s, want local@sha256:...", snap.Revision)
	}
	if _, err := ParseRevision(snap.Revision.String()); err != nil {
		t.Errorf("local revision does not parse: %v", err)
	}
	same := mustFetch(t, newSource(t, Options{Source: dir, Path: "stacks"}))
	if same.Revision != snap.Revision {
		t.Errorf("unchanged directory: %s then %s", snap.Revision, same.Revision)
	}

	changes := []struct {
		name string
		do   func()
	}{
		{"content", func() { writeTree(t, dir, map[string]string{"stacks/web/compose.yaml": composeYAML("2")}) }},
		{"new file", func() { writeTree(t, dir, map[string]string{"stacks/web/extra.env": "A=1"}) }},
		{"rename", func() {
			if err := os.Rename(filepath.Join(dir, "stacks/web/extra.env"), filepath.Join(dir, "stacks/web/other.env")); err != nil {
				t.Fatal(err)
			}
		}},
		{"executable bit", func() {
			if err := os.Chmod(filepath.Join(dir, "stacks/web/other.env"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink", func() {
			if err := os.Symlink("compose.yaml", filepath.Join(dir, "stacks/web/alias.yaml")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	prev := snap.Revision
	for _, c := range changes {
		c.do()
		rev, err := s.Head(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if rev == prev {
			t.Errorf("%s: revision did not change", c.name)
		}
		prev = rev
	}
	// Outside --path and inside .git: not part of the manifests.
	writeTree(t, dir, map[string]string{"README.md": "changed", "stacks/.git/HEAD": "ref: x"})
	if rev, _ := s.Head(ctxT(t)); rev != prev {
		t.Errorf("a change outside --path or in .git changed the revision")
	}
}

func TestLocalErrors(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"file.txt": "x"})
	if _, err := New(Options{Source: dir, Ref: "main"}); err == nil || !strings.Contains(err.Error(), "--ref") {
		t.Errorf("--ref with a directory: %v", err)
	}
	for _, p := range []string{"missing", "file.txt"} {
		_, err := newSource(t, Options{Source: dir, Path: p}).Fetch(ctxT(t))
		if !errors.Is(err, ErrPathNotFound) {
			t.Errorf("--path %s: err = %v, want ErrPathNotFound", p, err)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("empty source accepted")
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "env-token")
	if err := os.WriteFile(envFile, []byte("from-env-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const env = "CAPSTAN_TEST_SECRET"
	cases := []struct {
		name      string
		flag      string
		val, path *string
		want      string
		wantErr   string
	}{
		{"nothing", "", nil, nil, "", ""},
		{"flag", file, nil, nil, "from-file", ""},
		{"flag wins over the environment", file, ptr("from-env"), nil, "from-file", ""},
		{"env", "", ptr("from-env"), nil, "from-env", ""},
		{"env file", "", nil, &envFile, "from-env-file", ""},
		{"both env and env file", "", ptr("x"), &envFile, "", "set only one"},
		{"missing flag file", filepath.Join(dir, "nope"), nil, nil, "", "--test-secret-file"},
		{"missing env file", "", nil, ptr(filepath.Join(dir, "nope")), "", env + "_FILE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Unsetenv(env)
			os.Unsetenv(env + "_FILE")
			if tc.val != nil {
				t.Setenv(env, *tc.val)
			}
			if tc.path != nil {
				t.Setenv(env+"_FILE", *tc.path)
			}
			got, err := ReadSecretText("test-secret-file", tc.flag, env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "from-") {
					t.Errorf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
