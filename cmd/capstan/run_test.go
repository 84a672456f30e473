package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/daemon"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

// runStack is a one-stack source: web with REPLICAS replicas.
func runStack(replicas string) map[string]string {
	return map[string]string{
		"stacks/app/stack.yaml":   stackDocWith(true, true),
		"stacks/app/compose.yaml": strings.Replace(twoServices, "REPLICAS", replicas, 1),
	}
}

func TestRunOnceAppliesAStack(t *testing.T) {
	e := newSwarmEnv(t, "once")
	e.write(runStack("1"))
	out, errOut, code := runCapstan(t, "run", "--once", "--instance", e.stack, "--source", e.dir)
	if code != 0 {
		t.Fatalf("run --once exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "Reconciled local@sha256:") {
		t.Errorf("run --once output lacks the revision it reconciled:\n%s", out)
	}
	for _, name := range []string{"web", "api"} {
		svc := e.service(name)
		if svc.Spec.Labels[resource.LabelManagedBy] != e.stack || !strings.HasPrefix(svc.Spec.Labels[resource.LabelRevision], "local@sha256:") {
			t.Errorf("%s labels %v: want managed-by %s and the local revision", name, svc.Spec.Labels, e.stack)
		}
	}
	// The same revision again: nothing to do, no writes.
	out, errOut, code = runCapstan(t, "run", "--once", "--instance", e.stack, "--source", e.dir)
	if code != 0 || strings.Contains(out, "created") || strings.Contains(out, "updated") {
		t.Errorf("second run --once exited %d and printed\n%s\n%s", code, out, errOut)
	}
}

func TestRunOnceStallsOnBadManifests(t *testing.T) {
	e := newSwarmEnv(t, "oncebad")
	e.write(map[string]string{
		"stacks/STACK/stack.yaml":   stackDocWith(true, true),
		"stacks/STACK/compose.yaml": "services:\n  web:\n    image: capstan-testapp:dev\n    replicas_typo: 2\n",
	})
	out, errOut, code := runCapstan(t, "run", "--once", "--instance", e.stack, "--source", e.dir, "--log-format", "json")
	if code != 1 {
		t.Fatalf("run --once on a bad source exited %d, want 1\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"stalled:", "does not validate", "compose.yaml:4:", "replicas_typo"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if names := e.serviceNames(); len(names) != 0 {
		t.Errorf("a bad source applied %v", names)
	}
}

// daemonProc is one `capstan run` running in-process.
type daemonProc struct {
	t      testing.TB
	url    string
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// listenMu serialises daemon starts: listenHook is one package variable.
var listenMu sync.Mutex

// startDaemon runs capstan run with args plus --listen 127.0.0.1:0 until the test ends
// (or stop), and returns once it listens.
func startDaemon(t testing.TB, args ...string) *daemonProc {
	t.Helper()
	listenMu.Lock()
	addrc := make(chan net.Addr, 1)
	listenHook = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancel(context.Background())
	p := &daemonProc{t: t, cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	go func() {
		p.done <- run(ctx, append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...), io.Discard, p.stderr)
	}()
	select {
	case a := <-addrc:
		p.url = "http://" + a.String()
	case code := <-p.done:
		listenHook = nil
		listenMu.Unlock()
		t.Fatalf("capstan run exited %d before listening:\n%s", code, p.stderr)
	}
	listenHook = nil
	listenMu.Unlock()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop sends the equivalent of SIGTERM and waits for a clean exit.
func (p *daemonProc) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	if code := <-p.done; code != 0 {
		p.t.Errorf("capstan run exited %d after SIGTERM:\n%s", code, p.stderr)
	}
}

func (p *daemonProc) get(path string) (int, []byte) {
	p.t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *daemonProc) status() daemon.Status {
	p.t.Helper()
	code, b := p.get("/api/v1/status")
	var st daemon.Status
	if err := json.Unmarshal(b, &st); code != http.StatusOK || err != nil {
		p.t.Fatalf("/api/v1/status: %d %v\n%s", code, err, b)
	}
	return st
}

// waitFor polls cond (a wait for the daemon, not a timing assertion) and fails with what
// it last saw when the generous deadline passes.
func (p *daemonProc) waitFor(what string, cond func(daemon.Status) bool) daemon.Status {
	p.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := p.status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(st, "", "  ")
			p.t.Fatalf("gave up waiting for %s; status:\n%s\nlog:\n%s", what, b, p.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func removeLease(t testing.TB, cli *client.Client, instance string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cli.ConfigRemove(ctx, swarmsink.LeaseName(instance)); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove lease: %v", err)
		}
	})
}

func synced(stack string, desired uint64) func(daemon.Status) bool {
	return func(st daemon.Status) bool {
		if st.Phase != daemon.PhaseReady || len(st.Stacks) != 1 || st.Stacks[0].Name != stack || st.Stacks[0].Sync != daemon.Synced {
			return false
		}
		for _, s := range st.Stacks[0].Services {
			if s.Name == stack+"_web" {
				return s.DesiredTasks == desired && s.RunningTasks == desired && s.Health == "Healthy"
			}
		}
		return false
	}
}

func TestRunServesTheAPI(t *testing.T) {
	e := newSwarmEnv(t, "daemon")
	removeLease(t, e.cli, e.stack)
	e.write(runStack("1"))
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startDaemon(t, "--instance", e.stack, "--source", e.dir, "--interval", "1h", "--watch-interval", "200ms", "--api-token-file", token)

	st := p.waitFor("the first reconcile", synced(e.stack, 1))
	if st.Role != daemon.Leader || st.Revision == "" || st.Revision != st.Stacks[0].Revision {
		t.Errorf("after the first reconcile: role %q, revision %q, stack revision %q", st.Role, st.Revision, st.Stacks[0].Revision)
	}
	if code, body := p.get("/readyz"); code != http.StatusOK || !strings.Contains(string(body), `"role": "leader"`) {
		t.Errorf("/readyz = %d %s", code, body)
	}

	// The API: auth, unknown routes.
	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		{"POST", "/api/v1/sync", "", http.StatusUnauthorized},
		{"POST", "/api/v1/sync", "Bearer wrong", http.StatusUnauthorized},
		{"POST", "/api/v1/sync", "Bearer t0ken", http.StatusAccepted},
		{"GET", "/api/v2/status", "", http.StatusNotFound},
		{"POST", "/webhook/github", "", http.StatusNotFound}, // no secret configured
	} {
		req, _ := http.NewRequest(tc.method, p.url+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s (%q) = %d, want %d", tc.method, tc.path, tc.auth, resp.StatusCode, tc.want)
		}
	}
	p.waitFor("the synced reconcile in the history", func(st daemon.Status) bool {
		return len(st.History) >= 2 && st.History[0].Trigger == "sync"
	})

	// A file change is picked up without a webhook or the interval.
	e.write(runStack("2"))
	st = p.waitFor("the scale to 2 replicas", synced(e.stack, 2))
	if st.History[0].Trigger != "file" || st.History[0].Applied != 1 || st.LastPlan == nil || st.LastPlan.Changes[0].Action != "scale" {
		t.Errorf("the file change's reconcile: history %+v, plan %+v", st.History[0], st.LastPlan)
	}

	code, metrics := p.get("/metrics")
	for _, want := range []string{
		`capstan_reconciles_total{result="success"}`,
		`capstan_changes_total{action="scale",outcome="applied"} 1`,
		`capstan_drift_objects{stack="` + e.stack + `"} 0`,
		`capstan_last_applied_revision_info{revision="` + st.Revision + `"} 1`,
		`capstan_api_requests_total{api="docker",method="GET"}`,
		`capstan_api_requests_total{api="docker",method="POST"}`,
		`capstan_source_poll_duration_seconds_count`,
		`capstan_leader 1`,
	} {
		if code != http.StatusOK || !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// capstan status renders the same status as a table.
	out, errOut, exit := runCapstan(t, "status", "--server", p.url)
	if exit != 0 {
		t.Fatalf("capstan status exited %d: %s", exit, errOut)
	}
	for _, want := range []string{"Phase:", "Ready", e.stack, "Synced", "Healthy", e.stack + "_web", "2/2", st.Revision} {
		if !strings.Contains(out, want) {
			t.Errorf("capstan status lacks %q:\n%s", want, out)
		}
	}
	if _, _, exit := runCapstan(t, "healthcheck", "--url", p.url+"/healthz"); exit != 0 {
		t.Errorf("capstan healthcheck against a live daemon exited %d", exit)
	}

	// The status page, as a browser renders it.
	dom := dumpDOM(t, p.url+"/")
	for _, want := range []string{`id="stack-` + e.stack + `"`, e.stack + "_web", e.stack + "_api", "2/2", "Synced", "Recent history"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered status page lacks %q", want)
		}
	}

	p.stop()
	if _, _, exit := runCapstan(t, "healthcheck", "--url", p.url+"/healthz"); exit == 0 {
		t.Error("capstan healthcheck passes against a stopped daemon")
	}
}

// chromiumEnv, set to 1, turns a missing Chromium from a skip into a failure (.ci/run).
const chromiumEnv = "CAPSTAN_REQUIRE_CHROMIUM"

// dumpDOM renders url in headless Chromium and returns the DOM after layout.
func dumpDOM(t *testing.T, url string) string {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv(chromiumEnv) == "1" {
			t.Fatalf("no chromium on PATH (%s=1 makes this a failure; apt-get install chromium)", chromiumEnv)
		}
		t.Logf("skipping the browser check: no chromium on PATH (apt-get install chromium; %s=1 makes this a failure)", chromiumEnv)
		return ""
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--dump-dom", url)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, errb.String())
	}
	if !strings.Contains(out.String(), "</html>") {
		t.Fatalf("chromium rendered no document:\n%s\n%s", out.String(), errb.String())
	}
	return out.String()
}

