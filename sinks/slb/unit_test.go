package slb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	slbsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

func serverError(status int, code string) error {
	return sdkerrors.NewServerError(status, fmt.Sprintf(`{"RequestId":"R-1","HostId":"slb.aliyuncs.com","Code":%q,"Message":"m"}`, code), "")
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{serverError(400, "Throttling"), true},
		{serverError(400, "Throttling.User"), true},
		{serverError(400, "Throttling.Api"), true},
		{serverError(400, "SystemBusy"), true},
		{serverError(400, "SlbIsBusy"), true},
		{serverError(400, "ServiceIsConfiguring"), true},
		{serverError(400, "BackendServer.configuring"), true},
		{serverError(400, "OperationFailed.ListenerStatusNotSupport"), true},
		{serverError(503, "ServiceUnavailable"), true},
		{serverError(500, "InternalError"), true},
		{serverError(502, ""), true},
		{&url.Error{Op: "Post", URL: "http://127.0.0.1:1/?Signature=x", Err: errors.New("connection refused")}, true},
		{sdkerrors.NewClientError(sdkerrors.TimeoutErrorCode, "timed out", nil), true},
		{serverError(400, "SignatureDoesNotMatch"), false},
		{serverError(404, "InvalidAccessKeyId.NotFound"), false},
		{serverError(403, "Forbidden.RAM"), false},
		{serverError(400, "InvalidParameter"), false},
		{serverError(400, "ListenerAlreadyExists"), false},
		{serverError(404, "InvalidLoadBalancerId.NotFound"), false},
	} {
		err := wrapError("Action", tc.err)
		if got := Transient(err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", err, got, tc.want)
		}
	}
	if Transient(errors.New("plain")) {
		t.Error("a plain error is transient")
	}
}

func TestErrorMessages(t *testing.T) {
	err := wrapError("DescribeLoadBalancers", &url.Error{Op: "Post", URL: "http://127.0.0.1:1/?AccessKeyId=AK&Signature=sig", Err: errors.New("connection refused")})
	if strings.Contains(err.Error(), "Signature") || !strings.Contains(err.Error(), "http://127.0.0.1:1") {
		t.Errorf("transport error shows the signed query or hides the host: %v", err)
	}
	err = wrapError("DescribeLoadBalancers", serverError(404, "InvalidAccessKeyId.NotFound"))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "ALIBABA_CLOUD_ACCESS_KEY_ID") || !strings.Contains(err.Error(), "R-1") {
		t.Errorf("auth error: %v", err)
	}
	if notFound(err) {
		t.Error("an unknown AccessKey ID reads as a missing object")
	}
	if notFound(wrapError("DeleteVServerGroup", serverError(400, "InvalidParameter"))) {
		t.Error("an InvalidParameter that says nothing of a missing object reads as one")
	}
}

func TestBackoffBounds(t *testing.T) {
	p := Retry{Attempts: 8, Base: 100 * time.Millisecond, Max: time.Second}
	for n := 1; n <= 10; n++ {
		step := p.Base << (n - 1)
		if step > p.Max || step <= 0 {
			step = p.Max
		}
		for range 50 {
			d := backoff(p, n)
			if d < step/2 || d > step {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, step/2, step)
			}
		}
	}
}

func TestDiffMembers(t *testing.T) {
	b := func(id string, port, weight int) resource.SLBBackend {
		return resource.SLBBackend{ServerID: id, Port: port, Weight: weight, Type: "ecs"}
	}
	have := []resource.SLBBackend{b("i-1", 80, 100), b("i-2", 80, 100), b("i-3", 81, 100), b("i-4", 80, 50), b("i-1", 90, 100),
		{ServerID: "i-5", Port: 80, Weight: 100, Type: "eni"}}
	want := []resource.SLBBackend{b("i-1", 80, 100), b("i-3", 80, 100), b("i-4", 80, 100), b("i-5", 80, 100), b("i-6", 80, 100)}
	got := diffMembers(have, want)
	wantOps := memberOps{
		add:        []resource.SLBBackend{b("i-6", 80, 100)},
		oldPorts:   []resource.SLBBackend{b("i-3", 81, 100)},
		newPorts:   []resource.SLBBackend{b("i-3", 80, 100)},
		setWeights: []resource.SLBBackend{b("i-4", 80, 100)},
		remove:     []resource.SLBBackend{b("i-2", 80, 100), b("i-1", 90, 100), {ServerID: "i-5", Port: 80, Weight: 100, Type: "eni"}},
	}
	// i-5 changes type: removed, then added again as ecs.
	wantOps.add = append([]resource.SLBBackend{b("i-5", 80, 100)}, wantOps.add...)
	if diff := cmp.Diff(wantOps, got, cmp.AllowUnexported(memberOps{})); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	if !diffMembers(want, want).empty() {
		t.Error("equal members need changes")
	}
}

