package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeBenchTree generates stacks × services: one directory per stack with a Stack
// document, a v3 compose file whose services use the common features (environment,
// ports, deploy settings, healthcheck, networks, a secret and a config), and a Route
// to the stack's first service.
func writeBenchTree(tb testing.TB, root string, stacks, services int) {
	tb.Helper()
	for s := 0; s < stacks; s++ {
		name := fmt.Sprintf("stack%03d", s)
		dir := filepath.Join(root, "stacks-src", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		var c strings.Builder
		c.WriteString("version: \"3.8\"\nservices:\n")
		for i := 0; i < services; i++ {
			fmt.Fprintf(&c, `  svc%02d:
    image: example/%s-svc%02d:${TAG}
    environment:
      PORT: "80"
      LEVEL: ${LEVEL:-info}
      PEER: svc%02d
    ports:
      - target: 80
        protocol: tcp
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 10s
      retries: 3
    networks: [front, back]
    secrets: [token]
    configs:
      - source: settings
        target: /etc/app.json
    deploy:
      replicas: 2
      labels: {tier: t%d}
      update_config: {parallelism: 1, order: start-first}
      restart_policy: {condition: on-failure, max_attempts: 3}
      resources:
        limits: {cpus: "0.5", memory: 64M}
`, i, name, i, (i+1)%services, i%3)
		}
		c.WriteString("networks:\n  front: {}\n  back: {}\nsecrets:\n  token: {file: ./token.txt}\nconfigs:\n  settings: {file: ./settings.json}\n")
		files := map[string]string{
			"docker-compose.yml": c.String(),
			"token.txt":          "token-" + name,
			"settings.json":      `{"stack": "` + name + `"}`,
			"stack.yaml": fmt.Sprintf("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: %s\nspec:\n  compose: [docker-compose.yml]\n  variables: {TAG: \"1.%d\"}\n---\n"+
				"apiVersion: capstan.dev/v1alpha1\nkind: Route\nmetadata:\n  name: %s-http\nspec:\n  service: {stack: %s, name: svc00, targetPort: 80}\n"+
				"  loadBalancer: {id: lb-bench0001, region: cn-hangzhou}\n  listener: {protocol: http, port: %d, healthCheck: {uri: /healthz}}\n",
				name, s, name, name, 8000+s),
		}
		for f, content := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// BenchmarkLoadTree loads and converts 100 stacks of 10 services each (1,000 services,
// 100 routes) cold: the cache of converted stacks is emptied before every load, so
// every compose file goes through compose-go. Besides time and allocations per load it
// reports the peak live heap seen while loading, sampled every millisecond. Goal:
// < 0.5 s and < 200 MB.
//
//	go test -run '^$' -bench BenchmarkLoadTree -benchmem ./manifests/
func BenchmarkLoadTree(b *testing.B) {
	benchmarkLoadTree(b, false)
}

// BenchmarkLoadTreeWarm loads the same unchanged tree again and again, as the daemon
// does on every new revision that leaves the stacks alone: every stack comes from the
// cache of converted stacks (each still hashed and its secret and config files read
// again to check them).
func BenchmarkLoadTreeWarm(b *testing.B) {
	benchmarkLoadTree(b, true)
}

func benchmarkLoadTree(b *testing.B, warm bool) {
	root := b.TempDir()
	writeBenchTree(b, root, 100, 10)

	// Check the tree once, outside the timing; this also fills the cache for the warm
	// benchmark.
	resetComposeCache()
	set, problems := Load(root, Options{})
	if problems.HasErrors() {
		b.Fatalf("generated tree does not load:\n%v", problems)
	}
	if n := len(set.Stacks); n != 100 {
		b.Fatalf("%d stacks, want 100", n)
	}
	resetComposeCacheStats()

	runtime.GC()
	stop, peak := sampleHeap()
	cpu := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !warm {
			resetComposeCache()
		}
		if _, problems := Load(root, Options{}); problems.HasErrors() {
			b.Fatal(problems)
		}
	}
	b.StopTimer()
	stop()
	b.ReportMetric(float64(*peak)/(1<<20), "peak-heap-MB")
	// CPU time per load, all goroutines and the garbage collector included: unlike
	// wall time it hardly moves when other work shares the machine.
	if cpu >= 0 {
		b.ReportMetric(float64(processCPU()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	}
	hits, misses := composeCacheStats()
	if warm && misses > 0 || !warm && hits > 0 {
		b.Fatalf("cache hits %d, misses %d: not a %s benchmark", hits, misses, map[bool]string{true: "warm", false: "cold"}[warm])
	}
}

// BenchmarkLoadTreeDAB loads the same shape (100 stacks × 10 services, 100 routes)
// from bundles, so it measures capstan's own work — discovery, documents, the DAB
// decoder, route checks, hashing and stamping — without compose-go.
func BenchmarkLoadTreeDAB(b *testing.B) {
	root := b.TempDir()
	for s := 0; s < 100; s++ {
		name := fmt.Sprintf("stack%03d", s)
		var svcs []string
		for i := 0; i < 10; i++ {
			svcs = append(svcs, fmt.Sprintf(`"svc%02d": {"Image": "example/%s-svc%02d:1", "Env": ["PORT=80", "PEER=svc%02d"], "Labels": {"tier": "t%d"}, "Ports": [{"Protocol": "tcp", "Port": 80}], "Networks": ["front", "back"], "WorkingDir": "/app", "User": "1000"}`,
				i, name, i, (i+1)%10, i%3))
		}
		files := map[string]string{
			name + ".dab": `{"Version": "0.1", "Services": {` + strings.Join(svcs, ",\n") + `}}`,
			"route.yaml": fmt.Sprintf("apiVersion: capstan.dev/v1alpha1\nkind: Route\nmetadata:\n  name: %s-http\nspec:\n  service: {stack: %s, name: svc00, targetPort: 80}\n"+
				"  loadBalancer: {id: lb-bench0001, region: cn-hangzhou}\n  listener: {protocol: http, port: %d, healthCheck: {uri: /healthz}}\n", name, name, 8000+s),
		}
		for f, content := range files {
			writeFile(b, filepath.Join(root, name, f), content)
		}
	}
	set, problems := Load(root, Options{})
	if problems.HasErrors() || len(set.Stacks) != 100 {
		b.Fatalf("generated tree does not load:\n%v", problems)
	}
	runtime.GC()
	stop, peak := sampleHeap()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, problems := Load(root, Options{}); problems.HasErrors() {
			b.Fatal(problems)
		}
	}
	b.StopTimer()
	stop()
	b.ReportMetric(float64(*peak)/(1<<20), "peak-heap-MB")
}

// sampleHeap records the largest heap (live and not yet collected objects) seen until
// stop is called. runtime/metrics reads it without stopping the world.
func sampleHeap() (stop func(), peak *uint64) {
	peak = new(uint64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > *peak {
				*peak = v
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }, peak
}
