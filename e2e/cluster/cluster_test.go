package cluster_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/e2e/cluster"
	"github.com/capstan-dev/capstan/internal/dockertest"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

const stackDoc = `apiVersion: capstan.dev/v1alpha1
kind: Stack
metadata:
  name: STACK
spec:
  compose: [compose.yaml]
`

// routeDoc sends LISTENPORT on the emulated SLB to the web service's port 80 on every
// node. The health check asks /healthz, which a draining task fails (testapp $DRAIN).
const routeDoc = `apiVersion: capstan.dev/v1alpha1
kind: Route
metadata:
  name: web
spec:
  service: {stack: STACK, name: web, targetPort: 80}
  loadBalancer: {id: lb-capstancluster, region: cn-hangzhou}
  listener:
    protocol: http
    port: LISTENPORT
    healthCheck: {uri: /healthz, interval: 1, healthyThreshold: 2, unhealthyThreshold: 2}
`

// webService publishes port 80 on PUBPORT in host mode (there is no routing mesh here):
// at most one task per node, each answering at its node's own address. Its hostname is
// the node ID, so an answer says which node served it.
const webService = `  web:
    image: capstan-testapp:dev
    hostname: "{{.Node.ID}}"
    environment:
      MESSAGE: MSG
      DRAIN: 3s
    ports:
      - {target: 80, published: PUBPORT, mode: host}
    healthcheck:
      test: ["CMD", "/testapp", "healthcheck", "http://127.0.0.1/healthz"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: WEBREPLICAS
      update_config: {parallelism: 1, delay: 1s, order: start-first, failure_action: pause}
`

// setup writes a stack of services (compose text after "services:") with the web route
// and applies it.
func (e *env) setup(services string, replace ...string) (out string, listen int) {
	e.t.Helper()
	listen = freePort(e.t)
	e.write(map[string]string{
		"stack.yaml":   stackDoc,
		"compose.yaml": "services:\n" + services,
		"route.yaml":   routeDoc,
	}, append([]string{"LISTENPORT", fmt.Sprint(listen)}, replace...)...)
	return e.apply(), listen
}

// replicas: 6 spread over the three nodes; the SLB emulator forwards through the
// listener on 127.0.0.1 to tasks on every node at the nodes' own addresses; and a second
// apply changes nothing: no Docker write, no SLB write.
func TestSpreadForwardAndNoopApply(t *testing.T) {
	e := newEnv(t, "spread")
	const pub = 30101
	app := `  app:
    image: capstan-testapp:dev
    environment:
      MESSAGE: spread
    deploy:
      replicas: 6
`
	_, listen := e.setup(app+webService, "PUBPORT", fmt.Sprint(pub), "WEBREPLICAS", "3", "MSG", "v1")

	t.Run("replicas spread over the nodes", func(t *testing.T) {
		var byNode map[string]int
		waitFor(t, time.Minute, "6 running app tasks", func() (bool, string) {
			byNode = e.tasks("app")
			total := 0
			for _, n := range byNode {
				total += n
			}
			return total == 6, fmt.Sprint(byNode)
		})
		want := map[string]int{}
		for _, n := range e.c.Nodes {
			want[n.ID] = 2
		}
		if diff := cmp.Diff(want, byNode); diff != "" {
			t.Errorf("app tasks per node (-want +got):\n%s", diff)
		}
	})

	t.Run("SLB forwards to every node", func(t *testing.T) {
		if got, want := e.group("web"), backendsOn(pub, e.c.Nodes...); !cmp.Equal(got, want) {
			t.Fatalf("VServer group = %v, want every node at %d: %v", got, pub, want)
		}
		seen := map[string]int{}
		url := fmt.Sprintf("http://127.0.0.1:%d/license.txt", listen)
		waitFor(t, time.Minute, "answers through the listener from all three nodes", func() (bool, string) {
			host, _, err := get(url)
			if err == nil {
				seen[host]++
			}
			return len(seen) == 3, fmt.Sprintf("answers by hostname %v, last error %v", seen, err)
		})
		for host := range seen {
			if _, ok := e.c.Node(host); !ok {
				t.Errorf("answer from %q, which is not a node of the cluster", host)
			}
		}
	})

	t.Run("second apply writes nothing", func(t *testing.T) {
		e.proxy.reset()
		e.emu.ResetCalls()
		out := e.apply()
		if !strings.Contains(out, "No changes.") {
			t.Errorf("second apply planned changes:\n%s", out)
		}
		if e.proxy.total() == 0 || e.emu.CountCalls(false) == 0 {
			t.Fatalf("the second apply read nothing through the proxy (%d) or from SLB (%d)", e.proxy.total(), e.emu.CountCalls(false))
		}
		if w := e.proxy.writes(); len(w) != 0 {
			t.Errorf("second apply wrote to Docker: %v", w)
		}
		if w := e.slbWrites(); len(w) != 0 {
			t.Errorf("second apply wrote to SLB: %v", w)
		}
		if out, code := e.diffCode(); code != 0 {
			t.Errorf("diff --detailed-exitcode = %d after apply:\n%s", code, out)
		}
	})
}

