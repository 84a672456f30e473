package swarm_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const instance = "sinktest"

// env is one test's engine connection and stack.
type env struct {
	t       *testing.T
	cli     *client.Client
	counter *dockertest.Counter
	sink    *swarmsink.Sink
	stack   string
	image   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cli, counter := dockertest.Client(t)
	e := &env{t: t, cli: cli, counter: counter, sink: swarmsink.New(cli, instance), stack: dockertest.UniqueName(t, "sk"), image: dockertest.Image(t)}
	dockertest.Cleanup(t, cli, e.stack)
	return e
}

func (e *env) name(n string) string { return e.stack + "_" + n }

// service is a desired service of the stack: the test image, 1 replica, no networks.
func (e *env) service(name string, edit func(*swarm.ServiceSpec)) *resource.Resource {
	one := uint64(1)
	spec := &swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: e.name(name), Labels: map[string]string{resource.LabelNamespace: e.stack}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
			Image: e.image, Env: []string{"MESSAGE=" + name},
			// The test image exits at once on SIGTERM; a short grace keeps removals quick
			// even if it did not.
			StopGracePeriod: durationPtr(2 * time.Second),
		}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}
	if edit != nil {
		edit(spec)
	}
	return &resource.Resource{Key: resource.ServiceKey(spec.Name), Stack: e.stack, Service: spec}
}

func durationPtr(d time.Duration) *time.Duration { return &d }

func (e *env) network(name string) *resource.Resource {
	return &resource.Resource{Key: resource.NetworkKey(e.name(name)), Stack: e.stack,
		Network: &network.CreateOptions{Driver: "overlay", Labels: map[string]string{resource.LabelNamespace: e.stack}}}
}

func (e *env) secret(name, data string) *resource.Resource {
	return &resource.Resource{Key: resource.SecretKey(e.name(name)), Stack: e.stack,
		Secret: &swarm.SecretSpec{Annotations: swarm.Annotations{Name: e.name(name), Labels: map[string]string{resource.LabelNamespace: e.stack}}, Data: []byte(data)}}
}

func (e *env) config(name, data string) *resource.Resource {
	return &resource.Resource{Key: resource.ConfigKey(e.name(name)), Stack: e.stack,
		Config: &swarm.ConfigSpec{Annotations: swarm.Annotations{Name: e.name(name), Labels: map[string]string{resource.LabelNamespace: e.stack}}, Data: []byte(data)}}
}

func (e *env) apply(c reconcile.Change) {
	e.t.Helper()
	if err := e.sink.Apply(e.t.Context(), c); err != nil {
		e.t.Fatalf("Apply %c %s: %v", c.Action, c.Key, err)
	}
}

func (e *env) create(rs ...*resource.Resource) {
	e.t.Helper()
	for _, r := range rs {
		e.apply(reconcile.Change{Action: reconcile.Create, Key: r.Key, After: r})
	}
}

func (e *env) observe() *resource.Set {
	e.t.Helper()
	set, err := e.sink.Observe(e.t.Context())
	if err != nil {
		e.t.Fatalf("Observe: %v", err)
	}
	return set
}

func (e *env) live(set *resource.Set, k resource.Key) *resource.Resource {
	e.t.Helper()
	r, ok := set.Get(k)
	if !ok {
		e.t.Fatalf("Observe does not show %s", k)
	}
	return &r
}