// TestRunLeaderElection runs two replicas of one installation against the swarm: one
// leads and applies, the other only observes; when the leader stops, the other takes
// over and applies the next change.
func TestRunLeaderElection(t *testing.T) {
	e := newSwarmEnv(t, "ha")
	removeLease(t, e.cli, e.stack)
	e.write(runStack("1"))
	args := []string{"--instance", e.stack, "--source", e.dir, "--watch-interval", "200ms", "--lease-duration", "3s"}
	a := startDaemon(t, append(args, "--interval", "1h")...)
	a.waitFor("a to lead and apply", func(st daemon.Status) bool { return st.Role == daemon.Leader && synced(e.stack, 1)(st) })
	// b observes every 2 s, so its status follows a's rollouts.
	b := startDaemon(t, append(args, "--interval", "2s")...)
	stB := b.waitFor("b to observe", func(st daemon.Status) bool { return st.Ready && st.Phase == daemon.PhaseReady })
	if stB.Role != daemon.Follower || stB.Leader == "" || stB.Leader == stB.Holder {
		t.Fatalf("b: role %q, leader %q (itself %q); want a follower that names a", stB.Role, stB.Leader, stB.Holder)
	}
	if code, body := b.get("/readyz"); code != http.StatusOK || !strings.Contains(string(body), `"role": "follower"`) {
		t.Errorf("b /readyz = %d %s, want ready as follower", code, body)
	}

	// A change while both run: a applies it, b sees it without writing.
	e.write(runStack("2"))
	a.waitFor("a to scale to 2", synced(e.stack, 2))
	b.waitFor("b to see 2 replicas", synced(e.stack, 2))
	for _, h := range b.status().History {
		if h.Role != daemon.Follower || h.Applied != 0 {
			t.Errorf("b applied as %s: %+v", h.Role, h)
		}
	}

	// a goes away (SIGTERM: it releases the lease); b takes over and applies the next change.
	a.stop()
	b.waitFor("b to lead", func(st daemon.Status) bool { return st.Role == daemon.Leader })
	e.write(runStack("3"))
	st := b.waitFor("b to scale to 3", synced(e.stack, 3))
	applied := 0
	for _, h := range st.History {
		if h.Role == daemon.Leader {
			applied += h.Applied
		}
	}
	if applied != 1 {
		t.Errorf("b applied %d change(s) as leader, want the one scale: %+v", applied, st.History)
	}
}