// Draining a worker takes its backend out of the VServer group in the next reconcile;
// making it active again brings it back. Swarm moves the tasks; capstan writes no
// service.
func TestDrainRemovesBackend(t *testing.T) {
	e := newEnv(t, "drain")
	const pub = 30102
	e.setup(webService, "PUBPORT", fmt.Sprint(pub), "WEBREPLICAS", "2", "MSG", "v1")
	all := e.c.Nodes
	if got := e.group("web"); !cmp.Equal(got, backendsOn(pub, all...)) {
		t.Fatalf("VServer group after apply = %v, want every node", got)
	}

	worker := e.c.Workers()[1]
	e.setAvailability(worker, swarm.NodeAvailabilityDrain)
	t.Cleanup(func() { e.setAvailability(worker, swarm.NodeAvailabilityActive) })

	e.proxy.reset()
	e.emu.ResetCalls()
	out := e.apply()
	t.Logf("apply with %s drained:\n%s", worker.Name, out)
	if got, want := e.group("web"), backendsOn(pub, all[0], all[1]); !cmp.Equal(got, want) {
		t.Errorf("VServer group after draining %s = %v, want %v\n%s", worker.Name, got, want, out)
	}
	if !strings.Contains(out, worker.InstanceID) {
		t.Errorf("the plan does not name the drained node's instance %s:\n%s", worker.InstanceID, out)
	}
	if w := e.proxy.writes(); len(w) != 0 {
		t.Errorf("capstan wrote to Docker after a drain: %v", w)
	}
	waitFor(t, time.Minute, "Swarm moves web off the drained node", func() (bool, string) {
		byNode := e.tasks("web")
		return byNode[worker.ID] == 0 && len(byNode) == 2, fmt.Sprint(byNode)
	})

	e.setAvailability(worker, swarm.NodeAvailabilityActive)
	e.apply()
	if got := e.group("web"); !cmp.Equal(got, backendsOn(pub, all...)) {
		t.Errorf("VServer group after %s is active again = %v, want every node", worker.Name, got)
	}
}

