//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The end-to-end benchmarks run only with -bench (make e2e runs the scenarios alone):
//
//	CAPSTAN_E2E_INTERVAL=5s go test -tags e2e -run '^$' -bench . -benchtime 5x -count 1 ./e2e/ -timeout 30m
//
// Each prints its figures with b.ReportMetric; docs/benchmarks.md ("End to end") holds
// one run's table.

// benchRound makes every benchmark commit a change no earlier one made.
var benchRound = 100

// BenchmarkPushToConverged is the time from a commit arriving on the Git server to
// capstan reporting it applied and the stack healthy, Swarm's convergence included.
//
//   - env-update commits a changed environment value of mysql: a rolling update of its
//     one task (stop-first), which Swarm completes only after the update's monitor
//     period (5 s by default) has passed without the new task failing;
//   - scale toggles mysql between 1 and 2 replicas: no rolling update, so the figure is
//     mostly capstan's own (poll or webhook, fetch, load, plan, apply) plus one task
//     starting or stopping.
//
// "webhook" sends the generic push webhook right after the push (a forge would);
// "poll" waits for the poll interval (CAPSTAN_E2E_INTERVAL; the published figures use
// 5 s); each push lands at a random moment of the interval, so a commit waits half an
// interval for the next poll on average.
func BenchmarkPushToConverged(b *testing.B) {
	for _, bc := range []struct {
		name    string
		webhook bool
		change  func(round int) desired
	}{
		{"webhook/env-update", true, envRound},
		{"poll/env-update", false, envRound},
		{"webhook/scale", true, scaleRound},
		{"poll/scale", false, scaleRound},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := setup(b)
			rev := s.push(b, "wordpress", baseline())
			s.waitConverged(b, rev, 3*time.Minute)
			var lat, react, swarmTime, tail []time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				benchRound++
				if !bc.webhook {
					// A push lands at any moment of the interval, not right after the
					// reconcile that ended the previous round.
					time.Sleep(rand.N(s.interval))
				}
				rev := s.push(b, fmt.Sprintf("mysql: round %d", benchRound), bc.change(benchRound))
				start := time.Now()
				b.StartTimer()
				if bc.webhook {
					s.webhook(b)
				}
				s.waitConvergedFast(b, rev, 3*time.Minute)
				end := time.Now()
				b.StopTimer()
				lat = append(lat, end.Sub(start))
				// Where the time went: until capstan's first write to the engine, the
				// rolling update as Swarm timed it, and from there to the status.
				if s.docker == nil {
					continue
				}
				for _, c := range s.docker.between(start, end) {
					if c.method == http.MethodPost && strings.HasPrefix(c.path, "/services/") {
						react = append(react, c.at.Sub(start))
						break
					}
				}
				if u := s.services(b)["mysql"].UpdateStatus; u != nil && u.StartedAt != nil && u.CompletedAt != nil && u.StartedAt.After(start) {
					swarmTime = append(swarmTime, u.CompletedAt.Sub(*u.StartedAt))
					tail = append(tail, end.Sub(*u.CompletedAt))
				}
			}
			reportPercentiles(b, "", lat)
			reportPercentiles(b, "first-write-", react)
			reportPercentiles(b, "swarm-update-", swarmTime)
			reportPercentiles(b, "completed-to-status-", tail)
		})
	}
}

func envRound(round int) desired {
	d := baseline()
	d.MysqlRound = round
	return d
}

func scaleRound(round int) desired {
	d := baseline()
	d.MysqlScale = 1 + round%2
	return d
}

// BenchmarkNoopReconcile counts what one reconcile that finds nothing to do costs: Docker
// Engine requests (recorded by the suite's relay in front of the engine, or capstan's
// own /metrics without it), SLB API calls (the emulator's call log), and writes to
// either, which must be none. One op is one reconcile of the running daemon, one per poll interval.
// The leader lease's renewals (a read and a write of the lease config every lease/3 =
// 10 s) are counted apart: they are not part of a reconcile.
func BenchmarkNoopReconcile(b *testing.B) {
	s := setup(b)
	rev := s.push(b, "wordpress", baseline())
	s.waitConverged(b, rev, 3*time.Minute)
	// Let the reconcile that applied it finish its follow-up.
	time.Sleep(3 * time.Second)

	reconciles := func(m map[string]float64) float64 { return sum(m, "capstan_reconciles_total") }
	before := s.dmn.metrics(b, "capstan_")
	s.emu.ResetCalls()
	start := time.Now()
	b.ResetTimer()
	s.waitFor(b, time.Duration(b.N+5)*(s.interval+3*time.Second), fmt.Sprintf("%d reconciles", b.N), func() (bool, string) {
		n := reconciles(s.dmn.metrics(b, "capstan_reconciles_total")) - reconciles(before)
		return n >= float64(b.N), fmt.Sprintf("%v reconciles", n)
	})
	b.StopTimer()
	end := time.Now()
	after := s.dmn.metrics(b, "capstan_")
	n := reconciles(after) - reconciles(before)
	delta := func(parts ...string) float64 { return sum(after, parts...) - sum(before, parts...) }
	if success := delta("capstan_reconciles_total", `result="success"`); success != n {
		b.Errorf("%v of %v reconciles succeeded", success, n)
	}

	var dockerReqs, dockerWrites, leaseReqs float64
	if s.docker != nil {
		paths := map[string]int{}
		for _, c := range s.docker.between(start, end) {
			// The lease is one config object read and updated by name or ID
			// (/configs/capstan-lease-<instance>, /configs/<id>/update); the
			// reconcile's observe lists /configs.
			if strings.HasPrefix(c.path, "/configs/") {
				leaseReqs++
				continue
			}
			dockerReqs++
			paths[c.method+" "+c.path]++
			if c.method != http.MethodGet && c.method != http.MethodHead {
				dockerWrites++
			}
		}
		b.Logf("Docker requests in %v no-op reconciles (lease apart): %v", n, paths)
	} else {
		dockerReqs = delta("capstan_api_requests_total", `api="docker"`)
		dockerWrites = dockerReqs - delta("capstan_api_requests_total", `api="docker"`, `method="GET"`) -
			delta("capstan_api_requests_total", `api="docker"`, `method="HEAD"`)
	}
	writes, reads := slbCalls(s.emu.Calls())
	if dockerWrites != 0 || len(writes) != 0 {
		b.Errorf("%v Docker writes, SLB writes %v: a no-op reconcile must write nothing", dockerWrites, writes)
	}
	dur := delta("capstan_reconcile_duration_seconds_sum", `result="success"`)
	b.ReportMetric(dockerReqs/n, "docker-req/reconcile")
	b.ReportMetric(dockerWrites/n, "docker-writes/reconcile")
	b.ReportMetric(float64(reads)/n, "slb-calls/reconcile")
	b.ReportMetric(float64(len(writes))/n, "slb-writes/reconcile")
	b.ReportMetric(dur/n*1000, "ms/reconcile")
	b.ReportMetric(leaseReqs/end.Sub(start).Minutes(), "lease-req/min")
}