func TestBatches(t *testing.T) {
	var in []int
	for i := range 45 {
		in = append(in, i)
	}
	var sizes []int
	for _, b := range batches(in, 20) {
		sizes = append(sizes, len(b))
	}
	if diff := cmp.Diff([]int{20, 20, 5}, sizes); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	if batches([]int(nil), 20) != nil {
		t.Error("no batches expected for nothing")
	}
}

// Every parameter capstan sends exists on the SDK request it goes into, for every
// protocol, create and set alike.
func TestListenerParamsFitTheSDK(t *testing.T) {
	full := resource.SLBListener{LoadBalancerID: "lb", Port: 80, Description: "capstan/capstan/r",
		HealthCheck:   resource.SLBHealthCheck{Enabled: true, Domain: "d", ConnectPort: 8},
		StickySession: resource.SLBStickySession{Enabled: true, Type: "server", Cookie: "c"},
		ACL:           resource.SLBACL{Enabled: true, ID: "acl", Type: "white"}, CertificateID: "cert"}
	reqs := map[string][2]any{
		"http":  {slbsdk.CreateCreateLoadBalancerHTTPListenerRequest(), slbsdk.CreateSetLoadBalancerHTTPListenerAttributeRequest()},
		"https": {slbsdk.CreateCreateLoadBalancerHTTPSListenerRequest(), slbsdk.CreateSetLoadBalancerHTTPSListenerAttributeRequest()},
		"tcp":   {slbsdk.CreateCreateLoadBalancerTCPListenerRequest(), slbsdk.CreateSetLoadBalancerTCPListenerAttributeRequest()},
		"udp":   {slbsdk.CreateCreateLoadBalancerUDPListenerRequest(), slbsdk.CreateSetLoadBalancerUDPListenerAttributeRequest()},
	}
	for proto, rs := range reqs {
		l := full
		l.Protocol = proto
		live := l
		live.HealthCheck.Domain = "old"
		if err := setParams(rs[0], listenerParams(l, "rsp-1", true, nil)); err != nil {
			t.Errorf("%s create: %v", proto, err)
		}
		if err := setParams(rs[1], listenerParams(l, "rsp-1", false, &live)); err != nil {
			t.Errorf("%s set: %v", proto, err)
		}
	}
	req := slbsdk.CreateCreateLoadBalancerTCPListenerRequest()
	if err := setParams(req, map[string]string{"HealthCheckInterval": "7", "RegionId": "cn-x"}); err != nil {
		t.Fatal(err)
	}
	if string(req.HealthCheckInterval) != "7" || req.RegionId != "cn-x" {
		t.Errorf("lower-case healthCheckInterval or RegionId not set: %q %q", req.HealthCheckInterval, req.RegionId)
	}
	if err := setParams(req, map[string]string{"NoSuchParameter": "x"}); err == nil {
		t.Error("an unknown parameter was accepted")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Instance: "a/b"},
		{Endpoint: "127.0.0.1:8080"},
		{Endpoint: "ftp://x"},
		{Endpoint: "http://x/path"},
		{LoadBalancers: []resource.LoadBalancer{{ID: "lb-1"}}},
		{Credentials: &Credentials{AccessKeyID: "AK"}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted it", o)
		}
	}
	s, err := New(Options{Endpoint: "https://slb.cn-hangzhou.aliyuncs.com"})
	if err != nil || s.scheme != "HTTPS" || s.domain != "slb.cn-hangzhou.aliyuncs.com" || s.instance != resource.DefaultInstance {
		t.Errorf("New: %v %+v", err, s)
	}
}

