package slbemu_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// Attributes written by Create and Set come back from the Describe calls, with the
// defaults the real API fills in.
func TestListenerAttributesRoundTrip(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	group := createGroup(t, c, "capstan/web/8080", "")

	r := createHTTPListener(8080, group)
	r.HealthCheck, r.HealthCheckURI, r.HealthCheckHttpCode = "on", "/license.txt", "http_2xx,http_3xx"
	r.HealthCheckMethod, r.HealthyThreshold = "head", requests.NewInteger(4)
	r.StickySession, r.StickySessionType, r.CookieTimeout = "on", "insert", requests.NewInteger(1800)
	r.XForwardedForSLBIP, r.Description = "on", "capstan/8080/web/shop/c1"
	_, err := c.CreateLoadBalancerHTTPListener(r)
	mustOK(t, err)

	type httpView struct {
		Status, Scheduler, VServerGroupId, Description, HealthCheck, HealthCheckURI, HealthCheckHttpCode  string
		HealthCheckMethod, StickySession, StickySessionType, XForwardedFor, XForwardedForSLBIP, Gzip      string
		ListenerPort, Bandwidth, CookieTimeout, HealthyThreshold, UnhealthyThreshold, HealthCheckInterval int
		HealthCheckTimeout, IdleTimeout, RequestTimeout                                                   int
	}
	describe := func() httpView {
		d := slb.CreateDescribeLoadBalancerHTTPListenerAttributeRequest()
		d.LoadBalancerId, d.ListenerPort = testLB, requests.NewInteger(8080)
		resp, err := c.DescribeLoadBalancerHTTPListenerAttribute(d)
		mustOK(t, err)
		return httpView{resp.Status, resp.Scheduler, resp.VServerGroupId, resp.Description, resp.HealthCheck,
			resp.HealthCheckURI, resp.HealthCheckHttpCode, resp.HealthCheckMethod, resp.StickySession,
			resp.StickySessionType, resp.XForwardedFor, resp.XForwardedForSLBIP, resp.Gzip, resp.ListenerPort,
			resp.Bandwidth, resp.CookieTimeout, resp.HealthyThreshold, resp.UnhealthyThreshold,
			resp.HealthCheckInterval, resp.HealthCheckTimeout, resp.IdleTimeout, resp.RequestTimeout}
	}
	want := httpView{"stopped", "wrr", group, "capstan/8080/web/shop/c1", "on", "/license.txt", "http_2xx,http_3xx",
		"head", "on", "insert", "on", "on", "on", 8080, -1, 1800, 4, 3, 2, 5, 15, 60}
	if diff := cmp.Diff(want, describe()); diff != "" {
		t.Errorf("after create (-want +got):\n%s", diff)
	}

	s := slb.CreateSetLoadBalancerHTTPListenerAttributeRequest()
	s.LoadBalancerId, s.ListenerPort = testLB, requests.NewInteger(8080)
	s.HealthCheckInterval, s.Scheduler = requests.NewInteger(7), "rr"
	_, err = c.SetLoadBalancerHTTPListenerAttribute(s)
	mustOK(t, err)
	want.HealthCheckInterval, want.Scheduler = 7, "rr"
	if diff := cmp.Diff(want, describe()); diff != "" {
		t.Errorf("after set (-want +got):\n%s", diff)
	}

	// The list call carries the same values in HTTPListenerConfig.
	l := slb.CreateDescribeLoadBalancerListenersRequest()
	l.LoadBalancerId = &[]string{testLB}
	list, err := c.DescribeLoadBalancerListeners(l)
	mustOK(t, err)
	if len(list.Listeners) != 1 {
		t.Fatalf("want 1 listener, got %d", len(list.Listeners))
	}
	got := list.Listeners[0]
	if got.ListenerProtocol != "http" || got.VServerGroupId != group || got.Scheduler != "rr" ||
		got.HTTPListenerConfig.HealthCheckURI != "/license.txt" || got.HTTPListenerConfig.HealthCheckInterval != 7 ||
		got.HTTPListenerConfig.CookieTimeout != 1800 || got.Description != "capstan/8080/web/shop/c1" {
		t.Errorf("DescribeLoadBalancerListeners entry %+v", got)
	}

	// TCP: the lower-case healthCheckInterval the SDK sends on create is understood.
	tr := createTCPListener(9000, group)
	tr.HealthCheckInterval, tr.HealthCheckType, tr.HealthCheckURI = requests.NewInteger(9), "http", "/ping"
	_, err = c.CreateLoadBalancerTCPListener(tr)
	mustOK(t, err)
	td := slb.CreateDescribeLoadBalancerTCPListenerAttributeRequest()
	td.LoadBalancerId, td.ListenerPort = testLB, requests.NewInteger(9000)
	tcp, err := c.DescribeLoadBalancerTCPListenerAttribute(td)
	mustOK(t, err)
	if tcp.HealthCheckInterval != 9 || tcp.HealthCheckType != "http" || tcp.HealthCheckURI != "/ping" ||
		tcp.HealthCheck != "on" || tcp.EstablishedTimeout != 900 || tcp.Bandwidth != -1 || tcp.Status != "stopped" {
		t.Errorf("TCP attribute %+v", tcp)
	}
}