// waitStatus polls ServiceStatus until ok accepts it. The deadline only bounds a hung
// test; it asserts nothing about speed.
func (e *env) waitStatus(name string, ok func(resource.ServiceStatus) bool) resource.ServiceStatus {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 2*time.Minute)
	defer cancel()
	var last resource.ServiceStatus
	var err error
	for {
		last, err = e.sink.ServiceStatus(ctx, name)
		if err == nil && ok(last) {
			return last
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("service %s never reached the wanted status: last %+v, error %v", name, last, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestCreateThenObserve(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	net, sec, cfg := e.network("net"), e.secret("pw", "s3cret"), e.config("conf", "key: value\n")
	web := e.service("web", func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: e.name("net"), Aliases: []string{"web"}}}
		s.TaskTemplate.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretName: e.name("pw"),
			File: &swarm.SecretReferenceFileTarget{Name: "pw", UID: "0", GID: "0", Mode: 0o444}}}
		s.TaskTemplate.ContainerSpec.Configs = []*swarm.ConfigReference{{ConfigName: e.name("conf"),
			File: &swarm.ConfigReferenceFileTarget{Name: "/conf.yaml", UID: "0", GID: "0", Mode: 0o444}}}
	})
	// Only here to show the live shape of an endpoint spec: no replicas, nothing bound.
	zero := uint64(0)
	pub := e.service("pub", func(s *swarm.ServiceSpec) {
		s.Mode.Replicated.Replicas = &zero
		s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 0, PublishMode: swarm.PortConfigPublishModeHost}}}
		s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
	})
	e.create(net, sec, cfg, web, pub)

	set := e.observe()
	ls := e.live(set, web.Key)
	ln := e.live(set, net.Key)
	lsec := e.live(set, sec.Key)
	lcfg := e.live(set, cfg.Key)

	for _, r := range []*resource.Resource{ls, ln, lsec, lcfg} {
		if r.Stack != e.stack || r.Owner() != instance || r.ID == "" {
			t.Errorf("%s: Stack %q, Owner %q, ID %q; want %q, %q, an ID", r.Key, r.Stack, r.Owner(), r.ID, e.stack, instance)
		}
	}
	if ls.Version == 0 || ls.Status == nil || ls.Status.DesiredTasks != 1 {
		t.Errorf("service Version %d, Status %+v; want a version and 1 desired task", ls.Version, ls.Status)
	}
	if got, want := ls.Service.Labels[resource.LabelSpecHash], resource.SpecHash(*web); got != want {
		t.Errorf("spec-hash label %q, want resource.SpecHash of the desired resource %q", got, want)
	}
	if got := ls.Service.TaskTemplate.Networks; len(got) != 1 || got[0].Target != e.name("net") {
		t.Errorf("live networks %+v, want the network by name %s", got, e.name("net"))
	}
	if got := ls.Service.TaskTemplate.ContainerSpec.Secrets; len(got) != 1 || got[0].SecretID != lsec.ID {
		t.Errorf("secret reference %+v, want ID %s resolved from the name", got, lsec.ID)
	}
	if got := ls.Service.TaskTemplate.ContainerSpec.Configs; len(got) != 1 || got[0].ConfigID != lcfg.ID {
		t.Errorf("config reference %+v, want ID %s resolved from the name", got, lcfg.ID)
	}
	if lsec.Secret.Data != nil {
		t.Error("Swarm returned secret data")
	}
	if string(lcfg.Config.Data) != "key: value\n" {
		t.Errorf("config data %q", lcfg.Config.Data)
	}
	if _, ok := set.Get(resource.NetworkKey("ingress")); ok {
		t.Error("Observe shows the ingress network")
	}
	if _, ok := set.Get(resource.NetworkKey("bridge")); ok {
		t.Error("Observe shows a local network")
	}

	nodes := e.sink.Nodes()
	if len(nodes) == 0 || nodes[0].ID == "" || nodes[0].Hostname == "" {
		t.Fatalf("Nodes() = %+v", nodes)
	}
	managers := 0
	for _, n := range nodes {
		if n.Role == "manager" && n.State == "ready" {
			managers++
		}
	}
	if managers == 0 {
		t.Errorf("no ready manager among %+v", nodes)
	}

	// Swarm allocates a new service's endpoint asynchronously: observe until it has.
	ports := e.sink.PublishedPorts(e.name("pub"), e.name("web"), "no-such-service")
	for deadline := time.Now().Add(10 * time.Second); len(ports) == 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		e.observe()
		ports = e.sink.PublishedPorts(e.name("pub"), e.name("web"), "no-such-service")
	}
	if got := ports[e.name("pub")]; len(got) != 1 || got[0].Target != 80 || got[0].Protocol != "tcp" || got[0].PublishMode != "host" {
		t.Errorf("PublishedPorts of pub = %+v, want 80/tcp in host mode", got)
	}
	if len(ports) != 1 {
		t.Errorf("PublishedPorts = %+v, want only pub (web publishes nothing, the third does not exist)", ports)
	}

	golden(t, "live-shapes.json", e, map[string]any{"service": ls.Service, "service-with-ports": e.live(set, pub.Key).Service, "network": ln.Network, "secret": lsec.Secret, "config": lcfg.Config})
}

