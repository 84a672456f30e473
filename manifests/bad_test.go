package manifests

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// badGenerators add what cannot or should not be committed: symlinks, binary files and
// a 50 MB file. Each gets the case's source root (already holding src/, if any) and the
// directory above it, which is outside the tree.
var badGenerators = map[string]func(t *testing.T, root, outside string){
	"path-escape-symlink": func(t *testing.T, root, outside string) {
		writeFile(t, filepath.Join(outside, "secret", "docker-compose.yml"), "services:\n  x: {image: x}\n")
		writeFile(t, filepath.Join(outside, "secret", "app.dab"), `{"Version": "0.1", "Services": {"x": {"Image": "x"}}}`)
		symlink(t, filepath.Join(outside, "secret", "docker-compose.yml"), filepath.Join(root, "app", "docker-compose.yml"))
		symlink(t, filepath.Join(outside, "secret"), filepath.Join(root, "app", "bundles"))
		// A symlinked directory is not walked, so this bundle outside the tree is
		// never read as an implied stack either.
		symlink(t, filepath.Join(outside, "secret"), filepath.Join(root, "stacks"))
	},
	"huge-file": func(t *testing.T, root, _ string) {
		// 50 MB that starts like a manifest: refused by size, read no further.
		f, err := os.Create(filepath.Join(root, "huge.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		head := "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: huge\nspec:\n  variables:\n"
		if _, err := f.WriteString(head); err != nil {
			t.Fatal(err)
		}
		line := []byte("    PADDING_0123456789: \"" + strings.Repeat("x", 100) + "\"\n")
		for n := 0; n < 50<<20; n += len(line) {
			if _, err := f.Write(line); err != nil {
				t.Fatal(err)
			}
		}
		// A large YAML file that is not a manifest is only skipped, with a warning.
		data := bytes.Repeat([]byte("# just data\n"), (5<<20)/12)
		if err := os.WriteFile(filepath.Join(root, "data.yml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	},
	"huge-compose-file": func(t *testing.T, root, _ string) {
		// Over MaxFileSize (4 MiB): a compose file, and every kind of file a compose
		// file makes capstan read. Each is refused by its size, all in one report.
		big := func(name, head, line string) {
			data := []byte(head + strings.Repeat(line, (5<<20)/len(line)))
			if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(root, "big"), 0o755); err != nil {
			t.Fatal(err)
		}
		big("big/docker-compose.yml", "services:\n  web:\n    image: web:1\n", "# padding padding padding padding padding\n")
		big("refs/big.env", "", "PADDING=0123456789012345678901234567890123456789\n")
		big("refs/blob.bin", "", "0123456789abcdef")
		big("extends/base.yml", "services:\n  worker:\n    image: worker:1\n", "# padding padding padding padding padding\n")
	},
	"binary-yaml": func(t *testing.T, root, _ string) {
		// A corrupted manifest: the header survived, the rest is binary.
		corrupt := append([]byte("apiVersion: capstan.dev/v1alpha1\nkind: Stack\n"), 0x00, 0xff, 0xfe, 0x01, 0x02)
		if err := os.WriteFile(filepath.Join(root, "corrupt.yaml"), corrupt, 0o644); err != nil {
			t.Fatal(err)
		}
		// An encrypted file (git-crypt style) that is no manifest: skipped with a warning.
		if err := os.WriteFile(filepath.Join(root, "secrets.yaml"), []byte("\x00GITCRYPT\x00\x9c\x12\xe0"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Invalid UTF-8 without NUL bytes in a manifest.
		latin1 := []byte("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: caf\xe9\n")
		if err := os.WriteFile(filepath.Join(root, "latin1.yml"), latin1, 0o644); err != nil {
			t.Fatal(err)
		}
		// A bundle that is binary.
		if err := os.WriteFile(filepath.Join(root, "blob.dab"), []byte{0x1f, 0x8b, 0x08, 0x00}, 0o644); err != nil {
			t.Fatal(err)
		}
	},
}

// TestBadInput loads every case under testdata/bad/<case>/ and compares the problems,
// one "file:line: message" per line, with <case>/expected.txt. Every case must fail to
// load (no Set) without panicking.
func TestBadInput(t *testing.T) {
	entries, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 20 {
		t.Errorf("only %d bad-input cases; want at least 20", len(entries))
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		name := e.Name()
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "bad", name)
			root := stageCase(t, dir)
			if gen := badGenerators[name]; gen != nil {
				gen(t, root, filepath.Dir(root))
			}
			set, problems := Load(root, Options{})
			if set != nil {
				t.Errorf("Load returned a Set despite the problems")
			}
			if !problems.HasErrors() {
				t.Errorf("no errors reported")
			}
			got := problems.Error() + "\n"
			golden := filepath.Join(dir, "expected.txt")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("problems differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
	for name := range badGenerators {
		if _, err := os.Stat(filepath.Join("testdata", "bad", name)); err != nil {
			t.Errorf("generator %s has no case directory: %v", name, err)
		}
	}
}

// stageCase copies <dir>/src into a fresh temporary tree and returns its root, so
// generators can add files and the directory above the root is empty and private.
func stageCase(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if _, err := os.Stat(src); err != nil {
		return root
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
}