func settle(t *testing.T, c *slb.Client) {
	t.Helper()
	_, err := c.DescribeLoadBalancers(slb.CreateDescribeLoadBalancersRequest())
	mustOK(t, err)
}

func setHTTP(c *slb.Client, port int) error {
	s := slb.CreateSetLoadBalancerHTTPListenerAttributeRequest()
	s.LoadBalancerId, s.ListenerPort, s.Description = testLB, requests.NewInteger(port), "changed"
	_, err := c.SetLoadBalancerHTTPListenerAttribute(s)
	return err
}

// With TransitionCalls 2, the two calls after a Start/Set/Stop meet the listener in its
// transitional status: the first observes it, the second is the operation under test.
func TestListenerStateMachine(t *testing.T) {
	ops := map[string]func(*slb.Client) error{
		"start":  func(c *slb.Client) error { return start(c, 80, "http") },
		"stop":   func(c *slb.Client) error { return stop(c, 80, "http") },
		"set":    func(c *slb.Client) error { return setHTTP(c, 80) },
		"delete": func(c *slb.Client) error { return deleteListener(c, 80, "http") },
	}
	tests := []struct {
		from, trigger, op string // from: stopped | running
		transient         string
		code              string // "" = success
		final             string
	}{
		{"stopped", "start", "set", "starting", "OperationFailed.ListenerStatusNotSupport", "running"},
		{"stopped", "start", "stop", "starting", "OperationFailed.ListenerStatusNotSupport", "running"},
		{"stopped", "start", "delete", "starting", "OperationFailed.ListenerStatusNotSupport", "running"},
		{"stopped", "start", "start", "starting", "", "running"},
		{"running", "set", "start", "configuring", "Operation.Deny", "running"},
		{"running", "set", "stop", "configuring", "ServiceIsConfiguring", "running"},
		{"running", "set", "set", "configuring", "ServiceIsConfiguring", "running"},
		{"running", "set", "delete", "configuring", "ServiceIsConfiguring", "running"},
		{"stopped", "set", "start", "configuring", "Operation.Deny", "stopped"},
		{"running", "stop", "start", "stopping", "ServiceIsStopping", "stopped"},
		{"running", "stop", "set", "stopping", "OperationFailed.ListenerStatusNotSupport", "stopped"},
		{"running", "stop", "delete", "stopping", "OperationFailed.ListenerStatusNotSupport", "stopped"},
		{"running", "stop", "stop", "stopping", "", "stopped"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s then %s", tt.from, tt.trigger, tt.op), func(t *testing.T) {
			emu := newEmu(t, func(c *slbemu.Config) { c.TransitionCalls = 2 })
			c, _ := newClient(t, emu, testSecret)
			_, err := c.CreateLoadBalancerHTTPListener(createHTTPListener(80, ""))
			mustOK(t, err)
			if got := listenerStatus(t, c, 80, "http"); got != "stopped" {
				t.Fatalf("new listener is %s, want stopped", got)
			}
			if tt.from == "running" {
				mustOK(t, start(c, 80, "http"))
				settle(t, c)
				settle(t, c)
				if got := listenerStatus(t, c, 80, "http"); got != "running" {
					t.Fatalf("started listener is %s, want running", got)
				}
			}
			mustOK(t, ops[tt.trigger](c))
			if got := listenerStatus(t, c, 80, "http"); got != tt.transient {
				t.Fatalf("after %s: %s, want %s", tt.trigger, got, tt.transient)
			}
			err = ops[tt.op](c)
			if tt.code == "" {
				mustOK(t, err)
			} else {
				wantCode(t, err, 400, tt.code)
			}
			if got := listenerStatus(t, c, 80, "http"); got != tt.final {
				t.Errorf("settled status %s, want %s", got, tt.final)
			}
		})
	}
}

