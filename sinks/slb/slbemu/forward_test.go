package slbemu_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// eventually polls cond until it holds; the deadline only bounds a broken run.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func forwardingEmu(t *testing.T) *slbemu.Server {
	return newEmu(t, func(c *slbemu.Config) {
		c.Forward = true
		c.HealthCheckInterval = 20 * time.Millisecond
		c.HealthCheckTimeout = time.Second
		c.BackendAddresses = map[string]string{"i-a": "127.0.0.1", "i-b": "127.0.0.1"}
	})
}

// healthOf maps "ServerId:Port" to ServerHealthStatus for one listener.
func healthOf(t *testing.T, c *slb.Client, port int, proto string) map[string]string {
	t.Helper()
	r := slb.CreateDescribeHealthStatusRequest()
	r.LoadBalancerId, r.ListenerPort, r.ListenerProtocol = testLB, requests.NewInteger(port), proto
	resp, err := c.DescribeHealthStatus(r)
	mustOK(t, err)
	out := map[string]string{}
	for _, b := range resp.BackendServers.BackendServer {
		if b.ListenerPort != port || b.Protocol != proto || b.ServerIp != "127.0.0.1" {
			t.Errorf("health entry %+v", b)
		}
		out[fmt.Sprintf("%s:%d", b.ServerId, b.Port)] = b.ServerHealthStatus
	}
	return out
}

type httpBackend struct {
	name    string
	srv     *httptest.Server
	healthy atomic.Bool
	lastXFF atomic.Value
	lastHdr atomic.Value
}

func newHTTPBackend(t *testing.T, name string) *httpBackend {
	b := &httpBackend{name: name}
	b.healthy.Store(true)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if !b.healthy.Load() {
				http.Error(w, "sick", http.StatusInternalServerError)
			}
			return
		}
		b.lastXFF.Store(r.Header.Get("X-Forwarded-For"))
		b.lastHdr.Store(r.Header.Clone())
		fmt.Fprintf(w, "%s %s", b.name, r.Host)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *httpBackend) port() int { return b.srv.Listener.Addr().(*net.TCPAddr).Port }

// get sends n requests through the listener and counts answers per backend name.
func get(t *testing.T, port, n int) map[string]int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	counts := map[string]int{}
	for range n {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatalf("GET through the listener: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			counts[fmt.Sprint(resp.StatusCode)]++
			continue
		}
		name, host, _ := strings.Cut(string(body), " ")
		if host != fmt.Sprintf("127.0.0.1:%d", port) {
			t.Errorf("backend saw Host %q, want the listener's", host)
		}
		counts[name]++
	}
	return counts
}

