package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

// benchServices is the size of the stack BenchmarkNoopReconcile200 reconciles.
const benchServices = 200

// BenchmarkNoopReconcile200 measures the case capstan runs most: a reconcile that finds
// nothing to do, on a 200-service stack. Side by side, in the same run, it times the peer
// doing the same job, `docker stack deploy --resolve-image never` of the same file under
// another stack name, which updates every service every time. All talk to the engine
// through counting proxies, so the requests are counted on the wire.
//
// Each iteration measures three things, in turn:
//   - capstan apply: the whole CLI command, in-process: load the source (compose-go),
//     observe, plan, print "No changes". This is ns/op, requests/op and writes/op.
//   - the loop's reconcile when the source has not moved: what `capstan run` repeats
//     every interval, the desired set already loaded for that revision and the Docker
//     client kept (so no version ping): observe and plan (loop-*/op metrics).
//   - docker stack deploy of the same file (docker-*/op metrics).
//
// The services have 0 replicas: the subject is the control plane, and 400 running tasks
// would make a 2-core machine measure the scheduler instead.
//
// Only capstan apply runs with the timer on; the metrics are per iteration. Run it with a
// fixed count, since each iteration also pays for one full docker stack deploy:
//
//	go test ./cmd/capstan/ -run '^$' -bench NoopReconcile200 -benchtime 5x
func BenchmarkNoopReconcile200(b *testing.B) {
	cli, _ := dockertest.Client(b)
	dockertest.Image(b)
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skipf("skipping: the docker CLI is needed for the docker stack deploy side: %v", err)
	}
	ctx := context.Background()
	stackA, stackB := dockertest.UniqueName(b, "bench"), dockertest.UniqueName(b, "bench")
	instance := "capstan-" + stackA
	dockertest.Cleanup(b, cli, stackA)
	dockertest.Cleanup(b, cli, stackB)

	dir := b.TempDir()
	compose := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(compose, []byte(benchCompose(benchServices)), 0o644); err != nil {
		b.Fatal(err)
	}
	doc := fmt.Sprintf("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: %s\nspec:\n  compose: [compose.yaml]\n  resolveImage: never\n", stackA)
	if err := os.WriteFile(filepath.Join(dir, "stack.yaml"), []byte(doc), 0o644); err != nil {
		b.Fatal(err)
	}

	// The first deploys create everything; they are not measured.
	capstanArgs := []string{"apply", "--instance", instance, "--source", dir, "--timeout", "0"}
	if out, code := capstanRun(ctx, capstanArgs...); code != 0 {
		b.Fatalf("first capstan apply exited %d:\n%s", code, out)
	}
	docker := func(host string) {
		cmd := exec.CommandContext(ctx, "docker", "stack", "deploy", "--resolve-image", "never", "--detach=true", "-c", compose, stackB)
		cmd.Env = dockerProcessEnv(nil)
		if host != "" {
			cmd.Env = append(cmd.Env, "DOCKER_HOST="+host)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("docker stack deploy: %v\n%s", err, out)
		}
	}
	docker("")

	capstanProxy, loopProxy, dockerProxy := newCountingProxy(b), newCountingProxy(b), newCountingProxy(b)
	capstanArgs = append(capstanArgs, "--docker-host", capstanProxy.host())
	reconcileOnce := loopReconciler(b, dir, instance, loopProxy.host())
	var cs, ls, ds benchSide
	for b.Loop() {
		// A one-shot command starts with an empty compose cache; so does this iteration.
		b.StopTimer()
		manifests.ResetCache()
		b.StartTimer()
		capstanProxy.reset()
		start := time.Now()
		out, code := capstanRun(ctx, capstanArgs...)
		cs.add(time.Since(start), capstanProxy)
		if code != 0 || !strings.Contains(out, "No changes") {
			b.Fatalf("no-op capstan apply exited %d, want 0 and no changes:\n%s", code, out)
		}

		b.StopTimer()
		loopProxy.reset()
		start = time.Now()
		reconcileOnce()
		ls.add(time.Since(start), loopProxy)

		dockerProxy.reset()
		start = time.Now()
		docker(dockerProxy.host())
		ds.add(time.Since(start), dockerProxy)
		b.StartTimer()
	}

	if cs.writes != 0 {
		b.Errorf("a no-op capstan apply sent %d write requests, want 0", cs.writes)
	}
	if cs.maxRequests > 6 {
		b.Errorf("a no-op capstan apply sent up to %d requests, want at most 6: %s", cs.maxRequests, strings.Join(cs.longest, ", "))
	}
	if ls.writes != 0 || ls.maxRequests > 6 {
		b.Errorf("the loop's no-op reconcile sent %d writes and up to %d requests, want 0 and at most 6: %s", ls.writes, ls.maxRequests, strings.Join(ls.longest, ", "))
	}
	b.ReportMetric(cs.per(cs.requests), "requests/op")
	b.ReportMetric(cs.per(cs.writes), "writes/op")
	b.ReportMetric(ls.per(int(ls.wall.Microseconds()))/1000, "loop-ms/op")
	b.ReportMetric(ls.per(ls.requests), "loop-requests/op")
	b.ReportMetric(ds.per(ds.requests), "docker-requests/op")
	b.ReportMetric(ds.per(ds.writes), "docker-writes/op")
	b.ReportMetric(ds.per(int(ds.wall.Microseconds()))/1000, "docker-ms/op")
	speedup, loopSpeedup := float64(ds.wall)/float64(cs.wall), float64(ds.wall)/float64(ls.wall)
	b.ReportMetric(speedup, "speedup")
	b.ReportMetric(loopSpeedup, "loop-speedup")

	var t strings.Builder
	fmt.Fprintf(&t, "no-op reconcile of %d services (0 replicas), mean of %d runs each:\n", benchServices, cs.n)
	fmt.Fprintf(&t, "%-44s %9s %6s %7s %10s %8s\n", "", "requests", "reads", "writes", "wall time", "speedup")
	for _, row := range []struct {
		name string
		s    benchSide
	}{{"capstan apply (no-op, CLI)", cs}, {"capstan loop reconcile (source unchanged)", ls}, {"docker stack deploy --resolve-image never", ds}} {
		fmt.Fprintf(&t, "%-44s %9.1f %6.1f %7.1f %10s %7.1f×\n", row.name, row.s.per(row.s.requests),
			row.s.per(row.s.requests-row.s.writes), row.s.per(row.s.writes), row.s.meanWall().Round(100*time.Microsecond),
			float64(ds.wall)/float64(row.s.wall))
	}
	fmt.Fprintf(&t, "requests of one capstan apply: %s", strings.Join(cs.last, ", "))
	b.Log(t.String())
}