// A delay-based transition settles by the emulator's clock.
func TestListenerTransitionDelay(t *testing.T) {
	var offset atomic.Int64
	emu := newEmu(t, func(c *slbemu.Config) {
		c.TransitionDelay = 10 * time.Minute
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	c, _ := newClient(t, emu, testSecret)
	_, err := c.CreateLoadBalancerHTTPListener(createHTTPListener(80, ""))
	mustOK(t, err)
	mustOK(t, start(c, 80, "http"))
	for range 3 {
		if got := listenerStatus(t, c, 80, "http"); got != "starting" {
			t.Fatalf("before the delay: %s, want starting", got)
		}
	}
	// 10 minutes later by the emulator's clock (still within the timestamp window).
	offset.Store(int64(10*time.Minute + time.Second))
	if got := listenerStatus(t, c, 80, "http"); got != "running" {
		t.Errorf("after the delay: %s, want running", got)
	}
}

func TestListenerConflictsAndLookups(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	_, err := c.CreateLoadBalancerTCPListener(createTCPListener(80, ""))
	mustOK(t, err)

	_, err = c.CreateLoadBalancerHTTPListener(createHTTPListener(80, ""))
	wantCode(t, err, 400, "ListenerAlreadyExists")
	_, err = c.CreateLoadBalancerTCPListener(createTCPListener(80, ""))
	wantCode(t, err, 400, "ListenerAlreadyExists")

	u := slb.CreateCreateLoadBalancerUDPListenerRequest()
	u.LoadBalancerId, u.ListenerPort, u.BackendServerPort = testLB, requests.NewInteger(80), requests.NewInteger(80)
	_, err = c.CreateLoadBalancerUDPListener(u)
	mustOK(t, err) // udp has its own port space

	wantCode(t, start(c, 80, ""), 400, "TooManyListeners")
	mustOK(t, start(c, 80, "udp"))
	wantCode(t, start(c, 81, "tcp"), 400, "InvalidParameter")

	d := slb.CreateDescribeLoadBalancerHTTPListenerAttributeRequest()
	d.LoadBalancerId, d.ListenerPort = testLB, requests.NewInteger(80)
	_, err = c.DescribeLoadBalancerHTTPListenerAttribute(d) // port 80 is tcp and udp, not http
	wantCode(t, err, 400, "InvalidParameter")
	if se := serverError(t, err); se.Message() != "The specified resource does not exist." {
		t.Errorf("unknown listener message %q", se.Message())
	}

	r := createHTTPListener(82, "rsp-missing")
	_, err = c.CreateLoadBalancerHTTPListener(r)
	wantCode(t, err, 400, "InvalidParameter")
	if se := serverError(t, err); !strings.Contains(se.Message(), "VServerGroupId does not exist") {
		t.Errorf("unknown group message %q", se.Message())
	}

	r = createHTTPListener(83, "")
	r.StickySession = "on"
	_, err = c.CreateLoadBalancerHTTPListener(r)
	wantCode(t, err, 400, "MissingParameter")

	r = createHTTPListener(84, "")
	r.BackendServerPort = ""
	_, err = c.CreateLoadBalancerHTTPListener(r)
	wantCode(t, err, 400, "MissingParameter")

	// Deleting a group a listener uses is refused; after the listener goes, it works.
	g := createGroup(t, c, "used", "")
	_, err = c.CreateLoadBalancerTCPListener(createTCPListener(90, g))
	mustOK(t, err)
	del := func() error {
		r := slb.CreateDeleteVServerGroupRequest()
		r.VServerGroupId = g
		_, err := c.DeleteVServerGroup(r)
		return err
	}
	wantCode(t, del(), 400, "RspoolVipExist")
	mustOK(t, deleteListener(c, 90, "tcp"))
	mustOK(t, del())
	wantCode(t, del(), 400, "InvalidParameter")
}

func TestListenerQuotaAndPaging(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	for port := 1; port <= 50; port++ {
		_, err := c.CreateLoadBalancerTCPListener(createTCPListener(port, ""))
		mustOK(t, err)
	}
	_, err := c.CreateLoadBalancerTCPListener(createTCPListener(51, ""))
	wantCode(t, err, 400, "QuotaExceeded.ListenersPerLoadBalancer")

	// Default page size 20: 20 + 20 + 10, then no token.
	var sizes []int
	token := ""
	for {
		r := slb.CreateDescribeLoadBalancerListenersRequest()
		r.LoadBalancerId = &[]string{testLB}
		r.NextToken = token
		resp, err := c.DescribeLoadBalancerListeners(r)
		mustOK(t, err)
		if resp.TotalCount != 50 {
			t.Errorf("TotalCount %d, want 50", resp.TotalCount)
		}
		sizes = append(sizes, len(resp.Listeners))
		if token = resp.NextToken; token == "" {
			break
		}
	}
	if diff := cmp.Diff([]int{20, 20, 10}, sizes); diff != "" {
		t.Errorf("page sizes (-want +got):\n%s", diff)
	}
	r := slb.CreateDescribeLoadBalancerListenersRequest()
	r.LoadBalancerId, r.MaxResults = &[]string{testLB}, requests.NewInteger(100)
	resp, err := c.DescribeLoadBalancerListeners(r)
	mustOK(t, err)
	if len(resp.Listeners) != 50 || resp.NextToken != "" {
		t.Errorf("MaxResults 100: %d listeners, token %q", len(resp.Listeners), resp.NextToken)
	}
}
