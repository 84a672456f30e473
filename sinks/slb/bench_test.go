package slb

import (
	"fmt"
	"testing"
	"time"

	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// BenchmarkReconcile20Routes plans and applies 20 routes on one load balancer that
// already match SLB, through the real SDK and the emulator, and reports the SLB API
// calls and writes per reconcile:
//
//   - noop: the daemon's steady state (one Sink across reconciles);
//   - noop-fresh-process: a new Sink each time, as capstan diff/apply run;
//   - one-change: one route's health check flips each time (one Set).
//
// Each runs with no emulator latency and with 50 ms per call, which is what a
// reconcile's wall time is made of against a real endpoint.
func BenchmarkReconcile20Routes(b *testing.B) {
	for _, latency := range []time.Duration{0, 50 * time.Millisecond} {
		for _, mode := range []string{"noop", "noop-fresh-process", "one-change"} {
			b.Run(fmt.Sprintf("%s/latency=%s", mode, latency), func(b *testing.B) {
				emu := newEmu(b, slbemu.Config{})
				sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
				var routes []resource.Route
				for i := range 20 {
					routes = append(routes, httpRoute(fmt.Sprintf("route-%02d", i), 8000+i))
				}
				desired := routeSet(routes...)
				s := newSink(b, emu)
				reconcileOnce(b, s, desired, sw)
				if latency > 0 {
					if err := emu.InjectFault(slbemu.Fault{Latency: latency}); err != nil {
						b.Fatal(err)
					}
				}
				alt := routes[0]
				hc := *alt.Listener.HealthCheck
				hc.URI = "/alternate"
				alt.Listener.HealthCheck = &hc
				changed := routeSet(append([]resource.Route{alt}, routes[1:]...)...)
				emu.ResetCalls()
				b.ResetTimer()
				for i := range b.N {
					d := desired
					switch mode {
					case "noop-fresh-process":
						s = newSink(b, emu)
					case "one-change":
						if i%2 == 0 {
							d = changed
						}
					}
					plan := reconcileOnce(b, s, d, sw)
					if mode != "one-change" && len(plan.Changes) != 0 {
						b.Fatalf("no-op plan has %d changes", len(plan.Changes))
					}
					if mode == "one-change" && len(plan.Changes) != 1 {
						b.Fatalf("plan has %d changes, want 1", len(plan.Changes))
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(emu.CountCalls(false))/float64(b.N), "calls/op")
				b.ReportMetric(float64(emu.CountCalls(true))/float64(b.N), "writes/op")
			})
		}
	}
}