// golden compares v, rendered as JSON with the run's stack name, IDs and allocator-chosen
// addresses replaced by placeholders, with testdata/name. It documents the live shapes
// the rest of capstan normalizes against. go test -run TestCreateThenObserve -update
// rewrites it.
func golden(t *testing.T, name string, e *env, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.ReplaceAll(string(b), e.stack, "STACK")
	got = strings.ReplaceAll(got, e.image, "IMAGE")
	for _, re := range []struct{ pattern, repl string }{
		{`"[0-9a-z]{25}"`, `"<ID>"`},
		{`"dev.capstan.spec-hash": "[0-9a-f]+"`, `"dev.capstan.spec-hash": "<HASH>"`},
		{`"10\.\d+\.\d+\.\d+(/\d+)?"`, `"<ADDR>"`},
	} {
		got = regexp.MustCompile(re.pattern).ReplaceAllString(got, re.repl)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got+"\n"); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// TestObserveRequestCount: Observe costs the same few requests whatever the size of the
// swarm — the version ping on a fresh client plus one list per kind. The only other
// request a sink may ever send is a one-time inspect of each predefined network ("host",
// "bridge") that some service in the swarm uses, which this test cannot rule out on a
// shared engine: it tolerates those and checks the second Observe sends none.
func TestObserveRequestCount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const services = 30
	zero := uint64(0)
	for i := range services {
		// No replicas: only the number of service objects matters here.
		e.create(e.service(fmt.Sprintf("s%02d", i), func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = &zero }))
	}

	cli, counter := dockertest.Client(t) // fresh: its first request negotiates the version
	sink := swarmsink.New(cli, instance)
	set, err := sink.Observe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range set.Resources {
		if r.Stack == e.stack && r.Key.Kind == resource.KindService {
			n++
		}
	}
	if n != services {
		t.Fatalf("Observe shows %d of the stack's %d services", n, services)
	}
	call := func(method, path string) dockertest.Call { return dockertest.Call{Method: method, Path: path} }
	want := []dockertest.Call{call("HEAD", "/_ping"), call("GET", "/services"), call("GET", "/networks"),
		call("GET", "/secrets"), call("GET", "/configs"), call("GET", "/nodes")}
	core, inspects := splitInspects(counter.Calls())
	if diff := cmp.Diff(want, core); diff != "" || inspects > 2 {
		t.Errorf("first Observe: %d requests, %d of them predefined-network inspects (-want +got):\n%s", counter.Total(), inspects, diff)
	}
	t.Logf("first Observe: %d requests (%d predefined-network inspects)", counter.Total(), inspects)
	counter.Reset()
	if _, err := sink.Observe(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[1:], counter.Calls()); diff != "" {
		t.Errorf("second Observe (-want +got):\n%s", diff)
	}
}

// splitInspects separates network inspects (GET /networks/<id>) from the other calls.
func splitInspects(calls []dockertest.Call) (rest []dockertest.Call, inspects int) {
	for _, c := range calls {
		if c.Method == "GET" && strings.HasPrefix(c.Path, "/networks/") {
			inspects++
			continue
		}
		rest = append(rest, c)
	}
	return rest, inspects
}

// TestObserveHostNetwork: a service on the host network refers to it by a swarm-side ID
// the network list does not show; Observe names it with one inspect, then from its cache.
func TestObserveHostNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zero := uint64(0)
	svc := e.service("onhost", func(s *swarm.ServiceSpec) {
		s.Mode.Replicated.Replicas = &zero
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "host"}}
	})
	e.create(svc)
	for round := 1; round <= 2; round++ {
		e.counter.Reset()
		set := e.observe()
		if got := e.live(set, svc.Key).Service.TaskTemplate.Networks; len(got) != 1 || got[0].Target != "host" {
			t.Errorf("round %d: networks %+v, want host", round, got)
		}
		_, inspects := splitInspects(e.counter.Calls())
		// Round 1 inspects "host" (and "bridge" if another test's service uses it).
		if (round == 1 && (inspects < 1 || inspects > 2)) || (round == 2 && inspects != 0) {
			t.Errorf("round %d: %d network inspects:\n%s", round, inspects, e.counter.Summary())
		}
	}
}