// faultProxy forwards to the real engine until it is switched off; then it answers 503,
// as an engine restarting behind a proxy or socket does.
type faultProxy struct {
	srv  *httptest.Server
	down atomic.Bool
	// onWrite, when set before traffic starts, sees every request that is not a read.
	onWrite func(*http.Request)
}

func newFaultProxy(t testing.TB) *faultProxy {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	if !strings.HasPrefix(host, "unix://") {
		t.Skipf("skipping: the fault proxy speaks to a unix socket engine, not %s", host)
	}
	path := strings.TrimPrefix(host, "unix://")
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: "docker"})
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	p := &faultProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "engine restarting", http.StatusServiceUnavailable)
			return
		}
		if p.onWrite != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			p.onWrite(r)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultProxy) host() string { return "tcp://" + p.srv.Listener.Addr().String() }

// TestRunRecoversFromAnEngineOutage: the engine goes away mid-loop; the loop reports a
// transient error, backs off and recovers by itself once the engine is back.
func TestRunRecoversFromAnEngineOutage(t *testing.T) {
	e := newSwarmEnv(t, "outage")
	removeLease(t, e.cli, e.stack)
	e.write(runStack("1"))
	proxy := newFaultProxy(t)
	p := startDaemon(t, "--docker-host", proxy.host(), "--instance", e.stack, "--source", e.dir,
		"--interval", "1h", "--watch-interval", "200ms", "--leader-elect=false")
	p.waitFor("the first reconcile", synced(e.stack, 1))

	proxy.down.Store(true)
	e.write(runStack("2"))
	st := p.waitFor("the failure to show", func(st daemon.Status) bool { return st.Phase == daemon.PhaseRetrying })
	if st.LastError == nil || st.LastError.Class != daemon.Transient || !strings.Contains(st.LastError.Message, "observe swarm") {
		t.Errorf("during the outage: last error %+v, want a transient observe failure", st.LastError)
	}
	if !strings.Contains(st.Message, "retrying in") {
		t.Errorf("during the outage the status says %q, want when it retries", st.Message)
	}
	proxy.down.Store(false)
	st = p.waitFor("the recovery", synced(e.stack, 2))
	if st.LastError != nil || st.History[0].Trigger != "retry" {
		t.Errorf("after the outage: last error %+v, last trigger %q (want a retry that succeeded)", st.LastError, st.History[0].Trigger)
	}
	code, metrics := p.get("/metrics")
	if code != http.StatusOK || !bytes.Contains(metrics, []byte(`capstan_api_errors_total{api="docker"}`)) || !bytes.Contains(metrics, []byte(`capstan_reconciles_total{result="transient"}`)) {
		t.Errorf("/metrics does not count the outage")
	}
}

