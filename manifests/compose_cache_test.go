package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
)

// TestComposeCacheWarmEqualsCold loads every conformance case twice: the second load
// must come from the cache and give exactly what the first gave.
func TestComposeCacheWarmEqualsCold(t *testing.T) {
	root, cases := conformanceCases(t, "testdata/conformance")
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			resetComposeCache()
			in := composeInput{Stack: conformanceStack, Root: root, Files: files, Env: conformanceEnv}
			cold, coldProbs := loadCompose(in)
			warm, warmProbs := loadCompose(in)
			if hits, misses := composeCacheStats(); hits != 1 || misses != 1 {
				t.Errorf("hits %d, misses %d; want one of each", hits, misses)
			}
			if diff := cmp.Diff(cold, warm); diff != "" {
				t.Errorf("warm load differs (-cold +warm):\n%s", diff)
			}
			if diff := cmp.Diff(coldProbs, warmProbs); diff != "" {
				t.Errorf("warm problems differ (-cold +warm):\n%s", diff)
			}
		})
	}
}

// TestComposeCacheNoticesChanges changes one input at a time after a load that filled
// the cache; the next load must miss and show the change.
func TestComposeCacheNoticesChanges(t *testing.T) {
	base := map[string]string{
		"compose.yml": `services:
  web:
    image: web:${TAG}
    env_file: web.env
    label_file: labels.txt
    secrets: [pw]
    configs: [conf]
secrets:
  pw: {file: pw.txt}
configs:
  conf: {file: conf.txt}
`,
		"web.env":    "MODE=one\n",
		"labels.txt": "tier=one\n",
		"pw.txt":     "one",
		"conf.txt":   "one",
	}
	webKey := resource.ServiceKey("app_web")
	tests := []struct {
		name   string
		change func(t *testing.T, root string, env map[string]string)
		check  func(t *testing.T, res []resource.Resource, probs Problems)
	}{
		{
			name:   "variable",
			change: func(_ *testing.T, _ string, env map[string]string) { env["TAG"] = "2" },
			check: func(t *testing.T, res []resource.Resource, _ Problems) {
				if img := findResource(t, res, webKey).Service.TaskTemplate.ContainerSpec.Image; img != "web:2" {
					t.Errorf("image %s, want web:2", img)
				}
			},
		},
		{
			name: "compose file",
			change: func(t *testing.T, root string, _ map[string]string) {
				rewrite(t, root, "compose.yml", "web:${TAG}", "web2:${TAG}")
			},
			check: func(t *testing.T, res []resource.Resource, _ Problems) {
				if img := findResource(t, res, webKey).Service.TaskTemplate.ContainerSpec.Image; img != "web2:1" {
					t.Errorf("image %s, want web2:1", img)
				}
			},
		},
		{
			name:   "env_file",
			change: func(t *testing.T, root string, _ map[string]string) { rewrite(t, root, "web.env", "one", "two") },
			check: func(t *testing.T, res []resource.Resource, _ Problems) {
				if env := findResource(t, res, webKey).Service.TaskTemplate.ContainerSpec.Env; !cmp.Equal(env, []string{"MODE=two"}) {
					t.Errorf("env %v, want MODE=two", env)
				}
			},
		},
		{
			name:   "label_file",
			change: func(t *testing.T, root string, _ map[string]string) { rewrite(t, root, "labels.txt", "one", "two") },
			check: func(t *testing.T, res []resource.Resource, _ Problems) {
				if v := findResource(t, res, webKey).Service.TaskTemplate.ContainerSpec.Labels["tier"]; v != "two" {
					t.Errorf("label tier=%s, want two", v)
				}
			},
		},
		{
			name:   "secret file",
			change: func(t *testing.T, root string, _ map[string]string) { rewrite(t, root, "pw.txt", "one", "two") },
			check: func(t *testing.T, res []resource.Resource, _ Problems) {
				if d := findResource(t, res, resource.SecretKey("app_pw")).Secret.Data; string(d) != "two" {
					t.Errorf("secret %q, want two", d)
				}
			},
		},
		{
			name:   "config file",
			change: func(t *testing.T, root string, _ map[string]string) { rewrite(t, root, "conf.txt", "one", "two") },
			check: func(t *testing.T, res []resource.Resource, _ Problems) {
				if d := findResource(t, res, resource.ConfigKey("app_conf")).Config.Data; string(d) != "two" {
					t.Errorf("config %q, want two", d)
				}
			},
		},
		{
			name: "secret file replaced by a symlink out of the tree, same content",
			change: func(t *testing.T, root string, _ map[string]string) {
				outside := filepath.Join(filepath.Dir(root), "pw.txt")
				writeFile(t, outside, "one")
				if err := os.Remove(filepath.Join(root, "pw.txt")); err != nil {
					t.Fatal(err)
				}
				symlink(t, outside, filepath.Join(root, "pw.txt"))
			},
			check: func(t *testing.T, res []resource.Resource, probs Problems) {
				if res != nil || !probs.HasErrors() {
					t.Errorf("loaded a secret from outside the tree: %v", probs)
				}
			},
		},
		{
			name: "env_file removed",
			change: func(t *testing.T, root string, _ map[string]string) {
				if err := os.Remove(filepath.Join(root, "web.env")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, res []resource.Resource, probs Problems) {
				if res != nil || !probs.HasErrors() {
					t.Errorf("loaded without its env_file: %v", probs)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case in its own directory below a private parent (the symlink case
			// writes next to the root).
			root := filepath.Join(t.TempDir(), "src")
			for name, content := range base {
				writeFile(t, filepath.Join(root, name), content)
			}
			env := map[string]string{"TAG": "1"}
			in := composeInput{Stack: "app", Root: root, Files: []string{filepath.Join(root, "compose.yml")}, Env: env}
			resetComposeCache()
			if _, probs := loadCompose(in); probs.HasErrors() {
				t.Fatal(probs)
			}
			if _, probs := loadCompose(in); probs.HasErrors() {
				t.Fatal(probs)
			}
			if hits, _ := composeCacheStats(); hits != 1 {
				t.Fatalf("unchanged input: %d hits, want 1", hits)
			}
			tt.change(t, root, env)
			res, probs := loadCompose(in)
			if hits, _ := composeCacheStats(); hits != 1 {
				t.Errorf("changed input came from the cache")
			}
			tt.check(t, res, probs)
		})
	}
}

func rewrite(t *testing.T, root, name, old, new string) {
	t.Helper()
	p := filepath.Join(root, name)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%q not in %s", old, name)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestComposeCacheIsolation changes what a load returned, fresh and from the cache; the
// next load from the cache must not see it.
func TestComposeCacheIsolation(t *testing.T) {
	resetComposeCache()
	files := map[string]string{"c.yml": "services:\n  web:\n    image: web\n    environment: [A=1]\n    labels: {a: b}\n"}
	root := composeTree(t, files)
	in := composeInput{Stack: "iso", Root: root, Files: []string{filepath.Join(root, "c.yml")}}
	want, _ := loadCompose(in)
	for i, res := range [][]resource.Resource{want, nil} {
		if res == nil {
			res, _ = loadCompose(in) // from the cache
		}
		svc := findResource(t, res, resource.ServiceKey("iso_web")).Service
		if i == 0 {
			want = deepCopyResources(res)
		}
		svc.Labels["changed"] = "yes"
		svc.TaskTemplate.ContainerSpec.Env[0] = "A=changed"
		svc.TaskTemplate.ContainerSpec.Image = "changed"
	}
	third, _ := loadCompose(in)
	if hits, _ := composeCacheStats(); hits != 2 {
		t.Fatalf("%d cache hits, want 2", hits)
	}
	if diff := cmp.Diff(want, third); diff != "" {
		t.Errorf("a change to a returned spec leaked into the cache (-want +got):\n%s", diff)
	}
}

// TestComposeCacheKeepsOnlyWhatItMay: failed loads and loads that extend another file
// are never served from the cache, and the cache stays bounded.
func TestComposeCacheKeepsOnlyWhatItMay(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"failed":  {"c.yml": "services:\n  web:\n    image: web\n    deploy: {replicas: many}\n"},
		"extends": {"c.yml": "services:\n  web:\n    extends: {file: b.yml, service: b}\n", "b.yml": "services:\n  b: {image: b}\n"},
	} {
		t.Run(name, func(t *testing.T) {
			resetComposeCache()
			root := composeTree(t, files)
			in := composeInput{Stack: "k", Root: root, Files: []string{filepath.Join(root, "c.yml")}}
			first, firstProbs := loadCompose(in)
			second, secondProbs := loadCompose(in)
			if hits, misses := composeCacheStats(); hits != 0 || misses != 2 {
				t.Errorf("hits %d, misses %d; want 0 and 2", hits, misses)
			}
			if !cmp.Equal(first, second) || !cmp.Equal(firstProbs, secondProbs) {
				t.Errorf("two loads of the same input differ")
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		resetComposeCache()
		for i := 0; i < composeCacheMax+10; i++ {
			var key composeCacheKey
			copy(key[:], fmt.Sprint(i))
			storeCompose(key, nil, nil, nil)
		}
		composeCache.Lock()
		n := len(composeCache.entries)
		var first composeCacheKey
		copy(first[:], "0")
		_, kept := composeCache.entries[first]
		composeCache.Unlock()
		if n != composeCacheMax || kept {
			t.Errorf("%d entries (want %d), oldest kept: %v", n, composeCacheMax, kept)
		}
		resetComposeCache()
	})
}

// TestLoadTreeWarmEqualsCold loads a generated tree twice through Load, whose stacks
// load in parallel: the second time every stack comes from the cache, and the Set is the
// same.
func TestLoadTreeWarmEqualsCold(t *testing.T) {
	root := t.TempDir()
	writeBenchTree(t, root, 8, 3)
	resetComposeCache()
	cold, coldProbs := Load(root, Options{Revision: "main@sha1:1"})
	if coldProbs.HasErrors() {
		t.Fatal(coldProbs)
	}
	warm, warmProbs := Load(root, Options{Revision: "main@sha1:1"})
	if hits, misses := composeCacheStats(); hits != 8 || misses != 8 {
		t.Errorf("hits %d, misses %d; want 8 and 8", hits, misses)
	}
	if diff := cmp.Diff(cold, warm); diff != "" {
		t.Errorf("warm Set differs (-cold +warm):\n%s", diff)
	}
	if diff := cmp.Diff(coldProbs, warmProbs); diff != "" {
		t.Errorf("warm problems differ (-cold +warm):\n%s", diff)
	}
}
