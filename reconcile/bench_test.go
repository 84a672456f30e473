package reconcile_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

// BenchmarkBuildPlanNoop200 plans 200 services against a live set that matches them, the
// way Swarm stores them (defaults filled in): the pure share of a no-op reconcile.
//
//	go test -run '^$' -bench BuildPlanNoop200 -benchmem ./reconcile/
func BenchmarkBuildPlanNoop200(b *testing.B) {
	dir := b.TempDir()
	var compose strings.Builder
	compose.WriteString("services:\n")
	for i := range 200 {
		fmt.Fprintf(&compose, `  svc%03d:
    image: capstan-testapp:dev
    environment: {MESSAGE: "service %d", LOG_LEVEL: info}
    labels: {team: web}
    deploy:
      replicas: 0
      update_config: {parallelism: 2, order: start-first}
`, i, i)
	}
	stack := "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata: {name: bench}\nspec: {compose: [compose.yaml]}\n"
	for name, content := range map[string]string{"compose.yaml": compose.String(), "stack.yaml": stack} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	desired, live := loadMatching(b, dir)
	plan, err := reconcile.BuildPlan(desired, live, reconcile.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if plan.HasChanges() {
		b.Fatalf("a matching live set plans changes: %+v", plan.Summary())
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reconcile.BuildPlan(desired, live, reconcile.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadAndPlan1000 is a one-shot `capstan diff` without the cluster round trips:
// load a tree of 100 stacks × 10 services (1,000 services, each with environment, a
// published port, two networks, a secret, update and restart settings) cold — the
// compose cache emptied first, as in a fresh process — then plan it against a live set
// that matches it. It reports the share of each step.
//
//	go test -run '^$' -bench LoadAndPlan1000 -benchtime 5x ./reconcile/
func BenchmarkLoadAndPlan1000(b *testing.B) {
	dir := b.TempDir()
	for s := range 100 {
		var c strings.Builder
		c.WriteString("version: \"3.8\"\nservices:\n")
		for i := range 10 {
			fmt.Fprintf(&c, `  svc%02d:
    image: example/svc%02d:${TAG}
    environment: {PORT: "80", LEVEL: "${LEVEL:-info}", PEER: svc%02d}
    ports: [{target: 80, protocol: tcp}]
    networks: [front, back]
    secrets: [token]
    deploy:
      replicas: 2
      update_config: {parallelism: 1, order: start-first}
      restart_policy: {condition: on-failure, max_attempts: 3}
`, i, i, (i+1)%10)
		}
		c.WriteString("networks:\n  front: {}\n  back: {}\nsecrets:\n  token: {file: ./token.txt}\n")
		sdir := filepath.Join(dir, fmt.Sprintf("stack%03d", s))
		files := map[string]string{
			"docker-compose.yml": c.String(),
			"token.txt":          fmt.Sprintf("token-%d", s),
			"stack.yaml": fmt.Sprintf("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata: {name: stack%03d}\n"+
				"spec: {compose: [docker-compose.yml], variables: {TAG: \"1.%d\"}}\n", s, s),
		}
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			b.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(sdir, name), []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	desired, live := loadMatching(b, dir)
	if n := len(desired.Resources); n < 1000 {
		b.Fatalf("the tree has %d resources, want 1,000 services and more", n)
	}
	var load, plan time.Duration
	for b.Loop() {
		manifests.ResetCache()
		start := time.Now()
		desired, problems := manifests.Load(dir, manifests.Options{})
		if problems.HasErrors() {
			b.Fatal(problems)
		}
		mid := time.Now()
		p, err := reconcile.BuildPlan(desired, live, reconcile.Options{})
		if err != nil {
			b.Fatal(err)
		}
		plan += time.Since(mid)
		load += mid.Sub(start)
		if p.HasChanges() {
			b.Fatalf("a matching live set plans changes: %+v", p.Summary())
		}
	}
	b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-ms/op")
	b.ReportMetric(float64(plan.Milliseconds())/float64(b.N), "plan-ms/op")
}

// loadMatching loads the tree at dir and returns it with a live set that matches it the
// way Swarm stores it (its defaults filled in, an endpoint without ports dropped).
func loadMatching(b *testing.B, dir string) (desired, live *resource.Set) {
	b.Helper()
	desired, problems := manifests.Load(dir, manifests.Options{})
	if problems.HasErrors() {
		b.Fatal(problems)
	}
	live = resource.NewSet()
	for k, r := range desired.Resources {
		l := resource.DeepCopy(r)
		l.ID, l.Version = "id-"+k.Name, 1
		if s := l.Service; s != nil {
			s.TaskTemplate.Runtime = "container"
			s.TaskTemplate.ContainerSpec.Isolation = "default"
			if s.EndpointSpec != nil && len(s.EndpointSpec.Ports) == 0 {
				s.EndpointSpec = nil
			}
		}
		live.Resources[k] = l
	}
	return desired, live
}
