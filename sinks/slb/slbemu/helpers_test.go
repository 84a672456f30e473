package slbemu_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

const (
	testKey    = "AKIDcapstantest"
	testSecret = "capstan-test-secret"
	testRegion = "cn-hangzhou"
	testLB     = "lb-capstan1"
)

// newEmu starts an emulator with one load balancer on 127.0.0.1; mod adjusts the config.
func newEmu(t *testing.T, mod func(*slbemu.Config)) *slbemu.Server {
	t.Helper()
	cfg := slbemu.Config{
		Credentials:   []slbemu.Credential{{AccessKeyID: testKey, AccessKeySecret: testSecret}},
		LoadBalancers: []slbemu.LoadBalancer{{ID: testLB, Region: testRegion, Name: "capstan-test"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	emu := slbemu.New(cfg)
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := emu.Close(); err != nil {
			t.Errorf("closing the emulator: %v", err)
		}
	})
	return emu
}

// recorder keeps the last request URL and response body the SDK exchanged.
type recorder struct {
	mu      sync.Mutex
	lastURL string
	body    []byte
	next    http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	r.mu.Lock()
	r.lastURL, r.body = req.URL.String(), b
	r.mu.Unlock()
	return resp, nil
}

func (r *recorder) last() (string, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastURL, r.body
}

// newClient is the real SDK client pointed at the emulator: HTTP, AutoRetry off.
func newClient(t *testing.T, emu *slbemu.Server, secret string) (*slb.Client, *recorder) {
	t.Helper()
	rec := &recorder{next: &http.Transport{Proxy: nil}}
	cfg := sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(false).WithTimeout(10 * time.Second)
	cfg.Transport = rec
	c, err := slb.NewClientWithOptions(testRegion, cfg, credentials.NewStaticAKCredentialsProvider(testKey, secret))
	if err != nil {
		t.Fatal(err)
	}
	c.Domain = emu.Endpoint()
	return c, rec
}

// serverError extracts the SDK's ServerError or fails the test.
func serverError(t *testing.T, err error) *sdkerrors.ServerError {
	t.Helper()
	var se *sdkerrors.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("want a *errors.ServerError, got %T: %v", err, err)
	}
	return se
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s (HTTP %d), got success", code, status)
	}
	se := serverError(t, err)
	if se.ErrorCode() != code || se.HttpStatus() != status {
		t.Fatalf("want %s (HTTP %d), got %s (HTTP %d): %s", code, status, se.ErrorCode(), se.HttpStatus(), se.Message())
	}
	if se.RequestId() == "" || se.HostId() == "" {
		t.Errorf("error body lacks RequestId or HostId: %+v", se)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// freePort finds a port on 127.0.0.1 nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Request builders (each call needs a fresh request: the SDK mutates it).

func createHTTPListener(port int, group string) *slb.CreateLoadBalancerHTTPListenerRequest {
	r := slb.CreateCreateLoadBalancerHTTPListenerRequest()
	r.LoadBalancerId = testLB
	r.ListenerPort = requests.NewInteger(port)
	r.HealthCheck = "off"
	r.StickySession = "off"
	if group != "" {
		r.VServerGroupId = group
	} else {
		r.BackendServerPort = requests.NewInteger(port)
	}
	return r
}

func createTCPListener(port int, group string) *slb.CreateLoadBalancerTCPListenerRequest {
	r := slb.CreateCreateLoadBalancerTCPListenerRequest()
	r.LoadBalancerId = testLB
	r.ListenerPort = requests.NewInteger(port)
	if group != "" {
		r.VServerGroupId = group
	} else {
		r.BackendServerPort = requests.NewInteger(port)
	}
	return r
}

func control[T interface {
	*slb.StartLoadBalancerListenerRequest | *slb.StopLoadBalancerListenerRequest | *slb.DeleteLoadBalancerListenerRequest
}](r T, port int, proto string) T {
	switch x := any(r).(type) {
	case *slb.StartLoadBalancerListenerRequest:
		x.LoadBalancerId, x.ListenerPort, x.ListenerProtocol = testLB, requests.NewInteger(port), proto
	case *slb.StopLoadBalancerListenerRequest:
		x.LoadBalancerId, x.ListenerPort, x.ListenerProtocol = testLB, requests.NewInteger(port), proto
	case *slb.DeleteLoadBalancerListenerRequest:
		x.LoadBalancerId, x.ListenerPort, x.ListenerProtocol = testLB, requests.NewInteger(port), proto
	}
	return r
}

func start(c *slb.Client, port int, proto string) error {
	_, err := c.StartLoadBalancerListener(control(slb.CreateStartLoadBalancerListenerRequest(), port, proto))
	return err
}

func stop(c *slb.Client, port int, proto string) error {
	_, err := c.StopLoadBalancerListener(control(slb.CreateStopLoadBalancerListenerRequest(), port, proto))
	return err
}

func deleteListener(c *slb.Client, port int, proto string) error {
	_, err := c.DeleteLoadBalancerListener(control(slb.CreateDeleteLoadBalancerListenerRequest(), port, proto))
	return err
}

func createGroup(t *testing.T, c *slb.Client, name, backends string) string {
	t.Helper()
	r := slb.CreateCreateVServerGroupRequest()
	r.LoadBalancerId = testLB
	r.VServerGroupName = name
	r.BackendServers = backends
	resp, err := c.CreateVServerGroup(r)
	mustOK(t, err)
	if resp.VServerGroupId == "" {
		t.Fatal("CreateVServerGroup returned no VServerGroupId")
	}
	return resp.VServerGroupId
}

func addBackends(c *slb.Client, group, backends string) (*slb.AddVServerGroupBackendServersResponse, error) {
	r := slb.CreateAddVServerGroupBackendServersRequest()
	r.VServerGroupId = group
	r.BackendServers = backends
	return c.AddVServerGroupBackendServers(r)
}

func listenerStatus(t *testing.T, c *slb.Client, port int, proto string) string {
	t.Helper()
	r := slb.CreateDescribeLoadBalancerListenersRequest()
	r.LoadBalancerId = &[]string{testLB}
	r.ListenerPort = requests.NewInteger(port)
	r.ListenerProtocol = proto
	resp, err := c.DescribeLoadBalancerListeners(r)
	mustOK(t, err)
	if len(resp.Listeners) != 1 {
		t.Fatalf("want 1 listener on %s:%d, got %d", proto, port, len(resp.Listeners))
	}
	return resp.Listeners[0].Status
}

func itoa(n int) string { return strconv.Itoa(n) }