// A proxy in the environment never carries traffic to a local endpoint.
func TestLocalEndpointBypassesProxy(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")
	emu := newEmu(t, slbemu.Config{})
	s := newSink(t, emu)
	s.Watch(routeSet(httpRoute("wordpress-http", 8080)))
	if _, err := s.Observe(context.Background()); err != nil {
		t.Fatalf("Observe through a proxy that does not exist: %v", err)
	}
}

// Over HTTPS, as against the real endpoints: the certificate is verified (here against
// the test server's own CA).
func TestHTTPSEndpoint(t *testing.T) {
	emu := slbemu.New(slbemu.Config{
		Credentials:   []slbemu.Credential{{AccessKeyID: testAK, AccessKeySecret: testSecret}},
		LoadBalancers: []slbemu.LoadBalancer{{ID: testLB, Region: testRegion}},
	})
	srv := httptest.NewUnstartedServer(emu)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); emu.Close() })
	opts := Options{Endpoint: srv.URL, Credentials: &Credentials{AccessKeyID: testAK, AccessKeySecret: testSecret},
		Transport: srv.Client().Transport.(*http.Transport), Retry: Retry{Attempts: 2, Base: time.Millisecond}}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.scheme != "HTTPS" {
		t.Fatalf("scheme %s", s.scheme)
	}
	reconcileOnce(t, s, routeSet(httpRoute("wordpress-http", 8080)), swarmState{nodes: threeNodes(), published: wordpressPublished(30080)})
	if len(emu.Snapshot().VServerGroups) != 1 {
		t.Error("nothing created over HTTPS")
	}

	// Without the CA the certificate is refused, and that is no transient error.
	opts.Transport = nil
	s, _ = New(opts)
	s.Watch(routeSet(httpRoute("wordpress-http", 8080)))
	emu.ResetCalls()
	_, err = s.Observe(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "gave up") {
		t.Errorf("Observe with an untrusted certificate: %v, want a certificate error without retries", err)
	}
}

// Malformed changes are errors, never panics, and send nothing.
func TestApplyRejectsMalformedChanges(t *testing.T) {
	s, err := New(Options{Endpoint: "http://127.0.0.1:1", Credentials: &Credentials{AccessKeyID: "a", AccessKeySecret: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	lkey := resource.ListenerKey("lb-1", 80, "http")
	gkey := resource.VServerGroupKey("lb-1", "capstan/capstan/web")
	l := &resource.Resource{Key: lkey, SLBListener: &resource.SLBListener{LoadBalancerID: "lb-1", Description: "capstan/capstan/web"}}
	g := &resource.Resource{Key: gkey, VServerGroup: &resource.VServerGroup{LoadBalancerID: "lb-1", Name: "capstan/capstan/web"}}
	user := &resource.Resource{Key: lkey, SLBListener: &resource.SLBListener{LoadBalancerID: "lb-1", Description: "mine"}}
	for _, c := range []reconcile.Change{
		{Action: reconcile.Create, Key: lkey},
		{Action: reconcile.Update, Key: lkey, After: l},
		{Action: reconcile.Update, Key: gkey, After: g, Before: l},
		{Action: reconcile.Update, Key: gkey, After: g, Before: &resource.Resource{Key: gkey}},
		{Action: reconcile.Delete, Key: lkey},
		{Action: reconcile.Delete, Key: lkey, Before: user},
		{Action: reconcile.Scale, Key: lkey, After: l, Before: l},
		{Action: reconcile.Create, Key: gkey, After: l},
		{Action: reconcile.Create, Key: resource.ServiceKey("x"), After: l},
	} {
		if err := s.Apply(context.Background(), c); err == nil {
			t.Errorf("Apply(%c %s) succeeded", c.Action, c.Key)
		}
	}
	if calls, _ := s.Stats(); calls != 0 {
		t.Errorf("%d calls sent", calls)
	}
}
