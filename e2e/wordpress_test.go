//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/daemon"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// The scenarios run in this order and each starts by pushing the state it needs, so a
// single one also runs alone (go test -tags e2e -run TestBadCommit ./e2e/).

// TestPushConverges: pushing the example makes the stack converge, the listener run,
// and a GET through the emulated SLB reach wordpress.
func TestPushConverges(t *testing.T) {
	s := setup(t)
	// A message no other scenario uses, so this push is an apply even after them.
	d := baseline()
	d.Message = "pushed"
	rev := s.push(t, "wordpress, as in examples/wordpress", d)
	st := s.waitConverged(t, rev, 3*time.Minute)

	svcs := s.services(t)
	for _, name := range []string{"wordpress", "mysql"} {
		svc, ok := svcs[name]
		if !ok {
			t.Fatalf("service %s_%s missing; have %v", s.stack, name, keys(svcs))
		}
		// mysql keeps the revision that last changed it when earlier scenarios ran.
		if got := svc.Spec.Labels[resource.LabelRevision]; got != rev && (name == "wordpress" || !strings.HasPrefix(got, "main@sha1:")) {
			t.Errorf("%s carries revision %q, want %q", name, got, rev)
		}
		if got := svc.Spec.Labels[resource.LabelManagedBy]; got != s.stack {
			t.Errorf("%s managed-by %q, want %q", name, got, s.stack)
		}
	}
	if len(st.Stacks) != 1 || st.Stacks[0].Name != s.stack {
		t.Errorf("status stacks %+v, want just %s", st.Stacks, s.stack)
	}
	if got := s.listenerStatus(s.listenerPort); got != "running" {
		t.Errorf("SLB listener %d is %q, want running", s.listenerPort, got)
	}
	body := s.waitServing(t, "pushed", time.Minute)
	if !strings.Contains(body, "capstan test application") {
		t.Errorf("GET /license.txt through the SLB answered %q, want the test image's license text", body)
	}

	// A commit that changes no file capstan reads is a new revision and no write: the
	// services keep their versions (and the revision label of the commit that last
	// changed them).
	s.emu.ResetCalls()
	d.Readme = "WordPress, deployed by capstan.\n"
	same := s.push(t, "add a README", d)
	s.waitConverged(t, same, time.Minute)
	for name, svc := range s.services(t) {
		if before := svcs[name]; svc.Version.Index != before.Version.Index {
			t.Errorf("a commit without changes wrote %s (version %d -> %d)", name, before.Version.Index, svc.Version.Index)
		}
	}
	if writes, _ := slbCalls(s.emu.Calls()); len(writes) != 0 {
		t.Errorf("a commit without changes wrote to the SLB: %v", writes)
	}
}

// TestScaleLeavesSLBAlone: the one-line scaling commit runs six tasks and changes
// nothing on the SLB, whose backends are nodes, not tasks.
//
// It scales mysql, not wordpress: wordpress publishes a fixed host-mode port, and Swarm
// places at most one task holding that port on a node — on this one-node swarm, five of
// six would stay pending. (With the routing mesh, the original example scales
// wordpress itself.)
func TestScaleLeavesSLBAlone(t *testing.T) {
	s := setup(t)
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
	s.waitServing(t, "first", time.Minute)

	s.emu.ResetCalls()
	d := baseline()
	d.MysqlScale = 6
	rev = s.push(t, "scale mysql to 6", d)
	s.waitConverged(t, rev, 3*time.Minute)
	if n := s.runningTasks(t, "mysql"); n != 6 {
		t.Errorf("mysql runs %d tasks, want 6", n)
	}
	if r := s.services(t)["mysql"].Spec.Mode.Replicated; r == nil || r.Replicas == nil || *r.Replicas != 6 {
		t.Errorf("mysql replicas %+v, want 6", r)
	}
	writes, reads := slbCalls(s.emu.Calls())
	if len(writes) != 0 {
		t.Errorf("scaling wrote to the SLB: %v", writes)
	}
	if reads == 0 {
		t.Errorf("no SLB reads while scaling: capstan did not observe the SLB at all")
	}
	t.Logf("SLB calls while scaling: %d reads, %d writes", reads, len(writes))
	s.waitServing(t, "first", time.Minute)
}