func refused(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func TestForwardHTTP(t *testing.T) {
	a, b := newHTTPBackend(t, "A"), newHTTPBackend(t, "B")
	emu := forwardingEmu(t)
	c, _ := newClient(t, emu, testSecret)
	group := createGroup(t, c, "web", fmt.Sprintf(`[{"ServerId":"i-a","Port":"%d"},{"ServerId":"i-b","Port":"%d"}]`, a.port(), b.port()))
	port := freePort(t)
	r := createHTTPListener(port, group)
	r.HealthCheck, r.HealthCheckURI = "on", "/health"
	r.HealthyThreshold, r.UnhealthyThreshold = requests.NewInteger(2), requests.NewInteger(2)
	r.XForwardedForSLBID = "on"
	_, err := c.CreateLoadBalancerHTTPListener(r)
	mustOK(t, err)
	keyA, keyB := fmt.Sprintf("i-a:%d", a.port()), fmt.Sprintf("i-b:%d", b.port())

	if !refused(port) {
		t.Fatal("a stopped listener accepts connections")
	}
	if got := healthOf(t, c, port, "http"); got[keyA] != "unavailable" || got[keyB] != "unavailable" {
		t.Errorf("stopped listener health %v, want unavailable", got)
	}

	mustOK(t, start(c, port, "http"))
	addr, err := emu.ForwardAddr(testLB, "http", port)
	if err != nil || addr != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("ForwardAddr = %q, %v", addr, err)
	}
	eventually(t, "both backends normal", func() bool {
		h := healthOf(t, c, port, "http")
		return h[keyA] == "normal" && h[keyB] == "normal"
	})
	if diff := cmp.Diff(map[string]int{"A": 2, "B": 2}, get(t, port, 4)); diff != "" {
		t.Errorf("wrr with equal weights (-want +got):\n%s", diff)
	}
	if xff := a.lastXFF.Load(); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client address", xff)
	}
	if id := a.lastHdr.Load().(http.Header).Get("SLB-ID"); id != testLB {
		t.Errorf("SLB-ID header %q, want %s", id, testLB)
	}

	// A failing health check takes B out; passing again brings it back.
	b.healthy.Store(false)
	eventually(t, "B abnormal", func() bool { return healthOf(t, c, port, "http")[keyB] == "abnormal" })
	if got := healthOf(t, c, port, "http")[keyA]; got != "normal" {
		t.Errorf("A is %s while B fails", got)
	}
	if diff := cmp.Diff(map[string]int{"A": 4}, get(t, port, 4)); diff != "" {
		t.Errorf("traffic with B abnormal (-want +got):\n%s", diff)
	}
	b.healthy.Store(true)
	eventually(t, "B normal again", func() bool { return healthOf(t, c, port, "http")[keyB] == "normal" })
	if got := get(t, port, 4); got["B"] != 2 {
		t.Errorf("B back in rotation: %v", got)
	}

	// Weight 0 takes a backend out of rotation at once; switching X-Forwarded-For off
	// drops the header.
	set := slb.CreateSetVServerGroupAttributeRequest()
	set.VServerGroupId, set.BackendServers = group, fmt.Sprintf(`[{"ServerId":"i-b","Port":"%d","Weight":"0"}]`, b.port())
	_, err = c.SetVServerGroupAttribute(set)
	mustOK(t, err)
	s := slb.CreateSetLoadBalancerHTTPListenerAttributeRequest()
	s.LoadBalancerId, s.ListenerPort, s.XForwardedFor = testLB, requests.NewInteger(port), "off"
	_, err = c.SetLoadBalancerHTTPListenerAttribute(s)
	mustOK(t, err)
	if diff := cmp.Diff(map[string]int{"A": 3}, get(t, port, 3)); diff != "" {
		t.Errorf("traffic with B at weight 0 (-want +got):\n%s", diff)
	}
	if xff := a.lastXFF.Load(); xff != "" {
		t.Errorf("X-Forwarded-For %q sent with the switch off", xff)
	}

	// No healthy backend: 503 from the listener.
	a.healthy.Store(false)
	eventually(t, "A abnormal", func() bool { return healthOf(t, c, port, "http")[keyA] == "abnormal" })
	if diff := cmp.Diff(map[string]int{"503": 1}, get(t, port, 1)); diff != "" {
		t.Errorf("no healthy backend (-want +got):\n%s", diff)
	}

	// Stop closes the port; Start reopens it; Delete closes it for good.
	mustOK(t, stop(c, port, "http"))
	if !refused(port) {
		t.Error("stopped listener still accepts connections")
	}
	if _, err := emu.ForwardAddr(testLB, "http", port); err == nil {
		t.Error("ForwardAddr reports a forwarder for a stopped listener")
	}
	a.healthy.Store(true)
	mustOK(t, start(c, port, "http"))
	eventually(t, "A normal after restart", func() bool { return healthOf(t, c, port, "http")[keyA] == "normal" })
	if got := get(t, port, 2); got["A"] != 2 {
		t.Errorf("after restart: %v", got)
	}
	mustOK(t, deleteListener(c, port, "http"))
	if !refused(port) {
		t.Error("deleted listener still accepts connections")
	}
}

type tcpBackend struct {
	name string
	ln   net.Listener
}

func newTCPBackend(t *testing.T, name string) *tcpBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustOK(t, err)
	b := &tcpBackend{name: name, ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprintf(conn, "%s:%s", name, line)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return b
}

func (b *tcpBackend) port() int { return b.ln.Addr().(*net.TCPAddr).Port }

// dialEcho sends one line through the listener and returns which backend answered.
func dialEcho(t *testing.T, port int) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the listener: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "hello\n")
	reply, err := io.ReadAll(conn)
	if err != nil {
		return "closed" // reset: the emulator dropped the connection
	}
	name, rest, ok := strings.Cut(string(reply), ":")
	if !ok || rest != "hello\n" {
		return "closed"
	}
	return name
}

func TestForwardTCP(t *testing.T) {
	a, b := newTCPBackend(t, "A"), newTCPBackend(t, "B")
	emu := forwardingEmu(t)
	c, _ := newClient(t, emu, testSecret)
	group := createGroup(t, c, "tcp", fmt.Sprintf(`[{"ServerId":"i-a","Port":"%d","Weight":"3"},{"ServerId":"i-b","Port":"%d","Weight":"1"}]`,
		a.port(), b.port()))
	port := freePort(t)
	r := createTCPListener(port, group)
	r.HealthyThreshold, r.UnhealthyThreshold = requests.NewInteger(2), requests.NewInteger(2)
	_, err := c.CreateLoadBalancerTCPListener(r)
	mustOK(t, err)
	mustOK(t, start(c, port, "tcp"))
	keyA, keyB := fmt.Sprintf("i-a:%d", a.port()), fmt.Sprintf("i-b:%d", b.port())
	eventually(t, "both normal", func() bool {
		h := healthOf(t, c, port, "tcp")
		return h[keyA] == "normal" && h[keyB] == "normal"
	})

	count := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			got[dialEcho(t, port)]++
		}
		return got
	}
	if diff := cmp.Diff(map[string]int{"A": 6, "B": 2}, count(8)); diff != "" {
		t.Errorf("wrr 3:1 (-want +got):\n%s", diff)
	}

	s := slb.CreateSetLoadBalancerTCPListenerAttributeRequest()
	s.LoadBalancerId, s.ListenerPort, s.Scheduler = testLB, requests.NewInteger(port), "rr"
	_, err = c.SetLoadBalancerTCPListenerAttribute(s)
	mustOK(t, err)
	if diff := cmp.Diff(map[string]int{"A": 4, "B": 4}, count(8)); diff != "" {
		t.Errorf("rr ignores weights (-want +got):\n%s", diff)
	}

	// B's port closes: the TCP check fails and B leaves the rotation.
	b.ln.Close()
	eventually(t, "B abnormal", func() bool { return healthOf(t, c, port, "tcp")[keyB] == "abnormal" })
	if diff := cmp.Diff(map[string]int{"A": 4}, count(4)); diff != "" {
		t.Errorf("with B down (-want +got):\n%s", diff)
	}

	// Health check off: every backend takes traffic and reports unavailable.
	s = slb.CreateSetLoadBalancerTCPListenerAttributeRequest()
	s.LoadBalancerId, s.ListenerPort, s.HealthCheckSwitch = testLB, requests.NewInteger(port), "off"
	_, err = c.SetLoadBalancerTCPListenerAttribute(s)
	mustOK(t, err)
	h := healthOf(t, c, port, "tcp")
	if h[keyA] != "unavailable" || h[keyB] != "unavailable" {
		t.Errorf("health with checks off: %v", h)
	}
	if got := count(2); got["A"] != 1 || got["closed"] != 1 {
		t.Errorf("rr over A and the dead B without checks: %v", got)
	}

	mustOK(t, stop(c, port, "tcp"))
	if !refused(port) {
		t.Error("stopped TCP listener still accepts connections")
	}
}

