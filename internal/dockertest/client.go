// Package dockertest gives tests a real Docker Engine in swarm mode: a client that counts
// its API requests, the small test image built from internal/testapp, unique stack names
// and cleanup of everything a stack left behind.
//
// Tests that need Docker call Client (or Image) first. When no engine answers, or the
// engine is not an active swarm manager, the test is skipped with a message saying so,
// unless CAPSTAN_REQUIRE_DOCKER=1, in which case it fails: CI must never pass by skipping.
//
// It is for tests only, exported so the tests of reconcile, e2e and cmd can share it.
package dockertest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// RequireDockerEnv, set to "1", turns a missing engine from a skip into a failure.
const RequireDockerEnv = "CAPSTAN_REQUIRE_DOCKER"

// Call is one HTTP request a client sent to the engine. Path has the /vX.Y prefix and the
// query removed: "/services", "/services/abc/update", "/_ping".
type Call struct {
	Method string
	Path   string
}

func (c Call) String() string { return c.Method + " " + c.Path }

// IsRead reports whether the call only reads (GET or HEAD).
func (c Call) IsRead() bool { return c.Method == http.MethodGet || c.Method == http.MethodHead }

// Counter records the requests of a client made by Client. It is safe for concurrent use.
type Counter struct {
	mu    sync.Mutex
	calls []Call
}

func (c *Counter) add(call Call) {
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
}

// Reset forgets every call recorded so far.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.calls = nil
	c.mu.Unlock()
}

// Calls returns the recorded calls in the order they were sent.
func (c *Counter) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.calls...)
}

// Total is the number of requests sent.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// Reads is the number of GET and HEAD requests.
func (c *Counter) Reads() int {
	n := 0
	for _, call := range c.Calls() {
		if call.IsRead() {
			n++
		}
	}
	return n
}

// Writes is the number of requests that are not GET or HEAD.
func (c *Counter) Writes() int { return c.Total() - c.Reads() }

// Count is the number of requests whose method is method and whose path matches pattern
// (path.Match syntax: "/services/*/update").
func (c *Counter) Count(method, pattern string) int {
	n := 0
	for _, call := range c.Calls() {
		if ok, _ := path.Match(pattern, call.Path); ok && call.Method == method {
			n++
		}
	}
	return n
}

// Summary renders the calls grouped as "METHOD path ×N", sorted, for failure messages.
func (c *Counter) Summary() string {
	counts := map[string]int{}
	for _, call := range c.Calls() {
		counts[call.String()]++
	}
	lines := make([]string, 0, len(counts))
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

type countingTransport struct {
	next    http.RoundTripper
	counter *Counter
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.counter.add(Call{Method: req.Method, Path: trimVersion(req.URL.Path)})
	return t.next.RoundTrip(req)
}

// trimVersion turns "/v1.41/services" into "/services".
func trimVersion(p string) string {
	if rest, ok := strings.CutPrefix(p, "/v"); ok {
		if i := strings.IndexByte(rest, '/'); i > 0 && strings.Trim(rest[:i], "0123456789.") == "" {
			return rest[i:]
		}
	}
	return p
}

var engine struct {
	once sync.Once
	err  error // why the engine cannot be used; nil when it can
}

// checkEngine pings the engine once per process and checks it is an active swarm manager.
func checkEngine() error {
	engine.once.Do(func() {
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			engine.err = fmt.Errorf("configure Docker client: %w", err)
			return
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cli.Ping(ctx); err != nil {
			engine.err = fmt.Errorf("no Docker Engine answers at %s: %w", cli.DaemonHost(), err)
			return
		}
		info, err := cli.Info(ctx)
		if err != nil {
			engine.err = fmt.Errorf("docker info at %s: %w", cli.DaemonHost(), err)
			return
		}
		if info.Swarm.LocalNodeState != "active" || !info.Swarm.ControlAvailable {
			engine.err = fmt.Errorf("the Docker Engine at %s is not an active swarm manager (swarm state %q, manager %t); run `docker swarm init`",
				cli.DaemonHost(), info.Swarm.LocalNodeState, info.Swarm.ControlAvailable)
		}
	})
	return engine.err
}

// requireEngine skips (or, under CAPSTAN_REQUIRE_DOCKER=1, fails) t when the engine is
// unusable.
func requireEngine(t testing.TB) {
	t.Helper()
	err := checkEngine()
	if err == nil {
		return
	}
	if os.Getenv(RequireDockerEnv) == "1" {
		t.Fatalf("%v (%s=1 makes this a failure)", err, RequireDockerEnv)
	}
	t.Skipf("skipping: %v (set %s=1 to fail instead)", err, RequireDockerEnv)
}

// Client returns a Docker client configured from the environment (DOCKER_HOST etc.) with
// API version negotiation, and the Counter of every request it sends. The client has not
// talked to the engine yet, so its first request is preceded by the version-negotiation
// ping, which the Counter sees too. It is closed when the test ends.
func Client(t testing.TB) (*client.Client, *Counter) {
	t.Helper()
	requireEngine(t)
	cli, counter, closeFn, err := newCountingClient()
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(closeFn)
	return cli, counter
}

func newCountingClient() (*client.Client, *Counter, func(), error) {
	// A throwaway client built from the environment supplies the transport (socket dialer,
	// TLS); the counting client wraps it.
	base, err := client.NewClientWithOpts(client.FromEnv)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("configure Docker client: %w", err)
	}
	counter := &Counter{}
	hc := base.HTTPClient()
	hc.Transport = countingTransport{next: hc.Transport, counter: counter}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation(), client.WithHTTPClient(hc)}
	if os.Getenv(client.EnvOverrideCertPath) != "" {
		// With a custom HTTP client the library cannot see the TLS config to pick https.
		opts = append(opts, client.WithScheme("https"))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		_ = base.Close()
		return nil, nil, nil, fmt.Errorf("configure Docker client: %w", err)
	}
	// base owns the shared *http.Transport, so closing it releases the idle connections.
	return cli, counter, func() { _ = cli.Close(); _ = base.Close() }, nil
}
