package slb

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	slbsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

const marker = "capstan/capstan/wordpress-http"

// A new route becomes a running listener with exactly the route's settings, forwarding
// to a group that holds every labelled, ready, active node at the published port; the
// next reconcile writes nothing and reads at most three times.
func TestCreateRouteThenNoop(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	nodes := append(threeNodes(),
		node("unlabelled", ""),
		func() Node { n := node("drained", "i-drained"); n.Availability = "drain"; return n }(),
		func() Node { n := node("down", "i-down"); n.State = "down"; return n }(),
	)
	sw := swarmState{nodes: nodes, published: wordpressPublished(30080)}
	desired := routeSet(httpRoute("wordpress-http", 8080))

	plan := reconcileOnce(t, s, desired, sw)
	var got []string
	for _, c := range plan.Changes {
		got = append(got, string(c.Action)+" "+c.Key.String())
	}
	want := []string{
		"+ slb/vservergroup/" + testLB + "/" + marker,
		"+ slb/listener/" + testLB + ":8080/http",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if !strings.Contains(strings.Join(plan.Warnings, "\n"), "docker node update --label-add dev.capstan.ecs-instance-id=<ECS instance ID> unlabelled") {
		t.Errorf("warnings do not tell how to label node unlabelled:\n%s", strings.Join(plan.Warnings, "\n"))
	}

	g, ok := groupState(t, emu, marker)
	if !ok {
		t.Fatalf("no VServer group %s", marker)
	}
	var members []string
	for _, b := range g.Backends {
		members = append(members, b.ServerID+":"+itoa(b.Port)+"/"+itoa(b.Weight)+"/"+b.Type)
	}
	if diff := cmp.Diff([]string{"i-node1:30080/100/ecs", "i-node2:30080/100/ecs", "i-node3:30080/100/ecs"}, members); diff != "" {
		t.Errorf("group members (-want +got):\n%s", diff)
	}

	l, ok := listenerState(t, emu, 8080, "http")
	if !ok {
		t.Fatal("no listener on 8080/http")
	}
	if l.Status != "running" {
		t.Errorf("listener status %s, want running", l.Status)
	}
	wantAttrs := map[string]string{
		"Description":         marker,
		"VServerGroupId":      g.ID,
		"Bandwidth":           "-1",
		"Scheduler":           "wrr",
		"HealthCheck":         "on",
		"HealthCheckURI":      "/license.txt",
		"HealthCheckHttpCode": "http_2xx,http_3xx",
		"HealthCheckInterval": "2",
		"HealthCheckTimeout":  "5",
		"HealthyThreshold":    "3",
		"UnhealthyThreshold":  "3",
		"StickySession":       "on",
		"StickySessionType":   "insert",
		"CookieTimeout":       "1800",
		"XForwardedFor":       "on",
		"Gzip":                "on",
		"IdleTimeout":         "15",
		"RequestTimeout":      "60",
		"AclStatus":           "off",
	}
	for k, v := range wantAttrs {
		if l.Attributes[k] != v {
			t.Errorf("listener %s = %q, want %q", k, l.Attributes[k], v)
		}
	}

	// The same source again: nothing to do, nothing written, at most three reads.
	emu.ResetCalls()
	plan = reconcileOnce(t, s, desired, sw)
	if len(plan.Changes) != 0 {
		t.Errorf("second plan has changes: %+v", plan.Changes)
	}
	if w := emu.CountCalls(true); w != 0 {
		t.Errorf("no-op reconcile wrote %d times: %v", w, actions(emu, true))
	}
	if n := emu.CountCalls(false); n > 3 {
		t.Errorf("no-op reconcile made %d calls, want at most 3: %v", n, actions(emu, false))
	}
}

func itoa(n int) string { return strconvItoa(n) }

// A fresh sink (a new capstan process) reads every member of its groups: one more call
// per group, and still no write.
func TestNoopFreshProcess(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	desired := routeSet(httpRoute("wordpress-http", 8080), httpRoute("blog", 8081))
	reconcileOnce(t, newSink(t, emu), desired, sw)

	emu.ResetCalls()
	plan := reconcileOnce(t, newSink(t, emu), desired, sw)
	if len(plan.Changes) != 0 {
		t.Errorf("plan has changes: %+v", plan.Changes)
	}
	if w := emu.CountCalls(true); w != 0 {
		t.Errorf("wrote %d times", w)
	}
	if got, want := emu.CountCalls(false, "DescribeVServerGroupAttribute"), 2; got != want {
		t.Errorf("DescribeVServerGroupAttribute %d times, want %d (one per group)", got, want)
	}
}

// A changed health check is one Set*ListenerAttribute call and nothing else.
func TestHealthCheckChangeIsOneSet(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	rt := httpRoute("wordpress-http", 8080)
	reconcileOnce(t, s, routeSet(rt), sw)

	rt.Listener.HealthCheck.URI = "/healthz"
	rt.Listener.HealthCheck.Interval = 5
	emu.ResetCalls()
	plan := reconcileOnce(t, s, routeSet(rt), sw)
	if len(plan.Changes) != 1 || plan.Changes[0].Action != reconcile.Update || plan.Changes[0].Key.Kind != resource.KindListener {
		t.Fatalf("plan: %+v, want one listener update", plan.Changes)
	}
	wantDiff := []reconcile.FieldDiff{
		{Path: "HealthCheck.Interval", Before: "2", After: "5"},
		{Path: "HealthCheck.URI", Before: "/license.txt", After: "/healthz"},
	}
	if diff := cmp.Diff(wantDiff, plan.Changes[0].Diff); diff != "" {
		t.Errorf("diff (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"SetLoadBalancerHTTPListenerAttribute": 1}, actions(emu, true)); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	l, _ := listenerState(t, emu, 8080, "http")
	if l.Attributes["HealthCheckURI"] != "/healthz" || l.Attributes["HealthCheckInterval"] != "5" || l.Status != "running" {
		t.Errorf("listener after the change: %v %v", l.Status, l.Attributes)
	}
}

// Nodes joining, draining and going down change the group's members, nothing else.
func TestBackendsFollowNodes(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	desired := routeSet(httpRoute("wordpress-http", 8080))
	nodes := threeNodes()
	reconcileOnce(t, s, desired, swarmState{nodes: nodes, published: wordpressPublished(30080)})

	members := func() []string {
		g, _ := groupState(t, emu, marker)
		var out []string
		for _, b := range g.Backends {
			out = append(out, b.ServerID)
		}
		return out
	}

	emu.ResetCalls()
	nodes = append(nodes, node("node4", "i-node4"))
	reconcileOnce(t, s, desired, swarmState{nodes: nodes, published: wordpressPublished(30080)})
	if diff := cmp.Diff([]string{"i-node1", "i-node2", "i-node3", "i-node4"}, members()); diff != "" {
		t.Errorf("after node4 joined (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"AddVServerGroupBackendServers": 1}, actions(emu, true)); diff != "" {
		t.Errorf("writes for a joining node (-want +got):\n%s", diff)
	}

	emu.ResetCalls()
	nodes[1].Availability = "drain"
	nodes[2].State = "down"
	reconcileOnce(t, s, desired, swarmState{nodes: nodes, published: wordpressPublished(30080)})
	if diff := cmp.Diff([]string{"i-node1", "i-node4"}, members()); diff != "" {
		t.Errorf("after draining node2 and losing node3 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"RemoveVServerGroupBackendServers": 1}, actions(emu, true)); diff != "" {
		t.Errorf("writes for leaving nodes (-want +got):\n%s", diff)
	}

	// Swarm re-publishing the service on another port moves every member in one call.
	emu.ResetCalls()
	reconcileOnce(t, s, desired, swarmState{nodes: nodes, published: wordpressPublished(30099)})
	g, _ := groupState(t, emu, marker)
	for _, b := range g.Backends {
		if b.Port != 30099 {
			t.Errorf("member %s on port %d, want 30099", b.ServerID, b.Port)
		}
	}
	if diff := cmp.Diff(map[string]int{"ModifyVServerGroupBackendServers": 1}, actions(emu, true)); diff != "" {
		t.Errorf("writes for a moved port (-want +got):\n%s", diff)
	}
}

// Scaling the service changes the Swarm side only: the SLB sees no write.
func TestScaleLeavesSLBAlone(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	desired := routeSet(httpRoute("wordpress-http", 8080))
	desired.Resources[resource.ServiceKey("wordpress_wordpress")] = wordpressService(3)
	reconcileOnce(t, s, desired, sw)

	desired.Resources[resource.ServiceKey("wordpress_wordpress")] = wordpressService(6)
	emu.ResetCalls()
	plan, err := planRoutes(s, desired, sw)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Changes {
		if c.Key.Sink == resource.SinkSLB {
			t.Errorf("scaling plans an SLB change: %c %s", c.Action, c.Key)
		}
	}
	if _, err := reconcile.Apply(context.Background(), plan, map[string]reconcile.Sink{s.Name(): s}, reconcile.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := emu.CountCalls(true); w != 0 {
		t.Errorf("scaling wrote to SLB %d times: %v", w, actions(emu, true))
	}
}

// Removing a route deletes its listener and group and nothing else, also from a new
// process that no route tells which load balancer to look at.
func TestRemoveRoute(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	reconcileOnce(t, newSink(t, emu), routeSet(httpRoute("wordpress-http", 8080), httpRoute("blog", 8081)), sw)
	userListener(t, emu, 9000, "mine")

	s := newSink(t, emu, func(o *Options) { o.Regions = []string{testRegion} })
	emu.ResetCalls()
	plan := reconcileOnce(t, s, routeSet(httpRoute("blog", 8081)), sw)
	var got []string
	for _, c := range plan.Changes {
		got = append(got, string(c.Action)+" "+c.Key.String())
	}
	want := []string{
		"- slb/listener/" + testLB + ":8080/http",
		"- slb/vservergroup/" + testLB + "/" + marker,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"StopLoadBalancerListener": 1, "DeleteLoadBalancerListener": 1, "DeleteVServerGroup": 1}, actions(emu, true)); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if _, ok := listenerState(t, emu, 8080, "http"); ok {
		t.Error("listener 8080/http is still there")
	}
	if _, ok := groupState(t, emu, marker); ok {
		t.Error("group is still there")
	}
	for _, port := range []int{8081, 9000} {
		if _, ok := listenerState(t, emu, port, "http"); !ok {
			t.Errorf("listener %d/http was removed", port)
		}
	}
	if _, ok := groupState(t, emu, "capstan/capstan/blog"); !ok {
		t.Error("group of the remaining route was removed")
	}

	// And with no route left at all, --slb-region still finds what capstan owns.
	plan = reconcileOnce(t, s, resource.NewSet(), sw)
	if len(plan.Changes) != 2 {
		t.Errorf("removing the last route: %d changes, want 2", len(plan.Changes))
	}
	if _, ok := listenerState(t, emu, 9000, "http"); !ok {
		t.Error("the user's listener was removed")
	}
}

// userListener creates a listener capstan does not own, as someone would in the console.
func userListener(t testing.TB, emu *slbemu.Server, port int, description string) {
	t.Helper()
	c := sdkClient(t, emu)
	req := slbsdk.CreateCreateLoadBalancerHTTPListenerRequest()
	req.LoadBalancerId, req.ListenerPort, req.BackendServerPort = testLB, requests.NewInteger(port), requests.NewInteger(80)
	req.HealthCheck, req.StickySession, req.Bandwidth, req.Description = "off", "off", requests.NewInteger(-1), description
	if _, err := c.CreateLoadBalancerHTTPListener(req); err != nil {
		t.Fatalf("create the user's listener: %v", err)
	}
}

// A listener on the route's port that capstan does not own is a conflict: the plan is
// refused and the listener stays as it was.
func TestUserListenerConflict(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	userListener(t, emu, 8080, "hand-made")
	before, _ := listenerState(t, emu, 8080, "http")
	s := newSink(t, emu)
	emu.ResetCalls()
	_, err := planRoutes(s, routeSet(httpRoute("wordpress-http", 8080)), swarmState{nodes: threeNodes(), published: wordpressPublished(30080)})
	var ce *reconcile.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("plan error = %v, want a *reconcile.ConflictError", err)
	}
	if len(ce.Conflicts) != 1 || ce.Conflicts[0].Key != resource.ListenerKey(testLB, 8080, "http") {
		t.Errorf("conflicts: %+v", ce.Conflicts)
	}
	if w := emu.CountCalls(true); w != 0 {
		t.Errorf("a refused plan wrote %d times", w)
	}
	after, _ := listenerState(t, emu, 8080, "http")
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("the user's listener changed (-before +after):\n%s", diff)
	}
}

// A wrong secret is an authentication error, reported at once, not retried.
func TestWrongSecretIsAuthError(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu, func(o *Options) { o.Credentials = &Credentials{AccessKeyID: testAK, AccessKeySecret: "wrong"} })
	s.Watch(routeSet(httpRoute("wordpress-http", 8080)))
	_, err := s.Observe(context.Background())
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Observe error = %v, want one wrapping ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "SignatureDoesNotMatch") || !strings.Contains(err.Error(), "ALIBABA_CLOUD_ACCESS_KEY_SECRET") {
		t.Errorf("error does not name the code and the setting to check: %v", err)
	}
	if strings.Contains(err.Error(), "server string to sign") {
		t.Errorf("error carries the signed string: %v", err)
	}
	if n := len(emu.Calls()); n != 1 {
		t.Errorf("%d calls, want 1: an auth error is not retried", n)
	}
}

// Every kind of listener capstan creates reads back equal to what the route asked
// for: no false drift, for http, https, tcp and udp with their settings.
func TestEveryKindReadsBackEqual(t *testing.T) {
	secure := httpRoute("secure", 443)
	secure.Listener = resource.Listener{Protocol: "https", Port: 443, Bandwidth: ptr(50), Scheduler: "wlc", CertificateID: "cert-1",
		HealthCheck:   &resource.HealthCheck{URI: "/up", Domain: "example.com", HTTPCode: []string{"http_3xx", "http_2xx"}},
		StickySession: &resource.StickySession{Type: "server", Cookie: "SESSION"},
		ACL:           &resource.ACL{ID: "acl-1", Type: "white"}, IdleTimeout: 30, RequestTimeout: 90,
		XForwardedFor: ptr(false), Gzip: ptr(false)}
	plain := httpRoute("plain", 80)
	plain.Listener = resource.Listener{Protocol: "http", Port: 80, Bandwidth: ptr(-1), Scheduler: "rr"}
	tcp := httpRoute("db", 3306)
	tcp.Listener = resource.Listener{Protocol: "tcp", Port: 3306, Bandwidth: ptr(-1), Scheduler: "sch",
		HealthCheck: &resource.HealthCheck{Interval: 10, Timeout: 3, ConnectPort: 3307, HealthyThreshold: 2}}
	tcpOff := httpRoute("cache", 6379)
	tcpOff.Listener = resource.Listener{Protocol: "tcp", Port: 6379, Bandwidth: ptr(10), Scheduler: "wrr",
		HealthCheck: &resource.HealthCheck{Enabled: ptr(false)}}
	udp := httpRoute("dns", 53)
	udp.Listener = resource.Listener{Protocol: "udp", Port: 53, Bandwidth: ptr(-1), Scheduler: "wrr"}
	udp.Backends.Weight = 7

	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: map[string][]PublishedPort{"wordpress_wordpress": {
		{Target: 80, Published: 30080, Protocol: "tcp"}, {Target: 80, Published: 30081, Protocol: "udp"}}}}
	desired := routeSet(httpRoute("wordpress-http", 8080), secure, plain, tcp, tcpOff, udp)
	plan := reconcileOnce(t, s, desired, sw)
	if got := plan.Summary().Add; got != 12 {
		t.Errorf("first plan adds %d, want 12", got)
	}
	for _, fresh := range []bool{false, true} {
		sink := s
		if fresh {
			sink = newSink(t, emu)
		}
		emu.ResetCalls()
		plan = reconcileOnce(t, sink, desired, sw)
		for _, c := range plan.Changes {
			t.Errorf("fresh=%v: false drift: %c %s %+v", fresh, c.Action, c.Key, c.Diff)
		}
		if w := emu.CountCalls(true); w != 0 {
			t.Errorf("fresh=%v: %d writes", fresh, w)
		}
	}
}