// BenchmarkSLBChange counts the SLB API calls of a reconcile that changes the listener
// (the route's scheduler, wrr ↔ rr): reads and writes, from the emulator's call log.
func BenchmarkSLBChange(b *testing.B) {
	s := setup(b)
	rev := s.push(b, "wordpress", baseline())
	s.waitConverged(b, rev, 3*time.Minute)
	var calls, writes int
	b.ResetTimer()
	for i := range b.N {
		d := baseline()
		if i%2 == 0 {
			d.Scheduler = "rr"
		}
		b.StopTimer()
		rev := s.push(b, "route: scheduler", d)
		s.emu.ResetCalls()
		b.StartTimer()
		s.webhook(b)
		s.waitConvergedFast(b, rev, 3*time.Minute)
		b.StopTimer()
		w, r := slbCalls(s.emu.Calls())
		calls += r + len(w)
		writes += len(w)
	}
	// Leave the baseline behind.
	rev = s.push(b, "wordpress", baseline())
	s.waitConverged(b, rev, 3*time.Minute)
	b.ReportMetric(float64(calls)/float64(b.N), "slb-calls/change")
	b.ReportMetric(float64(writes)/float64(b.N), "slb-writes/change")
}

// waitConvergedFast is waitConverged polling every 20 ms, for latency measurements.
func (s *suite) waitConvergedFast(b *testing.B, rev string, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ok, _ := converged(s.dmn.status(b), rev); ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not converged on %s within %s:\n%s", rev, timeout, s.dmn.logTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reportPercentiles reports the median, minimum and maximum of lat, in seconds, with
// their unit names prefixed.
func reportPercentiles(b *testing.B, prefix string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(lat[len(lat)/2].Seconds(), prefix+"p50-s")
	b.ReportMetric(lat[len(lat)-1].Seconds(), prefix+"max-s")
	b.ReportMetric(lat[0].Seconds(), prefix+"min-s")
}

// BenchmarkStackDeployNoop is the peer's side of BenchmarkNoopReconcile on the same
// stack: `docker stack deploy --resolve-image never` of the suite's compose file, again
// and again unchanged, counted on the wire by a relay of its own. It deploys under a
// stack name of its own (and another host port), so capstan's stack is not touched;
// the file says version "3" because docker stack deploy refuses version 2 files.
func BenchmarkStackDeployNoop(b *testing.B) {
	s := setup(b)
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI on PATH")
	}
	proxy, err := newDockerProxy()
	if err != nil {
		b.Fatal(err)
	}
	if proxy == nil {
		b.Skip("the engine is not on a Unix socket: nothing to count the peer's requests with")
	}
	defer proxy.close()
	port, err := s.pickPublishedPort()
	if err != nil {
		b.Fatal(err)
	}
	name := s.stack + "-peer"
	compose := s.files(baseline())["docker-compose.yml"]
	compose = mustReplace(compose, "version: '2'\n", "version: '3'\n")
	compose = mustReplace(compose, fmt.Sprintf("published: %d\n", s.publishedPort), fmt.Sprintf("published: %d\n", port))
	file := filepath.Join(b.TempDir(), "docker-compose.yml")
	if err := os.WriteFile(file, []byte(compose), 0o644); err != nil {
		b.Fatal(err)
	}
	docker := func(args ...string) {
		cmd := exec.Command("docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+proxy.host())
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	deploy := func() { docker("stack", "deploy", "--resolve-image", "never", "-c", file, name) }
	defer docker("stack", "rm", name)
	deploy()
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		deploy()
	}
	b.StopTimer()
	var reads, writes float64
	for _, c := range proxy.between(start, time.Now()) {
		if c.method == http.MethodGet || c.method == http.MethodHead {
			reads++
		} else {
			writes++
		}
	}
	b.ReportMetric((reads+writes)/float64(b.N), "docker-req/deploy")
	b.ReportMetric(writes/float64(b.N), "docker-writes/deploy")
}
