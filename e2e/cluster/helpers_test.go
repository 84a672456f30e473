package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/e2e/cluster"
	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// The tests share one cluster (cluster.Shared) and run the capstan binary against it, as
// an operator on the manager would. Each test uses its own stack name, also as its
// --instance, its own SLB emulator and published port, and leaves the cluster as it found
// it (nodes active, engines running, its stack removed).

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "capstan-cluster-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := cluster.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	slbAK     = "AKIDclustertest"
	slbSecret = "cluster-test-secret"
	slbRegion = "cn-hangzhou"
	slbLB     = "lb-capstancluster"
)

var (
	binDir string
	built  struct {
		once sync.Once
		path string
		err  error
	}
)

// capstanBinary builds cmd/capstan once per test run.
func capstanBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.path = filepath.Join(binDir, "capstan")
		out, err := exec.Command("go", "build", "-o", built.path, "github.com/capstan-dev/capstan/cmd/capstan").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build ./cmd/capstan: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// env is one test's stack on the shared cluster.
type env struct {
	t     *testing.T
	c     *cluster.Cluster
	mgr   *client.Client
	stack string
	dir   string
	emu   *slbemu.Server
	proxy *dockerProxy
}

func newEnv(t *testing.T, prefix string) *env {
	t.Helper()
	cluster.Require(t)
	dockertest.Image(t) // built on the host engine, then copied into every node
	c := cluster.Shared(t, dockertest.ImageRef)
	mgr, err := c.Client(c.Manager())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	e := &env{t: t, c: c, mgr: mgr, stack: dockertest.UniqueName(t, prefix), dir: t.TempDir()}
	dockertest.Cleanup(t, mgr, e.stack)

	e.emu = slbemu.New(slbemu.Config{
		Credentials:   []slbemu.Credential{{AccessKeyID: slbAK, AccessKeySecret: slbSecret}},
		LoadBalancers: []slbemu.LoadBalancer{{ID: slbLB, Region: slbRegion}},
		Forward:       true,
		// Backends are the nodes themselves: i-capstan-nodeN is 10.99.0.1N.
		BackendAddresses:    c.BackendAddresses(),
		HealthCheckInterval: 200 * time.Millisecond,
		HealthCheckTimeout:  time.Second,
	})
	if err := e.emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.emu.Close() })
	e.proxy = newDockerProxy(t, c.Manager())
	return e
}

// write writes the source files, replacing STACK, and the other placeholders given.
func (e *env) write(files map[string]string, replace ...string) {
	e.t.Helper()
	r := strings.NewReplacer(append([]string{"STACK", e.stack}, replace...)...)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(r.Replace(content)), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
}