// A worker's engine stops: Swarm marks the node down and reschedules its task; capstan
// sees the node down, takes its backend out, and writes nothing to Swarm — neither in
// that reconcile nor in the next (it does not fight the rescheduling). When the engine
// is back, so is the backend.
func TestNodeLoss(t *testing.T) {
	e := newEnv(t, "loss")
	const pub = 30103
	e.setup(webService, "PUBPORT", fmt.Sprint(pub), "WEBREPLICAS", "2", "MSG", "v1")
	all := e.c.Nodes

	// Lose a worker that runs a web task, so Swarm has something to reschedule.
	var lost, kept cluster.Node
	byNode := e.tasks("web")
	for _, w := range e.c.Workers() {
		if byNode[w.ID] > 0 && lost.ID == "" {
			lost = w
		} else {
			kept = w
		}
	}
	if lost.ID == "" {
		t.Fatalf("no worker runs a web task: %v", byNode)
	}
	ctx := context.Background()
	if err := e.c.StopEngine(ctx, lost.Name); err != nil {
		t.Fatal(err)
	}
	restart := func() {
		if err := e.c.StartEngine(ctx, lost.Name); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Minute, lost.Name+" ready again", func() (bool, string) {
			s := e.nodeState(lost)
			return s == "ready", s
		})
	}
	t.Cleanup(func() {
		if e.nodeState(lost) != "ready" {
			restart()
		}
	})

	waitFor(t, time.Minute, lost.Name+" down", func() (bool, string) {
		s := e.nodeState(lost)
		return s == "down", s
	})
	waitFor(t, 2*time.Minute, "Swarm reschedules web away from "+lost.Name, func() (bool, string) {
		byNode := e.tasks("web")
		return byNode[lost.ID] == 0 && len(byNode) == 2, fmt.Sprint(byNode)
	})

	// capstan's Swarm sink reports the node down and the service whole again.
	sink := swarmsink.New(e.mgr, e.stack)
	if _, err := sink.Observe(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range sink.Nodes() {
		if n.ID == lost.ID && n.State != "down" {
			t.Errorf("sinks/swarm reports %s as %q, want down", lost.Name, n.State)
		}
	}
	if st, err := sink.ServiceStatus(ctx, e.stack+"_web"); err != nil || st.RunningTasks != 2 || st.DesiredTasks != 2 {
		t.Errorf("ServiceStatus(web) = %+v, %v; want 2 of 2 running", st, err)
	}

	e.proxy.reset()
	e.emu.ResetCalls()
	out := e.apply()
	t.Logf("apply with %s down:\n%s", lost.Name, out)
	if got, want := e.group("web"), backendsOn(pub, all[0], kept); !cmp.Equal(got, want) {
		t.Errorf("VServer group with %s down = %v, want %v\n%s", lost.Name, got, want, out)
	}
	if !strings.Contains(out, lost.InstanceID) {
		t.Errorf("the plan does not name the lost node's instance %s:\n%s", lost.InstanceID, out)
	}
	if w := e.proxy.writes(); len(w) != 0 {
		t.Errorf("capstan wrote to Docker while Swarm rescheduled: %v", w)
	}
	e.proxy.reset()
	if out, code := e.diffCode(); code != 0 {
		t.Errorf("the reconcile after: diff --detailed-exitcode = %d\n%s", code, out)
	}
	if w := e.proxy.writes(); len(w) != 0 {
		t.Errorf("the reconcile after wrote to Docker: %v", w)
	}

	restart()
	e.apply()
	if got := e.group("web"); !cmp.Equal(got, backendsOn(pub, all...)) {
		t.Errorf("VServer group with %s back = %v, want every node", lost.Name, got)
	}
}

// A rolling update with order: start-first moves web's two tasks across the three nodes
// while requests keep arriving through the SLB listener: every one is answered. (Each
// new task starts on the node without one; the old task drains — fails /healthz while
// still serving — until the SLB health check has taken it out.)
func TestRollingUpdateStartFirst(t *testing.T) {
	e := newEnv(t, "roll")
	const pub = 30104
	_, listen := e.setup(webService, "PUBPORT", fmt.Sprint(pub), "WEBREPLICAS", "2", "MSG", "v1")
	url := fmt.Sprintf("http://127.0.0.1:%d/license.txt", listen)

	running := e.tasks("web")
	waitFor(t, time.Minute, "both v1 tasks answer through the listener", func() (bool, string) {
		seen := map[string]bool{}
		for range 10 {
			if host, msg, err := get(url); err == nil && msg == "v1" {
				seen[host] = true
			}
		}
		ok := len(seen) == 2
		for host := range seen {
			ok = ok && running[host] == 1
		}
		return ok, fmt.Sprintf("answered by %v, tasks on %v", seen, running)
	})

	var (
		mu       sync.Mutex
		ok       int
		failures []string
		hosts    = map[string]bool{}
		messages = map[string]int{}
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			host, msg, err := get(url)
			mu.Lock()
			if err != nil {
				failures = append(failures, err.Error())
			} else {
				ok++
				hosts[host] = true
				messages[msg]++
			}
			mu.Unlock()
		}
	}()

	e.write(map[string]string{"compose.yaml": "services:\n" + webService},
		"PUBPORT", fmt.Sprint(pub), "WEBREPLICAS", "2", "MSG", "v2")
	e.proxy.reset()
	out := e.apply()
	if w := e.proxy.writes(); len(w) != 1 || !strings.HasPrefix(w[0], "POST /services/") || !strings.HasSuffix(w[0], "/update") {
		t.Errorf("Docker writes of the update: %v, want one service update", w)
	}
	if !strings.Contains(out, "Apply complete! 0 added, 1 changed, 0 destroyed.") {
		t.Errorf("the update applied:\n%s", out)
	}
	// Keep the requests coming until no v1 task runs any more (the last one drains
	// after Swarm counts the update complete), then a little longer.
	waitFor(t, time.Minute, "no v1 task running", func() (bool, string) {
		n := e.runningWith("web", "MESSAGE=v1")
		return n == 0, fmt.Sprintf("%d v1 tasks running", n)
	})
	mu.Lock()
	after := ok + 20
	mu.Unlock()
	waitFor(t, time.Minute, "20 more answers", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return ok >= after, fmt.Sprint(ok)
	})
	close(stop)
	<-done

	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the rolling update; first: %s", len(failures), ok+len(failures), failures[0])
	}
	if messages["v1"] == 0 || messages["v2"] == 0 {
		t.Errorf("answers by message %v, want both v1 and v2 during the update", messages)
	}
	if len(hosts) != 3 {
		t.Errorf("answers came from nodes %v; start-first with two tasks on three nodes should have used all three", hosts)
	}
	t.Logf("%d requests answered during the update, by message %v", ok, messages)
}