// TestUpdateStaleVersion: an update planned from an Observe that someone else's write
// has since overtaken fails with "update out of sequence", re-reads and succeeds; the
// live ForceUpdate counter survives.
func TestUpdateStaleVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	web := e.service("web", nil)
	e.create(web)
	before := e.live(e.observe(), web.Key)

	// Someone bumps the service behind capstan's back (docker service update --force).
	svc, _, err := e.cli.ServiceInspectWithRaw(t.Context(), before.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.TaskTemplate.ForceUpdate = 3
	if _, err := e.cli.ServiceUpdate(t.Context(), svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	after := e.service("web", func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Env = []string{"MESSAGE=updated"} })
	e.counter.Reset()
	e.apply(reconcile.Change{Action: reconcile.Update, Key: web.Key, Before: before, After: after})
	if n := e.counter.Count("POST", "/services/*/update"); n != 2 {
		t.Errorf("%d service updates, want 2 (the stale one, then the retry):\n%s", n, e.counter.Summary())
	}
	live := e.live(e.observe(), web.Key).Service
	if diff := cmp.Diff([]string{"MESSAGE=updated"}, live.TaskTemplate.ContainerSpec.Env); diff != "" {
		t.Errorf("live env (-want +got):\n%s", diff)
	}
	if live.TaskTemplate.ForceUpdate != 3 {
		t.Errorf("ForceUpdate %d, want the live 3 kept", live.TaskTemplate.ForceUpdate)
	}
}

func TestMissingSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	web := e.service("web", func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretName: e.name("nope"),
			File: &swarm.SecretReferenceFileTarget{Name: "nope", UID: "0", GID: "0", Mode: 0o444}}}
		s.TaskTemplate.ContainerSpec.Configs = []*swarm.ConfigReference{{ConfigName: e.name("gone"),
			File: &swarm.ConfigReferenceFileTarget{Name: "/gone", UID: "0", GID: "0", Mode: 0o444}}}
	})
	err := e.sink.Apply(t.Context(), reconcile.Change{Action: reconcile.Create, Key: web.Key, After: web})
	for _, want := range []string{web.Key.String(), fmt.Sprintf("secret %q", e.name("nope")), fmt.Sprintf("config %q", e.name("gone")), "does not have"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Apply = %v, want an error containing %q", err, want)
		}
	}
	if e.counter.Writes() != 0 {
		t.Errorf("a failed create wrote:\n%s", e.counter.Summary())
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	net, sec, cfg := e.network("net"), e.secret("pw", "x"), e.config("conf", "y")
	web := e.service("web", func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: e.name("net")}}
	})
	e.create(net, sec, cfg, web)
	e.waitStatus(web.Key.Name, func(s resource.ServiceStatus) bool { return s.RunningTasks == 1 })
	set := e.observe()

	// In plan order: the service, then the rest. The network is deleted while the
	// service's task is still detaching from it.
	for _, k := range []resource.Key{web.Key, cfg.Key, sec.Key, net.Key} {
		e.apply(reconcile.Change{Action: reconcile.Delete, Key: k, Before: e.live(set, k)})
	}
	after := e.observe()
	for _, k := range []resource.Key{web.Key, cfg.Key, sec.Key, net.Key} {
		if _, ok := after.Get(k); ok {
			t.Errorf("%s still live after Delete", k)
		}
		// Deleting what is already gone is done, not an error.
		e.apply(reconcile.Change{Action: reconcile.Delete, Key: k, Before: e.live(set, k)})
	}
}

