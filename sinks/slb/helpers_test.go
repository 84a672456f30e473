package slb

import (
	"context"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	slbsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

const (
	testAK     = "AKIDcapstantest"
	testSecret = "capstan-test-secret"
	testRegion = "cn-hangzhou"
	testLB     = "lb-capstan1"
)

// newEmu starts an emulator on 127.0.0.1 with testLB (plus extra load balancers).
func newEmu(t testing.TB, cfg slbemu.Config, extra ...slbemu.LoadBalancer) *slbemu.Server {
	t.Helper()
	cfg.Credentials = []slbemu.Credential{{AccessKeyID: testAK, AccessKeySecret: testSecret}}
	cfg.LoadBalancers = append([]slbemu.LoadBalancer{{ID: testLB, Region: testRegion}}, extra...)
	emu := slbemu.New(cfg)
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { emu.Close() })
	return emu
}

// newSink returns a sink on emu with fast retries and polls.
func newSink(t testing.TB, emu *slbemu.Server, mod ...func(*Options)) *Sink {
	t.Helper()
	opts := Options{
		Endpoint:     emu.URL(),
		Credentials:  &Credentials{AccessKeyID: testAK, AccessKeySecret: testSecret},
		Retry:        Retry{Attempts: 8, Base: time.Millisecond, Max: 4 * time.Millisecond},
		PollInterval: time.Millisecond,
	}
	for _, m := range mod {
		m(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("new sink: %v", err)
	}
	return s
}

// sdkClient is a plain SDK client on emu, for setting up what a user did by hand.
func sdkClient(t testing.TB, emu *slbemu.Server) *slbsdk.Client {
	t.Helper()
	c, err := slbsdk.NewClientWithOptions(testRegion, sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(false),
		credentials.NewStaticAKCredentialsProvider(testAK, testSecret))
	if err != nil {
		t.Fatal(err)
	}
	c.Domain = emu.Endpoint()
	return c
}

func ptr[T any](v T) *T { return &v }

// httpRoute is the wordpress route of the design, with manifests' defaults filled in.
func httpRoute(name string, port int) resource.Route {
	return resource.Route{
		Name:         name,
		Service:      resource.ServiceRef{Stack: "wordpress", Name: "wordpress", TargetPort: 80},
		LoadBalancer: resource.LoadBalancer{ID: testLB, Region: testRegion},
		Listener: resource.Listener{
			Protocol:  "http",
			Port:      port,
			Bandwidth: ptr(-1),
			Scheduler: "wrr",
			HealthCheck: &resource.HealthCheck{URI: "/license.txt", HTTPCode: []string{"http_2xx", "http_3xx"},
				Interval: 2, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 3},
			StickySession: &resource.StickySession{Type: "insert", Timeout: 1800},
		},
		Backends: resource.Backends{NodeRole: "any", Weight: 100},
	}
}

// routeSet is a desired Set holding routes as manifests.Load leaves them.
func routeSet(routes ...resource.Route) *resource.Set {
	set := resource.NewSet()
	for _, r := range routes {
		r := r
		key := resource.ListenerKey(r.LoadBalancer.ID, r.Listener.Port, r.Listener.Protocol)
		set.Resources[key] = resource.Resource{Key: key, Stack: r.Service.Stack, Source: "routes.yaml:1", Route: &r}
	}
	return set
}

// node is a ready, active node labelled with its ECS instance.
func node(host, ecs string) Node {
	n := Node{ID: "id-" + host, Hostname: host, Role: "worker", Availability: "active", State: "ready", Labels: map[string]string{}}
	if ecs != "" {
		n.Labels[resource.LabelECSInstanceID] = ecs
	}
	return n
}

func threeNodes() []Node {
	return []Node{node("node1", "i-node1"), node("node2", "i-node2"), node("node3", "i-node3")}
}

// swarmState is the live Swarm a reconcile expands routes against.
type swarmState struct {
	nodes     []Node
	published map[string][]PublishedPort
}

func wordpressPublished(port uint32) map[string][]PublishedPort {
	return map[string][]PublishedPort{"wordpress_wordpress": {{Target: 80, Published: port, Protocol: "tcp"}}}
}

// reconcileOnce does what capstan apply does for routes: expand, observe, plan, apply.
// It returns the plan (and fails the test on errors).
func reconcileOnce(t testing.TB, s *Sink, desired *resource.Set, sw swarmState) reconcile.Plan {
	t.Helper()
	plan, err := planRoutes(s, desired, sw)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if _, err := reconcile.Apply(context.Background(), plan, map[string]reconcile.Sink{s.Name(): s}, reconcile.ApplyOptions{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return plan
}

func planRoutes(s *Sink, desired *resource.Set, sw swarmState, mod ...func(*reconcile.Options)) (reconcile.Plan, error) {
	d := cloneSet(desired)
	warnings, err := Expand(d, ExpandInput{Instance: s.instance, Nodes: sw.nodes, Published: sw.published})
	if err != nil {
		return reconcile.Plan{}, err
	}
	s.Watch(d)
	live, err := s.Observe(context.Background())
	if err != nil {
		return reconcile.Plan{}, err
	}
	opts := reconcile.Options{Instance: s.instance}
	for _, m := range mod {
		m(&opts)
	}
	plan, err := reconcile.BuildPlan(d, live, opts)
	plan.Warnings = append(warnings, plan.Warnings...)
	return plan, err
}

func cloneSet(s *resource.Set) *resource.Set {
	out := resource.NewSet()
	maps.Copy(out.Stacks, s.Stacks)
	for k, r := range s.Resources {
		if r.Route != nil {
			rt := *r.Route
			r.Route = &rt
		}
		out.Resources[k] = r
	}
	return out
}

// listenerState returns the emulator's listener on port/protocol of testLB.
func listenerState(t testing.TB, emu *slbemu.Server, port int, protocol string) (slbemu.ListenerState, bool) {
	t.Helper()
	for _, lb := range emu.Snapshot().LoadBalancers {
		if lb.ID != testLB {
			continue
		}
		for _, l := range lb.Listeners {
			if l.Port == port && l.Protocol == protocol {
				return l, true
			}
		}
	}
	return slbemu.ListenerState{}, false
}

// groupState returns the emulator's VServer group called name.
func groupState(t testing.TB, emu *slbemu.Server, name string) (slbemu.VServerGroupState, bool) {
	t.Helper()
	for _, g := range emu.Snapshot().VServerGroups {
		if g.Name == name {
			return g, true
		}
	}
	return slbemu.VServerGroupState{}, false
}

// actions counts the emulator's logged calls by action.
func actions(emu *slbemu.Server, writesOnly bool) map[string]int {
	out := map[string]int{}
	for _, c := range emu.Calls() {
		if !writesOnly || c.Write {
			out[c.Action]++
		}
	}
	return out
}

func strconvItoa(n int) string { return strconv.Itoa(n) }

// wordpressService is the desired Swarm service routes point at, with replicas.
func wordpressService(replicas uint64) resource.Resource {
	spec := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "wordpress_wordpress", Labels: map[string]string{resource.LabelNamespace: "wordpress"}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, Protocol: swarm.PortConfigProtocolTCP}}},
	}
	return resource.Resource{Key: resource.ServiceKey("wordpress_wordpress"), Stack: "wordpress", Service: &spec}
}