// capstan runs the capstan binary with this test's instance, source, manager (through
// the counting proxy) and SLB emulator.
func (e *env) capstan(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args = append(args, "--instance", e.stack, "--source", e.dir,
		"--docker-host", "tcp://"+e.proxy.addr, "--slb-endpoint", e.emu.URL())
	cmd := exec.CommandContext(ctx, capstanBinary(e.t), args...)
	cmd.Env = append(os.Environ(),
		"ALIBABA_CLOUD_ACCESS_KEY_ID="+slbAK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET="+slbSecret, "DOCKER_HOST=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("capstan %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (e *env) apply() string {
	e.t.Helper()
	out, errOut, code := e.capstan("apply")
	if code != 0 {
		e.t.Fatalf("capstan apply exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	return out
}

// diffCode runs diff --detailed-exitcode and returns its output and exit code (0 no
// changes, 2 changes).
func (e *env) diffCode() (string, int) {
	e.t.Helper()
	out, errOut, code := e.capstan("diff", "--detailed-exitcode")
	if code != 0 && code != 2 {
		e.t.Fatalf("capstan diff exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	return out, code
}

// group returns the members of this test's VServer group for route, as instance → port.
func (e *env) group(route string) map[string]int {
	e.t.Helper()
	marker := resource.SLBMarker(e.stack, route)
	for _, g := range e.emu.Snapshot().VServerGroups {
		if g.Name == marker {
			m := map[string]int{}
			for _, b := range g.Backends {
				m[b.ServerID] = b.Port
			}
			return m
		}
	}
	e.t.Fatalf("no VServer group %s in the emulator", marker)
	return nil
}

// backendsOn returns a group map with every given node at port.
func backendsOn(port int, nodes ...cluster.Node) map[string]int {
	m := map[string]int{}
	for _, n := range nodes {
		m[n.InstanceID] = port
	}
	return m
}

// tasks returns the running tasks of service (desired and actual state running), by
// node ID.
func (e *env) tasks(service string) map[string]int {
	e.t.Helper()
	list, err := e.mgr.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", e.stack+"_"+service), filters.Arg("desired-state", "running"))})
	if err != nil {
		e.t.Fatal(err)
	}
	byNode := map[string]int{}
	for _, task := range list {
		if task.Status.State == swarm.TaskStateRunning {
			byNode[task.NodeID]++
		}
	}
	return byNode
}

// waitFor polls cond every 250ms until it holds, failing the test with what after
// timeout (a bound on a hang, not a timing assertion).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %s; last seen: %s", what, timeout, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// setAvailability is `docker node update --availability a NODE` on the manager.
func (e *env) setAvailability(n cluster.Node, a swarm.NodeAvailability) {
	e.t.Helper()
	ctx := context.Background()
	sn, _, err := e.mgr.NodeInspectWithRaw(ctx, n.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	sn.Spec.Availability = a
	if err := e.mgr.NodeUpdate(ctx, n.ID, sn.Version, sn.Spec); err != nil {
		e.t.Fatalf("set %s %s: %v", n.Name, a, err)
	}
}

// nodeState is the manager's view of a node's state ("ready", "down").
func (e *env) nodeState(n cluster.Node) string {
	sn, _, err := e.mgr.NodeInspectWithRaw(context.Background(), n.ID)
	if err != nil {
		return err.Error()
	}
	return string(sn.Status.State)
}

// get GETs a testapp's /license.txt and returns the hostname (the tasks here run with
// hostname {{.Node.ID}}) and message it answers; an error for anything but 200.
func get(url string) (hostname, message string, err error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "hostname: "); ok {
			hostname = v
		}
		if v, ok := strings.CutPrefix(line, "message: "); ok {
			message = v
		}
	}
	return hostname, message, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// dockerProxy sits between capstan and the manager's engine and records every request,
// so a test can count writes of a whole capstan process.
type dockerProxy struct {
	addr  string
	mu    sync.Mutex
	calls []string // "METHOD /path", the API version prefix removed
}

func newDockerProxy(t *testing.T, n cluster.Node) *dockerProxy {
	t.Helper()
	socket := strings.TrimPrefix(n.Host, "unix://")
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "docker"
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
		FlushInterval: -1,
	}
	p := &dockerProxy{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if rest, ok := strings.CutPrefix(path, "/v"); ok {
			if i := strings.IndexByte(rest, '/'); i > 0 {
				path = rest[i:]
			}
		}
		p.mu.Lock()
		p.calls = append(p.calls, r.Method+" "+path)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *dockerProxy) reset() {
	p.mu.Lock()
	p.calls = nil
	p.mu.Unlock()
}

// total is the number of requests seen since the last reset.
func (p *dockerProxy) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// writes returns the requests that were not GET or HEAD.
func (p *dockerProxy) writes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var w []string
	for _, c := range p.calls {
		if !strings.HasPrefix(c, "GET ") && !strings.HasPrefix(c, "HEAD ") {
			w = append(w, c)
		}
	}
	return w
}

// slbWrites returns the SLB actions that changed state since the last ResetCalls.
func (e *env) slbWrites() []string {
	var w []string
	for _, c := range e.emu.Calls() {
		if c.Write {
			w = append(w, c.Action)
		}
	}
	return w
}