// A listener of another protocol on the route's TCP port, not capstan's, is reported
// before anything is applied; apply on its own would not loop on ListenerAlreadyExists.
func TestOtherProtocolOnPort(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	userListener(t, emu, 8080, "hand-made")
	s := newSink(t, emu)
	rt := httpRoute("db", 8080)
	rt.Listener = resource.Listener{Protocol: "tcp", Port: 8080, Bandwidth: ptr(-1), Scheduler: "wrr"}
	desired := routeSet(rt)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	plan, err := planRoutes(s, desired, sw)
	if err != nil {
		t.Fatal(err)
	}
	d := cloneSet(desired)
	if _, err := Expand(d, ExpandInput{Nodes: sw.nodes, Published: sw.published}); err != nil {
		t.Fatal(err)
	}
	live, err := s.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = CheckPorts(d, live, "")
	if err == nil || !strings.Contains(err.Error(), `tcp port 8080 of lb-capstan1 is taken by a http listener (made outside capstan, description "hand-made")`) {
		t.Fatalf("CheckPorts = %v", err)
	}

	emu.ResetCalls()
	_, err = reconcile.Apply(context.Background(), plan, map[string]reconcile.Sink{s.Name(): s}, reconcile.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "another protocol holds the port") {
		t.Fatalf("apply error = %v", err)
	}
	if n := emu.CountCalls(false, "CreateLoadBalancerTCPListener"); n != 1 {
		t.Errorf("create tried %d times, want 1", n)
	}
	if l, _ := listenerState(t, emu, 8080, "http"); l.Attributes["Description"] != "hand-made" {
		t.Errorf("the user's listener changed: %v", l.Attributes)
	}
}

