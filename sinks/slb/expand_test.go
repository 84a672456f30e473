package slb

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// members expands one route against nodes and returns its group's members as
// "serverID:port/weight".
func members(t *testing.T, rt resource.Route, nodes []Node, published map[string][]PublishedPort) ([]string, []string) {
	t.Helper()
	set := routeSet(rt)
	warnings, err := Expand(set, ExpandInput{Nodes: nodes, Published: published})
	if err != nil {
		t.Fatal(err)
	}
	g, ok := set.Get(resource.VServerGroupKey(rt.LoadBalancer.ID, resource.SLBMarker("capstan", rt.Name)))
	if !ok {
		t.Fatalf("no group in %v", set.Keys())
	}
	var out []string
	for _, b := range g.VServerGroup.Backends {
		out = append(out, b.ServerID+":"+itoa(b.Port)+"/"+itoa(b.Weight))
	}
	return out, warnings
}

func TestExpandSelectsNodes(t *testing.T) {
	manager := node("m1", "i-m1")
	manager.Role = "manager"
	gpu := node("w-gpu", "i-gpu")
	gpu.Labels["zone"] = "a"
	paused := node("paused", "i-paused")
	paused.Availability = "pause"
	drained := node("drained", "i-drained")
	drained.Availability = "drain"
	down := node("down", "i-down")
	down.State = "down"
	disconnected := node("gone", "i-gone")
	disconnected.State = "disconnected"
	nodes := []Node{manager, gpu, node("w2", "i-w2"), paused, drained, down, disconnected}
	published := wordpressPublished(30080)

	for _, tc := range []struct {
		name     string
		backends resource.Backends
		want     []string
	}{
		{"any role", resource.Backends{NodeRole: "any", Weight: 100}, []string{"i-gpu:30080/100", "i-m1:30080/100", "i-w2:30080/100"}},
		{"unset role is any", resource.Backends{Weight: 100}, []string{"i-gpu:30080/100", "i-m1:30080/100", "i-w2:30080/100"}},
		{"managers", resource.Backends{NodeRole: "manager", Weight: 100}, []string{"i-m1:30080/100"}},
		{"workers", resource.Backends{NodeRole: "worker", Weight: 100}, []string{"i-gpu:30080/100", "i-w2:30080/100"}},
		{"labels", resource.Backends{NodeLabels: map[string]string{"zone": "a"}, Weight: 100}, []string{"i-gpu:30080/100"}},
		{"label value must match", resource.Backends{NodeLabels: map[string]string{"zone": "b"}, Weight: 100}, nil},
		{"weight", resource.Backends{Weight: 30}, []string{"i-gpu:30080/30", "i-m1:30080/30", "i-w2:30080/30"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := httpRoute("web", 80)
			rt.Backends = tc.backends
			got, warnings := members(t, rt, nodes, published)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
			text := strings.Join(warnings, "\n")
			if len(tc.want) == 0 && !strings.Contains(text, "no Swarm node qualifies") {
				t.Errorf("no warning about an empty group: %q", warnings)
			}
			for _, want := range []string{
				"node drained (id-drained, i-drained) is drain: it is not an SLB backend until it is active again",
				"node paused (id-paused, i-paused) is pause: it is not an SLB backend until it is active again",
				"node down (id-down, i-down) is down: it is not an SLB backend until it is ready again",
				"node gone (id-gone, i-gone) is disconnected: it is not an SLB backend until it is ready again",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("warnings lack %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestExpandWarnsAboutNodes(t *testing.T) {
	dup := node("node9", "i-node1")
	nodes := []Node{node("node1", "i-node1"), node("bare", ""), dup}
	set := routeSet(httpRoute("a", 80), httpRoute("b", 81))
	warnings, err := Expand(set, ExpandInput{Nodes: nodes, Published: wordpressPublished(30080)})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(warnings, "\n")
	for _, want := range []string{
		"node bare (id-bare) has no label dev.capstan.ecs-instance-id, so it is not an SLB backend of route(s) a, b; label it: docker node update --label-add dev.capstan.ecs-instance-id=<ECS instance ID> bare",
		"route a: nodes node1 and node9 both carry dev.capstan.ecs-instance-id=i-node1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("warnings lack %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "node bare"); n != 1 {
		t.Errorf("node bare named %d times, want once for both routes", n)
	}
}

func TestExpandPublishedPort(t *testing.T) {
	declared := wordpressService(1)
	declared.Service.EndpointSpec.Ports[0].PublishedPort = 8000
	udpRoute := httpRoute("dns", 53)
	udpRoute.Listener = resource.Listener{Protocol: "udp", Port: 53, Bandwidth: ptr(-1), Scheduler: "wrr"}
	udpRoute.Service.TargetPort = 53

	for _, tc := range []struct {
		name      string
		route     resource.Route
		service   *resource.Resource
		published map[string][]PublishedPort
		want      int
		later     bool
	}{
		{"live", httpRoute("web", 80), nil, wordpressPublished(30080), 30080, false},
		{"declared wins over live", httpRoute("web", 80), &declared, wordpressPublished(30080), 8000, false},
		{"not live yet", httpRoute("web", 80), nil, nil, 0, true},
		{"not live, declared", httpRoute("web", 80), &declared, nil, 8000, false},
		{"by protocol", udpRoute, nil, map[string][]PublishedPort{"wordpress_wordpress": {
			{Target: 53, Published: 30053, Protocol: "tcp"}, {Target: 53, Published: 30054, Protocol: "udp"}}}, 30054, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := routeSet(tc.route)
			if tc.service != nil {
				set.Resources[tc.service.Key] = *tc.service
			}
			warnings, err := Expand(set, ExpandInput{Nodes: threeNodes(), Published: tc.published})
			if err != nil {
				t.Fatal(err)
			}
			g, _ := set.Get(resource.VServerGroupKey(testLB, resource.SLBMarker("capstan", tc.route.Name)))
			if got := g.VServerGroup.Backends[0].Port; got != tc.want {
				t.Errorf("port %d, want %d", got, tc.want)
			}
			if later := strings.Contains(strings.Join(warnings, "\n"), "known after apply"); later != tc.later {
				t.Errorf("'known after apply' warning: %v, want %v (%q)", later, tc.later, warnings)
			}
		})
	}
}

func TestExpandMarkerTooLong(t *testing.T) {
	set := routeSet(httpRoute(strings.Repeat("r", 63), 80))
	_, err := Expand(set, ExpandInput{Instance: "a-rather-long-instance-name", Nodes: threeNodes()})
	if err == nil || !strings.Contains(err.Error(), "longer than 80 characters") || !strings.Contains(err.Error(), "routes.yaml:1") {
		t.Fatalf("error = %v", err)
	}
}

// The objects every kind of route expands to, as JSON, against a golden file
// (go test -run TestExpandGolden -update rewrites it).
func TestExpandGolden(t *testing.T) {
	web := httpRoute("wordpress-http", 8080)
	plain := httpRoute("plain-http", 8081)
	plain.Listener = resource.Listener{Protocol: "http", Port: 8081, Bandwidth: ptr(-1), Scheduler: "wrr", Gzip: ptr(false)}
	secure := httpRoute("wordpress-https", 443)
	secure.Listener = resource.Listener{Protocol: "https", Port: 443, Bandwidth: ptr(50), Scheduler: "wlc", CertificateID: "cert-1",
		HealthCheck:   &resource.HealthCheck{Enabled: ptr(false)},
		StickySession: &resource.StickySession{Type: "server", Cookie: "SESSION"},
		ACL:           &resource.ACL{ID: "acl-1", Type: "white"}, IdleTimeout: 30, RequestTimeout: 90}
	tcp := httpRoute("db", 3306)
	tcp.Service.TargetPort = 3306
	tcp.Listener = resource.Listener{Protocol: "tcp", Port: 3306, Bandwidth: ptr(-1), Scheduler: "sch",
		HealthCheck: &resource.HealthCheck{Interval: 10, ConnectPort: 3307}}
	tcp.Backends = resource.Backends{NodeRole: "manager", Weight: 50}
	udp := httpRoute("dns", 53)
	udp.Service.TargetPort = 53
	udp.Listener = resource.Listener{Protocol: "udp", Port: 53, Bandwidth: ptr(-1), Scheduler: "wrr"}

	set := routeSet(web, plain, secure, tcp, udp)
	svc := wordpressService(2)
	svc.Service.EndpointSpec.Ports = []swarm.PortConfig{
		{TargetPort: 80, Protocol: "tcp"}, {TargetPort: 3306, PublishedPort: 3306, Protocol: "tcp"}, {TargetPort: 53, Protocol: "udp"}}
	set.Resources[svc.Key] = svc
	nodes := threeNodes()
	nodes[0].Role = "manager"
	warnings, err := Expand(set, ExpandInput{Nodes: nodes, Published: map[string][]PublishedPort{"wordpress_wordpress": {
		{Target: 80, Published: 30080, Protocol: "tcp"}, {Target: 53, Published: 30053, Protocol: "udp"}}}})
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Key          string                 `json:"key"`
		Stack        string                 `json:"stack"`
		Listener     *resource.SLBListener  `json:"listener,omitempty"`
		VServerGroup *resource.VServerGroup `json:"vServerGroup,omitempty"`
	}
	var out struct {
		Resources []entry  `json:"resources"`
		Warnings  []string `json:"warnings"`
	}
	for _, k := range set.Keys() {
		if k.Sink != resource.SinkSLB {
			continue
		}
		r := set.Resources[k]
		if r.Route != nil {
			t.Errorf("%s is still a Route", k)
		}
		out.Resources = append(out.Resources, entry{Key: k.String(), Stack: r.Stack, Listener: r.SLBListener, VServerGroup: r.VServerGroup})
	}
	out.Warnings = warnings
	got, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "expand.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("expansion differs from %s (-want +got):\n%s", path, diff)
	}
}