// runningWith counts service's tasks whose container actually runs (whatever Swarm's
// desired state) and whose environment holds kv.
func (e *env) runningWith(service, kv string) int {
	e.t.Helper()
	list, err := e.mgr.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", e.stack+"_"+service))})
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, task := range list {
		if task.Status.State != swarm.TaskStateRunning || task.Spec.ContainerSpec == nil {
			continue
		}
		for _, v := range task.Spec.ContainerSpec.Env {
			if v == kv {
				n++
			}
		}
	}
	return n
}

// Up reuses a healthy cluster; after a crash (an engine killed with its containers still
// running) it removes the leftovers and builds a new one; Down leaves nothing behind.
// It runs last: it rebuilds the shared cluster.
func TestUpAfterCrashAndDown(t *testing.T) {
	cluster.Require(t)
	dockertest.Image(t)
	c := cluster.Shared(t, dockertest.ImageRef)
	ctx := context.Background()

	again, err := cluster.Up(ctx, cluster.Options{Images: []string{dockertest.ImageRef}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.Nodes, again.Nodes); diff != "" {
		t.Errorf("Up on a running cluster did not reuse it (-before +after):\n%s", diff)
	}

	// A container on n2, then n2's engine killed: its shim and container live on.
	n2, _ := c.Node("n2")
	cli, err := c.Client(n2)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	created, err := cli.ContainerCreate(ctx, &container.Config{Image: dockertest.ImageRef},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	inspect, err := cli.ContainerInspect(ctx, created.ID)
	if err != nil || inspect.State.Pid == 0 {
		t.Fatalf("inspect the container: %v %+v", err, inspect.State)
	}
	orphan := inspect.State.Pid
	pid, err := os.ReadFile("/run/docker-n2.pid")
	if err != nil {
		t.Fatal(err)
	}
	var enginePID int
	fmt.Sscan(string(pid), &enginePID)
	if err := syscall.Kill(enginePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	rebuilt, err := cluster.Up(ctx, cluster.Options{Images: []string{dockertest.ImageRef}})
	if err != nil {
		t.Fatalf("Up after a crash: %v", err)
	}
	if rebuilt.Nodes[1].ID == n2.ID {
		t.Errorf("Up after a crash reused the broken cluster")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphan)); err == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", orphan)); strings.Contains(string(b), "testapp") {
			t.Errorf("the crashed engine's container (pid %d) still runs", orphan)
		}
	}
	mgr, err := rebuilt.Client(rebuilt.Manager())
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) != 3 {
		t.Fatalf("nodes of the rebuilt cluster: %v (%d)", err, len(nodes))
	}
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady || n.Spec.Labels["dev.capstan.ecs-instance-id"] == "" {
			t.Errorf("node %s: %s, labels %v", n.ID, n.Status.State, n.Spec.Labels)
		}
	}

	if err := cluster.Down(ctx, t.Logf); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if left := cluster.Leftovers(); len(left) > 0 {
		t.Errorf("left behind after Down: %v", left)
	}
	if err := cluster.Down(ctx, t.Logf); err != nil {
		t.Errorf("Down with nothing to remove: %v", err)
	}
}