// A listener without a VServer group forwards to the default server group at its
// BackendServerPort; wlc and forced health states work there too.
func TestForwardDefaultGroup(t *testing.T) {
	a := newHTTPBackend(t, "A")
	emu := forwardingEmu(t)
	c, _ := newClient(t, emu, testSecret)
	add := slb.CreateAddBackendServersRequest()
	add.LoadBalancerId, add.BackendServers = testLB, `[{"ServerId":"i-a","Weight":"100"}]`
	_, err := c.AddBackendServers(add)
	mustOK(t, err)
	port := freePort(t)
	r := createHTTPListener(port, "")
	r.BackendServerPort, r.Scheduler = requests.NewInteger(a.port()), "wlc"
	_, err = c.CreateLoadBalancerHTTPListener(r)
	mustOK(t, err)
	mustOK(t, start(c, port, "http"))
	if diff := cmp.Diff(map[string]int{"A": 3}, get(t, port, 3)); diff != "" {
		t.Errorf("default group traffic (-want +got):\n%s", diff)
	}
	key := fmt.Sprintf("i-a:%d", a.port())
	if got := healthOf(t, c, port, "http")[key]; got != "unavailable" {
		t.Errorf("health check off: %s, want unavailable", got)
	}
	mustOK(t, emu.SetHealthStatus("i-a", a.port(), "abnormal"))
	if got := healthOf(t, c, port, "http")[key]; got != "abnormal" {
		t.Errorf("forced health: %s", got)
	}
	st := emu.Snapshot()
	var ports []int
	for _, l := range st.LoadBalancers[0].Listeners {
		ports = append(ports, l.Port)
	}
	sort.Ints(ports)
	if diff := cmp.Diff([]int{port}, ports); diff != "" {
		t.Errorf("snapshot listeners (-want +got):\n%s", diff)
	}
}

// Without forwarding, a running listener with checks on reports normal backends.
func TestHealthWithoutForwarding(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	g := createGroup(t, c, "g", `[{"ServerId":"i-a","Port":"30080"}]`)
	port := freePort(t)
	_, err := c.CreateLoadBalancerTCPListener(createTCPListener(port, g))
	mustOK(t, err)
	mustOK(t, start(c, port, "tcp"))
	if got := healthOf(t, c, port, "tcp"); got["i-a:30080"] != "normal" {
		t.Errorf("health %v, want normal", got)
	}
	if !refused(port) {
		t.Error("listener port opened with forwarding off")
	}
}

// The port opens when the listener reaches running, not at Start.
func TestForwardWaitsForRunning(t *testing.T) {
	a := newHTTPBackend(t, "A")
	emu := newEmu(t, func(c *slbemu.Config) {
		c.Forward = true
		c.TransitionCalls = 1
	})
	c, _ := newClient(t, emu, testSecret)
	port := freePort(t)
	r := createHTTPListener(port, "")
	r.BackendServerPort = requests.NewInteger(a.port())
	_, err := c.CreateLoadBalancerHTTPListener(r)
	mustOK(t, err)
	mustOK(t, start(c, port, "http"))
	if got := listenerStatus(t, c, port, "http"); got != "starting" || !refused(port) {
		t.Fatalf("starting listener: status %s, port open %v", got, !refused(port))
	}
	// The next call (here a failing one) settles the listener and opens the port.
	wantCode(t, start(c, port+1, "http"), 400, "InvalidParameter")
	if refused(port) {
		t.Fatal("running listener does not accept connections")
	}
	if got := listenerStatus(t, c, port, "http"); got != "running" {
		t.Errorf("status %s, want running", got)
	}
}