// A listener someone stopped by hand is started again, and nothing else is written.
func TestStoppedListenerIsStarted(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	desired := routeSet(httpRoute("wordpress-http", 8080))
	reconcileOnce(t, s, desired, sw)
	req := slbsdk.CreateStopLoadBalancerListenerRequest()
	req.LoadBalancerId, req.ListenerPort, req.ListenerProtocol = testLB, requests.NewInteger(8080), "http"
	if _, err := sdkClient(t, emu).StopLoadBalancerListener(req); err != nil {
		t.Fatal(err)
	}
	emu.ResetCalls()
	plan := reconcileOnce(t, s, desired, sw)
	if len(plan.Changes) != 1 || !cmp.Equal(plan.Changes[0].Diff, []reconcile.FieldDiff{{Path: "Status", Before: "stopped", After: "running"}}) {
		t.Fatalf("plan: %+v", plan.Changes)
	}
	if diff := cmp.Diff(map[string]int{"StartLoadBalancerListener": 1}, actions(emu, true)); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if l, _ := listenerState(t, emu, 8080, "http"); l.Status != "running" {
		t.Errorf("status %s", l.Status)
	}
}

// --adopt takes a hand-made listener over: one Set gives it the route's settings and
// capstan's marker; afterwards it is capstan's like any other.
func TestAdoptListener(t *testing.T) {
	emu := newEmu(t, slbemu.Config{})
	userListener(t, emu, 8080, "hand-made")
	s := newSink(t, emu)
	sw := swarmState{nodes: threeNodes(), published: wordpressPublished(30080)}
	desired := routeSet(httpRoute("wordpress-http", 8080))
	plan, err := planRoutes(s, desired, sw, func(o *reconcile.Options) { o.Adopt = true })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Apply(context.Background(), plan, map[string]reconcile.Sink{s.Name(): s}, reconcile.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	l, _ := listenerState(t, emu, 8080, "http")
	if l.Attributes["Description"] != marker || l.Attributes["HealthCheckURI"] != "/license.txt" || l.Status != "running" {
		t.Errorf("adopted listener: %s %v", l.Status, l.Attributes)
	}
	if plan := reconcileOnce(t, s, desired, sw); len(plan.Changes) != 0 {
		t.Errorf("plan after adopting: %+v", plan.Changes)
	}
}
