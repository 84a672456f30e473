package reconcile_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	desired, problems := manifests.Load(dir, manifests.Options{})
	if problems.HasErrors() {
		b.Fatal(problems)
	}
	live := resource.NewSet()
	for k, r := range desired.Resources {
		l := resource.DeepCopy(r)
		l.ID, l.Version = "id-"+k.Name, 1
		if s := l.Service; s != nil {
			// What Swarm fills in on the way back.
			s.TaskTemplate.Runtime = "container"
			s.TaskTemplate.ContainerSpec.Isolation = "default"
			s.EndpointSpec = nil
		}
		live.Resources[k] = l
	}
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