func TestDeleteRefusesUnmanaged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := e.name("theirs")
	if _, err := e.cli.SecretCreate(t.Context(), swarm.SecretSpec{Annotations: swarm.Annotations{Name: name,
		Labels: map[string]string{resource.LabelNamespace: e.stack}}, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	live := e.live(e.observe(), resource.SecretKey(name))
	err := e.sink.Apply(t.Context(), reconcile.Change{Action: reconcile.Delete, Key: live.Key, Before: live})
	if err == nil || !strings.Contains(err.Error(), "not managed by capstan") {
		t.Fatalf("Apply = %v, want a refusal", err)
	}
	e.live(e.observe(), live.Key)
}

// TestReplace turns a replicated service into a global one (Swarm cannot), and replaces a
// network a running service uses: the service is detached first, then re-attached by its
// own (now stale-versioned) update.
func TestReplace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	net := e.network("net")
	web := e.service("web", func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: e.name("net")}}
	})
	e.create(net, web)
	set := e.observe()

	global := e.service("web", func(s *swarm.ServiceSpec) {
		s.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: e.name("net")}}
	})
	e.apply(reconcile.Change{Action: reconcile.Replace, Key: web.Key, Before: e.live(set, web.Key), After: global})
	set2 := e.observe()
	lw := e.live(set2, web.Key)
	if lw.Service.Mode.Global == nil || lw.ID == e.live(set, web.Key).ID {
		t.Errorf("after Replace: mode %+v, ID %s (before %s); want a new global service", lw.Service.Mode, lw.ID, e.live(set, web.Key).ID)
	}

	internal := e.network("net")
	internal.Network.Internal = true
	e.apply(reconcile.Change{Action: reconcile.Replace, Key: net.Key, Before: e.live(set2, net.Key), After: internal,
		Detach: []resource.Key{web.Key}})
	set3 := e.observe()
	ln := e.live(set3, net.Key)
	if !ln.Network.Internal || ln.ID == e.live(set2, net.Key).ID {
		t.Errorf("after Replace: network internal=%t ID %s (before %s)", ln.Network.Internal, ln.ID, e.live(set2, net.Key).ID)
	}
	if got := e.live(set3, web.Key).Service.TaskTemplate.Networks; len(got) != 0 {
		t.Errorf("service still attached to %+v after the detach", got)
	}
	e.apply(reconcile.Change{Action: reconcile.Update, Key: web.Key, Before: lw, After: global}) // lw's version is stale now
	if got := e.live(e.observe(), web.Key).Service.TaskTemplate.Networks; len(got) != 1 || got[0].Target != e.name("net") {
		t.Errorf("service networks %+v after re-attaching, want %s", got, e.name("net"))
	}
}

// TestServiceStatusAndScale: a 2-replica service converges to 2/2; a Scale to 1 changes
// only replicas and labels and converges to 1/1. ServiceStatus costs two requests.
func TestServiceStatusAndScale(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	two := uint64(2)
	web := e.service("web", func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = &two })
	e.create(web)
	st := e.waitStatus(web.Key.Name, func(s resource.ServiceStatus) bool { return s.DesiredTasks == 2 && s.RunningTasks == 2 })
	if st.UpdateState != "" {
		t.Errorf("fresh service has update state %q", st.UpdateState)
	}
	e.counter.Reset()
	if _, err := e.sink.ServiceStatus(t.Context(), web.Key.Name); err != nil {
		t.Fatal(err)
	}
	if n := e.counter.Total(); n > 2 {
		t.Errorf("ServiceStatus sent %d requests, want ≤ 2:\n%s", n, e.counter.Summary())
	}

	before := e.live(e.observe(), web.Key)
	one := uint64(1)
	scaled := e.service("web", func(s *swarm.ServiceSpec) {
		s.Mode.Replicated.Replicas = &one
		s.Labels["team"] = "blue"
	})
	e.apply(reconcile.Change{Action: reconcile.Scale, Key: web.Key, Before: before, After: scaled})
	e.waitStatus(web.Key.Name, func(s resource.ServiceStatus) bool { return s.DesiredTasks == 1 && s.RunningTasks == 1 })
	live := e.live(e.observe(), web.Key).Service
	if live.Labels["team"] != "blue" || live.Labels[resource.LabelSpecHash] != resource.SpecHash(*scaled) {
		t.Errorf("labels after Scale: %v", live.Labels)
	}

	if _, err := e.sink.ServiceStatus(t.Context(), e.name("absent")); err == nil {
		t.Error("ServiceStatus of a missing service succeeded")
	}
}

// TestServiceStatusReportsRollback: an update whose tasks fail is rolled back by Swarm,
// and ServiceStatus says so — apply reports that as the change's failure.
func TestServiceStatusReportsRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withRollback := func(s *swarm.ServiceSpec) {
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, FailureAction: swarm.UpdateFailureActionRollback, Monitor: 2 * time.Second}
		s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: durationPtr(100 * time.Millisecond)}
	}
	web := e.service("web", withRollback)
	e.create(web)
	e.waitStatus(web.Key.Name, func(s resource.ServiceStatus) bool { return s.RunningTasks == 1 })

	failing := e.service("web", func(s *swarm.ServiceSpec) {
		withRollback(s)
		s.TaskTemplate.ContainerSpec.Env = append(s.TaskTemplate.ContainerSpec.Env, "FAIL_AFTER=0s")
	})
	e.apply(reconcile.Change{Action: reconcile.Update, Key: web.Key, Before: e.live(e.observe(), web.Key), After: failing})
	st := e.waitStatus(web.Key.Name, func(s resource.ServiceStatus) bool {
		return s.UpdateState == string(swarm.UpdateStateRollbackCompleted)
	})
	if st.UpdateMessage == "" {
		t.Errorf("rollback without a message: %+v", st)
	}
	// Rolled back to the previous spec, whose task runs again and counts as current.
	e.waitStatus(web.Key.Name, func(s resource.ServiceStatus) bool { return s.RunningTasks == 1 && s.DesiredTasks == 1 })
	if env := e.live(e.observe(), web.Key).Service.TaskTemplate.ContainerSpec.Env; len(env) != 1 {
		t.Errorf("env after rollback %v, want the original", env)
	}
}