// TestRunRoutesThroughSLB: the daemon reconciles routes through the SLB emulator, and
// status shows them synced with their service's health.
func TestRunRoutesThroughSLB(t *testing.T) {
	e := newSwarmEnv(t, "runslb")
	removeLease(t, e.cli, e.stack)
	labelNode(t, e)
	hostPort, listenPort := freePort(t), freePort(t)
	emu := slbemu.New(slbemu.Config{
		Credentials:         []slbemu.Credential{{AccessKeyID: slbTestAK, AccessKeySecret: slbTestSecret}},
		LoadBalancers:       []slbemu.LoadBalancer{{ID: slbTestLB, Region: slbTestRegion}},
		Forward:             true,
		HealthCheckInterval: 100 * time.Millisecond,
		HealthCheckTimeout:  time.Second,
	})
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	t.Setenv(envAccessKeyID, slbTestAK)
	t.Setenv(envAccessKeySecret, slbTestSecret)
	e.write(map[string]string{
		"stack.yaml":   stackDocWith(true, true),
		"compose.yaml": strings.ReplaceAll(routedCompose, "HOSTPORT", fmt.Sprint(hostPort)),
		"route.yaml":   strings.NewReplacer("LISTENPORT", fmt.Sprint(listenPort), "APIPORT", fmt.Sprint(freePort(t))).Replace(routeDoc),
	})
	p := startDaemon(t, "--instance", e.stack, "--source", e.dir, "--interval", "1h", "--slb-endpoint", emu.URL(), "--leader-elect=false")
	st := p.waitFor("the routes to sync", func(st daemon.Status) bool {
		if st.Phase != daemon.PhaseReady || len(st.Routes) != 2 {
			return false
		}
		for _, r := range st.Routes {
			if r.Sync != daemon.Synced || !r.Reconciled {
				return false
			}
		}
		return true
	})
	web := st.Routes[1]
	if web.Name != "web" || web.Service != e.stack+"_web" || web.Listener != fmt.Sprintf("http:%d", listenPort) {
		t.Errorf("route status %+v", web)
	}
	if body := getEventually(t, fmt.Sprintf("http://127.0.0.1:%d/license.txt", listenPort)); !strings.Contains(body, "through the SLB") {
		t.Errorf("GET through the SLB answered %q", body)
	}
	_, metrics := p.get("/metrics")
	if !bytes.Contains(metrics, []byte(`capstan_api_requests_total{api="slb",method="call"}`)) {
		t.Error("/metrics does not count SLB calls")
	}

	// A reconcile with nothing to do writes nothing to SLB: touch a file.
	emu.ResetCalls()
	n := len(st.History)
	e.write(map[string]string{"stack.yaml": stackDocWith(true, true)})
	st = p.waitFor("the file-triggered reconcile", func(st daemon.Status) bool {
		return len(st.History) > n && st.History[0].Trigger == "file" && st.Phase == daemon.PhaseReady
	})
	if w := emu.CountCalls(true); w != 0 || st.History[0].Applied != 0 {
		t.Errorf("a reconcile of an unchanged source wrote to SLB %d times and applied %d changes", w, st.History[0].Applied)
	}
}