// loopReconciler returns one no-op reconcile as `capstan run` does it between commits:
// the desired set is loaded once, the client and sink are kept, and each call observes
// and plans. A plan that is not empty fails the benchmark.
func loopReconciler(b *testing.B, dir, instance, host string) func() {
	b.Helper()
	desired, problems := manifests.Load(dir, manifests.Options{Instance: instance})
	if problems.HasErrors() {
		b.Fatalf("load: %v", problems)
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cli.Close() })
	sink := swarmsink.New(cli, instance)
	return func() {
		ctx := context.Background()
		live, err := sink.Observe(ctx)
		if err != nil {
			b.Fatalf("observe: %v", err)
		}
		p, err := reconcile.BuildPlan(desired, live, reconcile.Options{Instance: instance})
		if err != nil {
			b.Fatalf("plan: %v", err)
		}
		if p.HasChanges() || len(p.Drift) > 0 {
			var out strings.Builder
			_ = reconcile.RenderText(&out, p)
			b.Fatalf("the loop's reconcile of an unchanged source plans something:\n%s", out.String())
		}
	}
}

// benchSide accumulates one side's runs.
type benchSide struct {
	n, requests, writes, maxRequests int
	wall                             time.Duration
	last, longest                    []string
}

func (s *benchSide) add(d time.Duration, p *countingProxy) {
	all, writes := p.requests()
	s.n++
	s.wall += d
	s.requests += len(all)
	s.writes += len(writes)
	if len(all) > s.maxRequests {
		s.maxRequests, s.longest = len(all), all
	}
	s.last = all
}

func (s *benchSide) per(total int) float64 { return float64(total) / float64(max(s.n, 1)) }

func (s *benchSide) meanWall() time.Duration { return s.wall / time.Duration(max(s.n, 1)) }

// capstanRun runs one capstan command line in-process and returns its combined output
// and exit code.
func capstanRun(ctx context.Context, args ...string) (string, int) {
	var out bytes.Buffer
	code := run(ctx, args, &out, &out)
	return out.String(), code
}

// benchCompose is a compose file of n services of the test image, each with a little of
// what real services carry (environment, labels, update policy), none running.
func benchCompose(n int) string {
	var b strings.Builder
	b.WriteString("version: \"3.8\"\nservices:\n")
	for i := range n {
		fmt.Fprintf(&b, `  svc%03d:
    image: %s
    environment:
      MESSAGE: service %d
      LOG_LEVEL: info
    labels:
      com.example.index: "%d"
    deploy:
      replicas: 0
      labels:
        com.example.team: bench
      update_config:
        parallelism: 2
        order: start-first
`, i, dockertest.ImageRef, i, i)
	}
	return b.String()
}
