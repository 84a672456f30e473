package slb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// A storm of throttling and server errors slows capstan down but it converges, with a
// bounded number of tries, and the result is exactly what a calm run gives.
func TestConvergesThroughThrottlingAnd5xx(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults []slbemu.Fault
	}{
		{"throttling storm", []slbemu.Fault{{Code: "Throttling.User", Count: 6}}},
		{"every third call 503", []slbemu.Fault{{Code: "ServiceUnavailable", Ratio: 0.34}}},
		{"every write fails once with 500", []slbemu.Fault{
			{Action: "CreateVServerGroup", Code: "InternalError", Count: 1},
			{Action: "AddVServerGroupBackendServers", Code: "InternalError", Count: 1},
			{Action: "CreateLoadBalancerHTTPListener", Code: "InternalError", Count: 1},
			{Action: "StartLoadBalancerListener", Code: "InternalError", Count: 1},
		}},
		{"busy backends", []slbemu.Fault{{Action: "AddVServerGroupBackendServers", Code: "BackendServer.configuring", Count: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu := newEmu(t, slbemu.Config{})
			s := newSink(t, emu)
			for _, f := range tc.faults {
				if err := emu.InjectFault(f); err != nil {
					t.Fatal(err)
				}
			}
			nodes := threeNodes()
			for i := range 22 { // more than one batch of backends
				nodes = append(nodes, node(fmt.Sprintf("extra%02d", i), fmt.Sprintf("i-extra%02d", i)))
			}
			sw := swarmState{nodes: nodes, published: wordpressPublished(30080)}
			desired := routeSet(httpRoute("wordpress-http", 8080))
			reconcileOnce(t, s, desired, sw)

			injected := 0
			for _, c := range emu.Calls() {
				if c.Injected {
					injected++
				}
			}
			if injected == 0 {
				t.Fatal("no fault fired: the test proves nothing")
			}
			// Bound: every step may take all its tries; the calm run is ~10 calls.
			if n := len(emu.Calls()); n > 10*s.opts.Retry.Attempts {
				t.Errorf("%d calls for one route (%d injected faults): retries are not bounded", n, injected)
			}
			emu.ClearFaults()
			if got := len(emu.Snapshot().VServerGroups); got != 1 {
				t.Errorf("%d VServer groups, want 1 (a retried create must not duplicate)", got)
			}
			g, _ := groupState(t, emu, marker)
			if len(g.Backends) != 25 {
				t.Errorf("group has %d members, want 25", len(g.Backends))
			}
			l, _ := listenerState(t, emu, 8080, "http")
			if l.Status != "running" {
				t.Errorf("listener %s, want running", l.Status)
			}
			emu.ResetCalls()
			if plan := reconcileOnce(t, s, desired, sw); len(plan.Changes) != 0 {
				t.Errorf("after the storm the plan still has changes: %+v", plan.Changes)
			}
		})
	}
}