// notifications is an httptest receiver on 127.0.0.1 collecting generic events.
func notifications(t *testing.T) (string, <-chan daemon.Event) {
	t.Helper()
	events := make(chan daemon.Event, 32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev daemon.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			t.Errorf("notification body: %v", err)
		}
		events <- ev
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hook", events
}

func nextEvent(t *testing.T, events <-chan daemon.Event, kind daemon.EventKind) daemon.Event {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case ev := <-events:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s notification", kind)
		}
	}
}

// TestRunReportsDriftAndFailures: a hand edit is reported (status, metrics, a
// notification) without being reverted when selfHeal is off; a bad commit stalls the loop
// with the last good revision kept and a notification; the fix recovers, reverts the
// drift (selfHeal on) and says so.
func TestRunReportsDriftAndFailures(t *testing.T) {
	e := newSwarmEnv(t, "drift")
	removeLease(t, e.cli, e.stack)
	files := runStack("1")
	files["stacks/app/stack.yaml"] = stackDocWith(true, false)
	e.write(files)
	url, events := notifications(t)
	p := startDaemon(t, "--instance", e.stack, "--source", e.dir, "--interval", "2s", "--watch-interval", "200ms",
		"--notify-url", url, "--leader-elect=false")
	good := p.waitFor("the first reconcile", synced(e.stack, 1)).Revision

	// A hand edit: scale web to 2 behind capstan's back.
	svc := e.service("web")
	two := uint64(2)
	svc.Spec.Mode.Replicated.Replicas = &two
	if _, err := e.cli.ServiceUpdate(t.Context(), svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := p.waitFor("the drift", func(st daemon.Status) bool { return len(st.Drift) == 1 })
	d := st.Drift[0]
	if d.Key != "swarm/service/"+e.stack+"_web" || d.Reverted || len(d.Diff) != 1 || d.Diff[0].Path != "Mode.Replicated.Replicas" ||
		d.Diff[0].Before != "2" || d.Diff[0].After != "1" {
		t.Errorf("drift %+v, want web's replicas, live 2 against Git's 1, reported only", d)
	}
	if st.Stacks[0].Sync != daemon.OutOfSync {
		t.Errorf("stack with reported drift: %s, want OutOfSync", st.Stacks[0].Sync)
	}
	ev := nextEvent(t, events, daemon.EventDrift)
	if len(ev.Drift) != 1 || ev.Drift[0].Key != d.Key {
		t.Errorf("drift notification %+v", ev)
	}
	if _, m := p.get("/metrics"); !bytes.Contains(m, []byte(`capstan_drift_objects{stack="`+e.stack+`"} 1`)) {
		t.Error("/metrics does not count the drift")
	}

	// A bad commit: stalled, nothing applied, the last good revision stays.
	e.write(map[string]string{"stacks/app/compose.yaml": "services:\n  web:\n    image: capstan-testapp:dev\n    replicas_typo: 2\n"})
	st = p.waitFor("the stall", func(st daemon.Status) bool {
		return st.Phase == daemon.PhaseStalled && st.LastError != nil && strings.Contains(st.LastError.Message, "replicas_typo")
	})
	if st.Revision != good || st.SourceRevision == good || st.LastError == nil || !strings.Contains(st.LastError.Message, "replicas_typo") {
		t.Errorf("stalled: revision %q (want %q kept), source revision %q, error %+v", st.Revision, good, st.SourceRevision, st.LastError)
	}
	for {
		// A reconcile may have caught the file half-written (a notice of its own); the
		// one that counts names the bad key.
		ev := nextEvent(t, events, daemon.EventSyncFailed)
		if !strings.Contains(ev.Message, "replicas_typo") {
			continue
		}
		if ev.Class != daemon.Stalled {
			t.Errorf("failure notification %+v", ev)
		}
		break
	}
	if n := *e.service("web").Spec.Mode.Replicated.Replicas; n != 2 {
		t.Errorf("a bad commit changed web: %d replicas", n)
	}

	// The fix, with selfHeal on: recovered, and the drift reverted.
	files["stacks/app/stack.yaml"] = stackDocWith(true, true)
	e.write(files)
	p.waitFor("the recovery", synced(e.stack, 1))
	nextEvent(t, events, daemon.EventRecovered)
}

// TestRunReportsAServiceThatNeverRuns: a service whose tasks no node may run (a placement
// constraint nothing satisfies) looks like one still starting, so it is Progressing —
// until --progress-deadline has passed: then status, /metrics and a notification say
// Degraded and why. `capstan apply`, with nothing to change, warns about it.
func TestRunReportsAServiceThatNeverRuns(t *testing.T) {
	e := newSwarmEnv(t, "never")
	removeLease(t, e.cli, e.stack)
	e.write(map[string]string{
		"stacks/app/stack.yaml": stackDocWith(true, true),
		"stacks/app/compose.yaml": `services:
  web:
    image: capstan-testapp:dev
    deploy:
      placement:
        constraints: [node.labels.capstan-test-nowhere == true]
`,
	})
	url, events := notifications(t)
	p := startDaemon(t, "--instance", e.stack, "--source", e.dir, "--interval", "1s", "--timeout", "0",
		"--progress-deadline", "3s", "--notify-url", url, "--leader-elect=false")
	web := e.stack + "_web"
	health := func(st daemon.Status) (reconcile.Health, daemon.ServiceReport) {
		if len(st.Stacks) != 1 || len(st.Stacks[0].Services) != 1 {
			return "", daemon.ServiceReport{}
		}
		return st.Stacks[0].Health, st.Stacks[0].Services[0]
	}
	p.waitFor("the service created, its task pending", func(st daemon.Status) bool {
		h, svc := health(st)
		return h == reconcile.Progressing && svc.Name == web && svc.DesiredTasks == 1 && svc.RunningTasks == 0
	})
	st := p.waitFor("the progress deadline", func(st daemon.Status) bool {
		h, _ := health(st)
		return h == reconcile.Degraded
	})
	if _, svc := health(st); svc.Health != reconcile.Degraded || !strings.Contains(svc.Message, "0 of 1 tasks running for") {
		t.Errorf("service status %+v, want Degraded saying 0 of 1 tasks running", svc)
	}
	if ev := nextEvent(t, events, daemon.EventDegraded); ev.Stack != e.stack || !strings.Contains(ev.Message, web) {
		t.Errorf("degraded notification %+v, want stack %s naming %s", ev, e.stack, web)
	}
	if _, m := p.get("/metrics"); !bytes.Contains(m, []byte(`capstan_stack_health{health="Degraded",stack="`+e.stack+`"} 1`)) {
		t.Error("/metrics does not show the stack Degraded")
	}

	// The one-shot CLI has no clock to go by, but it does not hide the service either.
	p.stop()
	out, errOut, code := runCapstan(t, "apply", "--instance", e.stack, "--source", e.dir)
	if code != 0 || !strings.Contains(out, "No changes") {
		t.Fatalf("apply exited %d, want 0 and no changes:\n%s\n%s", code, out, errOut)
	}
	if want := "warning: service " + web + " is Progressing: 0 of 1 tasks running"; !strings.Contains(errOut, want) {
		t.Errorf("apply's stderr lacks %q:\n%s", want, errOut)
	}
}