// TestRollingUpdateKeepsServing: an environment change rolls wordpress while a client
// keeps asking through the SLB; the failed requests are counted and reported.
//
// The goal is zero with update order start-first. Here it cannot be: start-first needs
// a second task holding the host-mode port next to the first one, which Swarm refuses
// on one node (the new task stays pending and the update never ends). So the update
// is stop-first, Swarm's default, and the window between the old task's exit and the
// new one's health check shows as failed requests.
func TestRollingUpdateKeepsServing(t *testing.T) {
	s := setup(t)
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
	s.waitServing(t, "first", time.Minute)

	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.getThroughSLB(c); err != nil {
				failed.Add(1)
				lastErr.Store(err.Error())
			} else {
				ok.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	d := baseline()
	d.Message = "second"
	start := time.Now()
	rev = s.push(t, "wordpress: new message", d)
	s.waitConverged(t, rev, 3*time.Minute)
	s.waitServing(t, "second", 2*time.Minute)
	close(stop)
	wg.Wait()
	t.Logf("rolling update (stop-first, one node): %d requests answered, %d failed, over %s; last failure: %v",
		ok.Load(), failed.Load(), time.Since(start).Round(100*time.Millisecond), lastErr.Load())
	if ok.Load() == 0 {
		t.Errorf("no request was answered during the update")
	}
	if u := s.services(t)["wordpress"].UpdateStatus; u != nil && u.State != swarm.UpdateStateCompleted {
		t.Errorf("wordpress update state %s (%s), want completed", u.State, u.Message)
	}
}

// TestDriftReverted: a hand-made `docker service scale` and `docker service update
// --env-add` are drift: reported in status, metrics and a notification, then put back.
func TestDriftReverted(t *testing.T) {
	s := setup(t)
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
	notesBefore := s.notes.count()

	// docker service scale <stack>_mysql=3
	s.updateService(t, "mysql", func(spec *swarm.ServiceSpec) {
		n := uint64(3)
		spec.Mode.Replicated.Replicas = &n
	})
	// docker service update --env-add HAND=made <stack>_wordpress
	s.updateService(t, "wordpress", func(spec *swarm.ServiceSpec) {
		spec.TaskTemplate.ContainerSpec.Env = append(spec.TaskTemplate.ContainerSpec.Env, "HAND=made")
	})

	// The drift shows while capstan puts it back; collect what status and metrics say.
	mysqlKey := resource.ServiceKey(s.stack + "_mysql").String()
	wordpressKey := resource.ServiceKey(s.stack + "_wordpress").String()
	statusDrift := map[string]bool{}
	var metricDrift float64
	s.waitFor(t, 3*time.Minute, "drift reverted", func() (bool, string) {
		st := s.dmn.status(t)
		for _, d := range st.Drift {
			statusDrift[d.Key] = true
		}
		for _, h := range st.History {
			if h.Drift > 0 && h.Revision == rev {
				statusDrift["history"] = true
			}
		}
		m := s.dmn.metrics(t, "capstan_drift_objects")
		metricDrift = max(metricDrift, sum(m, `stack="`+s.stack+`"`))
		svcs := s.services(t)
		replicas := svcs["mysql"].Spec.Mode.Replicated.Replicas
		env := svcs["wordpress"].Spec.TaskTemplate.ContainerSpec.Env
		back := replicas != nil && *replicas == 1 && !slices.Contains(env, "HAND=made")
		ok, detail := converged(st, rev)
		return back && ok && len(st.Drift) == 0 && statusDrift[mysqlKey] && statusDrift[wordpressKey],
			fmt.Sprintf("mysql replicas %v, wordpress env %v, drift seen %v, %s", *replicas, env, keys(statusDrift), detail)
	})
	if metricDrift < 1 {
		t.Errorf("capstan_drift_objects{stack=%q} never went above 0 while the drift lasted", s.stack)
	}
	s.waitFor(t, time.Minute, "a drift notification", func() (bool, string) {
		var seen []string
		for _, ev := range s.notes.since(notesBefore) {
			if ev.Kind != daemon.EventDrift {
				continue
			}
			for _, d := range ev.Drift {
				seen = append(seen, d.Key)
			}
		}
		return slices.Contains(seen, mysqlKey) && slices.Contains(seen, wordpressKey), fmt.Sprintf("drift notified for %v", seen)
	})
	if n := s.runningTasks(t, "mysql"); n != 1 {
		t.Errorf("mysql runs %d tasks after the revert, want 1", n)
	}
	s.waitServing(t, "first", time.Minute)
}

// TestBadCommit: an invalid compose file applies nothing, the error is in status, the
// previous revision keeps serving; the next good commit applies.
func TestBadCommit(t *testing.T) {
	s := setup(t)
	good := s.push(t, "wordpress", baseline())
	s.waitConverged(t, good, 3*time.Minute)
	before := s.services(t)

	bad := baseline()
	bad.Broken = true
	bad.Message = "broken"
	badRev := s.push(t, "mysql: a key compose does not know", bad)
	var st daemon.Status
	s.waitFor(t, time.Minute, "the bad revision reported", func() (bool, string) {
		st = s.dmn.status(t)
		return st.SourceRevision == badRev && st.LastError != nil,
			fmt.Sprintf("source revision %s, phase %s, last error %+v", st.SourceRevision, st.Phase, st.LastError)
	})
	if st.Phase != daemon.PhaseStalled || st.LastError.Class != daemon.Stalled {
		t.Errorf("phase %s, error class %s; want Stalled", st.Phase, st.LastError.Class)
	}
	for _, want := range []string{"docker-compose.yml", "scale_typo"} {
		if !strings.Contains(st.LastError.Message, want) {
			t.Errorf("status error lacks %q:\n%s", want, st.LastError.Message)
		}
	}
	if st.Revision != good {
		t.Errorf("status revision %s after a bad commit, want the last good one %s", st.Revision, good)
	}
	after := s.services(t)
	for name, svc := range before {
		if after[name].Version.Index != svc.Version.Index {
			t.Errorf("service %s was written after the bad commit (version %d -> %d)", name, svc.Version.Index, after[name].Version.Index)
		}
	}
	s.waitServing(t, "first", 30*time.Second)

	fixed := baseline()
	fixed.Message = "fixed"
	rev := s.push(t, "mysql: fix the key", fixed)
	s.waitConverged(t, rev, 3*time.Minute)
	s.waitServing(t, "fixed", 2*time.Minute)
	if st := s.dmn.status(t); st.LastError != nil {
		t.Errorf("last error still set after the good commit: %+v", st.LastError)
	}
}

// TestGitServerDown: the Git server goes away for a while; capstan reports a
// transient error, keeps what is applied serving, and applies the commit pushed during
// the outage once the server is back, by itself.
func TestGitServerDown(t *testing.T) {
	s := setup(t)
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)

	outage := envDuration(t, "CAPSTAN_E2E_GIT_OUTAGE", 20*time.Second)
	s.git.down()
	downSince := time.Now()
	defer func() {
		if err := s.git.up(); err != nil {
			t.Errorf("git relay back up: %v", err)
		}
	}()
	s.waitFor(t, time.Minute, "the outage reported", func() (bool, string) {
		st := s.dmn.status(t)
		return st.LastError != nil && st.LastError.Class == daemon.Transient,
			fmt.Sprintf("phase %s, last error %+v", st.Phase, st.LastError)
	})
	// A commit lands while capstan cannot see it.
	d := baseline()
	d.Message = "during-outage"
	rev = s.push(t, "wordpress: pushed while capstan's Git server is down", d)
	s.waitServing(t, "first", 30*time.Second)
	time.Sleep(time.Until(downSince.Add(outage)))
	if err := s.git.up(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	s.waitConverged(t, rev, 3*time.Minute)
	s.waitServing(t, "during-outage", 2*time.Minute)
	t.Logf("Git server down for %s; capstan applied the commit pushed meanwhile %s after it came back",
		outage, time.Since(up).Round(100*time.Millisecond))
}

// TestSLBThrottlingStorm: every SLB call is throttled for a while during an apply that
// needs SLB writes; capstan backs off, retries and converges.
func TestSLBThrottlingStorm(t *testing.T) {
	s := setup(t)
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
	s.emu.ResetCalls()

	// Ten throttled calls in a row outlast the sink's eight tries of one call, so a
	// reconcile fails and the loop backs off too; three more hit the listener write
	// itself, which the sink retries after reading the listener again.
	for _, f := range []slbemu.Fault{
		{Code: "Throttling", Count: 10},
		{Action: "SetLoadBalancerHTTPListenerAttribute", Code: "Throttling", Count: 3},
	} {
		if err := s.emu.InjectFault(f); err != nil {
			t.Fatal(err)
		}
	}
	defer s.emu.ClearFaults()
	d := baseline()
	d.Scheduler = "rr"
	rev = s.push(t, "route: round robin", d)
	s.waitConverged(t, rev, 4*time.Minute)
	var throttled, writesThrottled int
	for _, c := range s.emu.Calls() {
		if c.Code == "Throttling" {
			throttled++
			if c.Write {
				writesThrottled++
			}
		}
	}
	if throttled < 13 || writesThrottled == 0 {
		t.Errorf("%d calls throttled, %d of them writes: the storm missed the apply", throttled, writesThrottled)
	}
	attrs := s.listenerAttributes(s.listenerPort)
	if attrs["Scheduler"] != "rr" {
		t.Errorf("listener scheduler %q after the storm, want rr", attrs["Scheduler"])
	}
	if got := s.listenerStatus(s.listenerPort); got != "running" {
		t.Errorf("listener is %q after the storm, want running", got)
	}
	writes, reads := slbCalls(s.emu.Calls())
	t.Logf("throttling storm: %d calls throttled; %d reads, %d writes in all", throttled, reads, len(writes))
	s.waitServing(t, "first", time.Minute)

	// Back to the baseline, without faults.
	rev = s.push(t, "route: back to wrr", baseline())
	s.waitConverged(t, rev, 2*time.Minute)
}

// TestEngineRestartDuringApply: dockerd stops and starts again right after capstan's
// first write of an apply (every container on the machine stops with it). capstan
// reports the failure as transient, retries by itself and converges on the commit: the
// services as committed, their tasks running, the route serving the new answer.
func TestEngineRestartDuringApply(t *testing.T) {
	if os.Getenv("CAPSTAN_E2E_RESTART_DOCKERD") != "1" {
		t.Skip("restarts this machine's dockerd, stopping every container on it: set CAPSTAN_E2E_RESTART_DOCKERD=1 to run it (.ci/run does)")
	}
	s := setup(t)
	if s.docker == nil {
		t.Skip("the engine is not on a Unix socket: the suite cannot see capstan's first write")
	}
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
	s.waitServing(t, "first", time.Minute)
	before := s.dmn.metrics(t, "capstan_reconciles_total")

	d := baseline()
	d.Message = "after-restart"
	d.MysqlRound = 7
	rev = s.push(t, "wordpress and mysql: change both during an engine restart", d)
	pushed := time.Now()
	s.webhook(t)
	s.waitFor(t, time.Minute, "capstan's first write of the apply", func() (bool, string) {
		for _, c := range s.docker.between(pushed, time.Now().Add(time.Second)) {
			if c.method == http.MethodPost && strings.HasPrefix(c.path, "/services/") {
				return true, ""
			}
		}
		return false, "no service write yet"
	})
	took := restartEngine(t, s.cli)
	back := time.Now()
	t.Logf("dockerd restarted in %s", took.Round(100*time.Millisecond))

	st := s.waitConverged(t, rev, 5*time.Minute)
	s.waitServing(t, "after-restart", 3*time.Minute)
	t.Logf("converged %s after the engine was back", time.Since(back).Round(100*time.Millisecond))

	after := s.dmn.metrics(t, "capstan_reconciles_total")
	failed := sum(after, `result="transient"`) - sum(before, `result="transient"`)
	if failed == 0 {
		t.Errorf("no reconcile failed as transient across the restart: the restart missed the apply (metrics %v)", after)
	}
	svcs := s.services(t)
	if len(svcs) != 2 {
		t.Errorf("services after the restart: %v, want the stack's two", keys(svcs))
	}
	for _, name := range []string{"wordpress", "mysql"} {
		env := svcs[name].Spec.TaskTemplate.ContainerSpec.Env
		want := map[string]string{"wordpress": "MESSAGE=after-restart", "mysql": "ROUND=7"}[name]
		if !slices.Contains(env, want) {
			t.Errorf("%s env %v after the restart, want %s", name, env, want)
		}
	}
	// Right after a restart the manager still lists the tasks it knew as running until
	// the node reports them gone, so the tasks are waited for, not counted once.
	s.waitFor(t, 2*time.Minute, "every service running a task again", func() (bool, string) {
		w, m := s.runningTasks(t, "wordpress"), s.runningTasks(t, "mysql")
		return w >= 1 && m >= 1, fmt.Sprintf("running tasks: wordpress %d, mysql %d", w, m)
	})
	if st.LastError != nil {
		t.Errorf("status still shows an error after converging: %+v", st.LastError)
	}
	if got := s.listenerStatus(s.listenerPort); got != "running" {
		t.Errorf("listener is %q after the restart, want running", got)
	}
	// Back to the baseline for the tests after this one.
	rev = s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
}

// TestRemoveStack: a commit that removes the stack deletes its services, its network and
// its listener — after the mass-delete guard, which refuses it until capstan runs with
// --allow-mass-delete — while a service and a listener capstan does not own stay.
func TestRemoveStack(t *testing.T) {
	s := setup(t)
	rev := s.push(t, "wordpress", baseline())
	s.waitConverged(t, rev, 3*time.Minute)

	extra := s.unownedService(t)
	extraPort := s.unownedListener(t)

	gone := s.push(t, "remove wordpress", desired{Removed: true})
	s.waitFor(t, time.Minute, "the mass-delete guard refuses the removal", func() (bool, string) {
		st := s.dmn.status(t)
		return st.SourceRevision == gone && st.LastError != nil && strings.Contains(st.LastError.Message, "allow-mass-delete"),
			fmt.Sprintf("source revision %s, last error %+v", st.SourceRevision, st.LastError)
	})
	if svcs := s.services(t); len(svcs) != 3 {
		t.Errorf("the refused removal changed the services: %v", keys(svcs))
	}

	if err := s.dmn.stop(); err != nil {
		t.Fatal(err)
	}
	var err error
	// A fresh process has not seen the route, so nothing names the load balancer whose
	// listener must go: --slb-region makes capstan search the region for listeners it
	// owns (docs/routes.md).
	if s.dmn, err = s.startDaemon("--allow-mass-delete", "--slb-region", lbRegion); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, 3*time.Minute, "the stack removed", func() (bool, string) {
		st := s.dmn.status(t)
		svcs := s.services(t)
		nets := s.networks(t)
		listener := s.listenerStatus(s.listenerPort)
		_, hasExtra := svcs["extra"]
		return st.Revision == gone && len(svcs) == 1 && hasExtra && len(nets) == 0 && listener == "",
			fmt.Sprintf("revision %s, services %v, networks %v, listener %q", st.Revision, keys(svcs), nets, listener)
	})
	if got := s.services(t)["extra"]; got.Version.Index != extra.Version.Index {
		t.Errorf("the unowned service was written (version %d -> %d)", extra.Version.Index, got.Version.Index)
	}
	if got := s.listenerStatus(extraPort); got != "stopped" {
		t.Errorf("the unowned listener on port %d is %q, want it still there (stopped)", extraPort, got)
	}
	for _, g := range s.emu.Snapshot().VServerGroups {
		if strings.Contains(g.Name, s.stack) {
			t.Errorf("VServer group %s (%s) left behind", g.ID, g.Name)
		}
	}
	// Put the baseline back for tests that run after this one.
	rev = s.push(t, "wordpress again", baseline())
	s.waitConverged(t, rev, 3*time.Minute)
}

// updateService changes a live service by hand, as the docker CLI would, retrying
// when capstan updated it in between.
func (s *suite) updateService(t testing.TB, name string, edit func(*swarm.ServiceSpec)) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		svc, _, err := s.cli.ServiceInspectWithRaw(ctx(t), s.stack+"_"+name, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatalf("inspect %s: %v", name, err)
		}
		spec := svc.Spec
		edit(&spec)
		_, err = s.cli.ServiceUpdate(ctx(t), svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
		if err == nil {
			return
		}
		if attempt == 5 {
			t.Fatalf("update %s by hand: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// slbCalls splits the emulator's call log into writes (as "Action Code") and a count of
// reads.
func slbCalls(calls []slbemu.Call) (writes []string, reads int) {
	for _, c := range calls {
		if c.Write {
			writes = append(writes, strings.TrimSpace(c.Action+" "+c.Code))
		} else {
			reads++
		}
	}
	return writes, reads
}

func (s *suite) listenerAttributes(port int) map[string]string {
	for _, lb := range s.emu.Snapshot().LoadBalancers {
		for _, l := range lb.Listeners {
			if lb.ID == lbID && l.Port == port {
				return l.Attributes
			}
		}
	}
	return nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
