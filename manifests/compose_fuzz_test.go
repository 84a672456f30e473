package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadCompose feeds arbitrary bytes to the compose loader: it must neither panic
// (loadCompose turns a panic into an "internal error" problem, which fails here) nor
// return resources alongside errors.
func FuzzLoadCompose(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "conformance", "*.yml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("version: '2'\nservices:\n  a:\n    image: x\n    restart: always\n    mem_limit: 1g\n"))
	f.Add([]byte("services:\n  a:\n    image: x\n    ports: [\"8000-8010:80\"]\n    extra_hosts: {h: [1.1.1.1]}\n"))
	f.Add([]byte("services: {a: {image: x, networks: {n: {aliases: [b]}}}}\nnetworks: {n: {ipam: {config: [null]}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		file := filepath.Join(root, "compose.yml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		res, probs := loadCompose(composeInput{Stack: "fuzz", Root: root, Files: []string{file}})
		for _, p := range probs {
			if strings.Contains(p.Message, "internal error") {
				t.Fatalf("loader panicked on input %q: %s", data, p)
			}
		}
		if probs.HasErrors() && res != nil {
			t.Fatalf("resources returned along with errors: %s", probs)
		}
	})
}