// A write that SLB carried out but whose answer was lost (here: the first answer of
// CreateVServerGroup replaced by a 503 after the fact is not possible, so a 503 before
// it) is not repeated blindly: capstan looks the group up by name first.
func TestRetriedCreateLooksFirst(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	if err := emu.InjectFault(slbemu.Fault{Action: "CreateVServerGroup", Code: "ServiceUnavailable", Count: 1}); err != nil {
		t.Fatal(err)
	}
	reconcileOnce(t, s, routeSet(httpRoute("wordpress-http", 8080)), swarmState{nodes: threeNodes(), published: wordpressPublished(30080)})
	var seq []string
	for _, c := range emu.Calls() {
		if c.Action == "CreateVServerGroup" || c.Action == "DescribeVServerGroups" {
			seq = append(seq, c.Action)
		}
	}
	// Observe's listing, the failed create, the look-up, the create.
	want := []string{"DescribeVServerGroups", "CreateVServerGroup", "DescribeVServerGroups", "CreateVServerGroup"}
	if diff := cmp.Diff(want, seq); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// Retries give up: a fault that never ends fails the change with the last error, after
// the configured number of tries.
func TestRetriesGiveUp(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu, func(o *Options) { o.Retry.Attempts = 4 })
	if err := emu.InjectFault(slbemu.Fault{Action: "CreateVServerGroup", Code: "Throttling"}); err != nil {
		t.Fatal(err)
	}
	plan, err := planRoutes(s, routeSet(httpRoute("wordpress-http", 8080)), swarmState{nodes: threeNodes(), published: wordpressPublished(30080)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := reconcile.Apply(context.Background(), plan, map[string]reconcile.Sink{s.Name(): s}, reconcile.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "gave up after 4 tries") || !strings.Contains(err.Error(), "Throttling") {
		t.Fatalf("apply error = %v, want a Throttling error after 4 tries", err)
	}
	if got := emu.CountCalls(false, "CreateVServerGroup"); got != 4 {
		t.Errorf("CreateVServerGroup tried %d times, want 4", got)
	}
	if len(res.Failed()) != 2 { // the group failed; its listener needs the group and fails too
		t.Errorf("failed changes: %d, want 2", len(res.Failed()))
	}
}

// Listeners that take their time to start or reconfigure are waited for; no write
// meets a transitional status.
func TestWaitsForTransitions(t *testing.T) {
	emu := newEmu(t, slbemu.Config{TransitionCalls: 3})
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	rt := httpRoute("wordpress-http", 8080)
	reconcileOnce(t, s, routeSet(rt), sw)
	rt.Listener.Scheduler = "rr"
	reconcileOnce(t, s, routeSet(rt), sw)
	rt2 := rt
	rt2.Name = "other"
	rt2.Listener.Port = 8081
	reconcileOnce(t, s, routeSet(rt2), sw) // create one, delete the other
	for _, c := range emu.Calls() {
		if c.Write && c.Code != "" {
			t.Errorf("%s answered %s: a write met a transition", c.Action, c.Code)
		}
	}
	if l, ok := listenerState(t, emu, 8081, "http"); !ok || l.Attributes["Scheduler"] != "rr" {
		t.Errorf("listener 8081: %+v", l)
	}
	if _, ok := listenerState(t, emu, 8080, "http"); ok {
		t.Error("listener 8080 still there")
	}
}

// A route that changes protocol on the same port replaces capstan's own listener: the
// old one goes first, since tcp and http share SLB's port space.
func TestProtocolChangeOnSamePort(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	rt := httpRoute("wordpress-http", 8080)
	reconcileOnce(t, s, routeSet(rt), sw)

	rt.Listener = resource.Listener{Protocol: "tcp", Port: 8080, Bandwidth: ptr(-1), Scheduler: "wrr"}
	plan := reconcileOnce(t, s, routeSet(rt), sw)
	var got []string
	for _, c := range plan.Changes {
		got = append(got, string(c.Action)+" "+c.Key.String())
	}
	want := []string{"+ slb/listener/" + testLB + ":8080/tcp", "- slb/listener/" + testLB + ":8080/http"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if _, ok := listenerState(t, emu, 8080, "http"); ok {
		t.Error("the http listener is still there")
	}
	l, ok := listenerState(t, emu, 8080, "tcp")
	if !ok || l.Status != "running" || l.Attributes["HealthCheckSwitch"] != "on" {
		t.Errorf("tcp listener: %+v", l)
	}
	if plan := reconcileOnce(t, s, routeSet(rt), sw); len(plan.Changes) != 0 {
		t.Errorf("plan after the change: %+v", plan.Changes)
	}
}

type fixedPorts map[string]uint32

func (f fixedPorts) PublishedPort(_ context.Context, service string, target uint32, proto string) (uint32, error) {
	p, ok := f[fmt.Sprintf("%s %d/%s", service, target, proto)]
	if !ok {
		return 0, errors.New("no such service")
	}
	return p, nil
}

// A route to a service the same plan creates: the plan says the port is known after
// apply, and apply reads it.
func TestPortKnownAfterApply(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu, func(o *Options) { o.Ports = fixedPorts{"wordpress_wordpress 80/tcp": 31000} })
	sw := swarmState{nodes: threeNodes()}
	plan := reconcileOnce(t, s, routeSet(httpRoute("wordpress-http", 8080)), sw)
	if !strings.Contains(strings.Join(plan.Warnings, "\n"), "known after apply") {
		t.Errorf("warnings do not say the port is known after apply: %q", plan.Warnings)
	}
	g, _ := groupState(t, emu, marker)
	for _, b := range g.Backends {
		if b.Port != 31000 {
			t.Errorf("member %s on port %d, want 31000", b.ServerID, b.Port)
		}
	}
	// Once the service exists, the source and SLB agree.
	if plan := reconcileOnce(t, s, routeSet(httpRoute("wordpress-http", 8080)), swarmState{nodes: threeNodes(), published: wordpressPublished(31000)}); len(plan.Changes) != 0 {
		t.Errorf("plan once the port is live: %+v", plan.Changes)
	}
}

// Settings SLB cannot reset by setting them: a health-check domain goes back to the
// backend's IP ($_ip), a fixed health-check port back to the backend's port by
// recreating the listener.
func TestResettingHealthCheckTargets(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	rt := httpRoute("wordpress-http", 8080)
	rt.Listener.HealthCheck.Domain = "example.com"
	rt.Listener.HealthCheck.ConnectPort = 8000
	reconcileOnce(t, s, routeSet(rt), sw)

	rt.Listener.HealthCheck.Domain = ""
	reconcileOnce(t, s, routeSet(rt), sw)
	if l, _ := listenerState(t, emu, 8080, "http"); l.Attributes["HealthCheckDomain"] != "$_ip" {
		t.Errorf("HealthCheckDomain = %q, want $_ip", l.Attributes["HealthCheckDomain"])
	}
	rt.Listener.HealthCheck.ConnectPort = 0
	reconcileOnce(t, s, routeSet(rt), sw)
	l, _ := listenerState(t, emu, 8080, "http")
	if l.Attributes["HealthCheckConnectPort"] != "" || l.Status != "running" {
		t.Errorf("after resetting the port: %s %v", l.Status, l.Attributes)
	}
	if plan := reconcileOnce(t, s, routeSet(rt), sw); len(plan.Changes) != 0 {
		t.Errorf("plan afterwards: %+v", plan.Changes)
	}
}

// A load balancer a route names that does not exist is a clear error.
func TestMissingLoadBalancer(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	rt := httpRoute("wordpress-http", 8080)
	rt.LoadBalancer.ID = "lb-nope"
	_, err := planRoutes(s, routeSet(rt), swarmState{nodes: threeNodes(), published: wordpressPublished(30080)})
	if err == nil || !strings.Contains(err.Error(), "lb-nope does not exist in region "+testRegion) {
		t.Fatalf("error = %v", err)
	}
}

// The emulator's latency fault makes every call slow: the sink still works, one call at
// a time per load balancer (nothing here is timed; the benchmark measures).
func TestLatency(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	if err := emu.InjectFault(slbemu.Fault{Latency: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, emu)
	reconcileOnce(t, s, routeSet(httpRoute("wordpress-http", 8080)), swarmState{nodes: threeNodes(), published: wordpressPublished(30080)})
	if l, ok := listenerState(t, emu, 8080, "http"); !ok || l.Status != "running" {
		t.Errorf("listener: %+v", l)
	}
}