// TestUpdateSecretAndConfig: labels change in place; content never does.
func TestUpdateSecretAndConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sec, cfg := e.secret("pw", "one"), e.config("conf", "one")
	e.create(sec, cfg)
	set := e.observe()

	for _, r := range []*resource.Resource{sec, cfg} {
		relabelled := *r
		if r.Secret != nil {
			s := *r.Secret
			s.Labels = map[string]string{resource.LabelNamespace: e.stack, "rev": "2"}
			relabelled.Secret = &s
		} else {
			c := *r.Config
			c.Labels = map[string]string{resource.LabelNamespace: e.stack, "rev": "2"}
			relabelled.Config = &c
		}
		e.apply(reconcile.Change{Action: reconcile.Update, Key: r.Key, Before: e.live(set, r.Key), After: &relabelled})
	}
	set2 := e.observe()
	for _, k := range []resource.Key{sec.Key, cfg.Key} {
		l := e.live(set2, k)
		if l.Labels()["rev"] != "2" {
			t.Errorf("%s labels %v after Update", k, l.Labels())
		}
	}

	changedSecret := e.secret("pw", "two")
	err := e.sink.Apply(t.Context(), reconcile.Change{Action: reconcile.Update, Key: sec.Key, Before: e.live(set2, sec.Key), After: changedSecret})
	if err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("secret content change: %v, want a refusal saying content is immutable", err)
	}
	changedConfig := e.config("conf", "two")
	err = e.sink.Apply(t.Context(), reconcile.Change{Action: reconcile.Update, Key: cfg.Key, Before: e.live(set2, cfg.Key), After: changedConfig})
	if err == nil || !strings.Contains(err.Error(), "rotate") {
		t.Errorf("config content change: %v, want a refusal saying to rotate", err)
	}
	if got := string(e.live(e.observe(), cfg.Key).Config.Data); got != "one" {
		t.Errorf("config content %q after refused update", got)
	}
}

// TestCreateConflict: creating over an existing name surfaces the engine's error, wrapped.
func TestCreateConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sec := e.secret("pw", "x")
	e.create(sec)
	err := e.sink.Apply(t.Context(), reconcile.Change{Action: reconcile.Create, Key: sec.Key, After: sec})
	if err == nil || !strings.Contains(err.Error(), sec.Key.String()) {
		t.Fatalf("second create: %v", err)
	}
	var unwrapped interface{ Unwrap() error }
	if !errors.As(err, &unwrapped) {
		t.Errorf("error %v wraps nothing", err)
	}
	list, _ := e.cli.SecretList(t.Context(), swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", sec.Key.Name))})
	if len(list) != 1 {
		t.Errorf("%d secrets named %s", len(list), sec.Key.Name)
	}
}

// TestObserveUnownedHostNetworkIsFree: a service of another owner on the host network
// costs no inspect; its networks are never compared, so its ID is left as it is.
func TestObserveUnownedHostNetworkIsFree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	zero := uint64(0)
	svc := e.service("foreign", func(s *swarm.ServiceSpec) {
		s.Mode.Replicated.Replicas = &zero
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "host"}}
	})
	if _, err := e.cli.ServiceCreate(t.Context(), *svc.Service, swarm.ServiceCreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A sink of an instance nobody else uses: every service on the swarm is foreign to it.
	sink := swarmsink.New(e.cli, dockertest.UniqueName(t, "nobody"))
	e.counter.Reset()
	set, err := sink.Observe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, inspects := splitInspects(e.counter.Calls()); inspects != 0 {
		t.Errorf("%d network inspects for services this instance does not own:\n%s", inspects, e.counter.Summary())
	}
	if got := e.live(set, svc.Key).Service.TaskTemplate.Networks; len(got) != 1 || got[0].Target == "host" {
		t.Errorf("foreign service networks %+v: want the unresolved ID", got)
	}
}
