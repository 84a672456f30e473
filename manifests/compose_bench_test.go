package manifests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// composeServices renders one compose file with n services, each with the usual mix of
// keys (ports, environment, a network, a secret, deploy settings).
func composeServices(n int) string {
	var b strings.Builder
	b.WriteString("version: \"3.8\"\nservices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `  svc%04d:
    image: registry.example.com/team/svc%04d:${TAG}
    command: ["serve", "--port", "8080"]
    environment:
      SERVICE: svc%04d
      LEVEL: info
    ports:
      - target: 8080
        published: %d
    networks: [back]
    secrets: [token]
    deploy:
      replicas: 2
      resources:
        limits: {cpus: "0.5", memory: 128M}
      update_config: {parallelism: 1, delay: 10s}
      placement:
        constraints: [node.role == worker]
    healthcheck:
      test: ["CMD", "/healthz"]
      interval: 10s
`, i, i, i, 20000+i)
	}
	b.WriteString("networks:\n  back:\n    driver: overlay\nsecrets:\n  token:\n    file: token.txt\n")
	return b.String()
}

// BenchmarkLoadCompose loads one file of 100 (and 1,000) services end to end: YAML
// positions, compose-go, key policy and conversion. The cache of converted stacks is
// emptied before each load.
func BenchmarkLoadCompose(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			root := composeTree(b, map[string]string{"compose.yml": composeServices(n), "token.txt": "t"})
			in := composeInput{Stack: "bench", Root: root, Files: []string{filepath.Join(root, "compose.yml")}, Env: map[string]string{"TAG": "1"}}
			b.ReportAllocs()
			for b.Loop() {
				resetComposeCache()
				res, probs := loadCompose(in)
				if len(probs) != 0 || len(res) != n+2 {
					b.Fatalf("got %d resources, problems:\n%s", len(res), probs)
				}
			}
		})
	}
}
