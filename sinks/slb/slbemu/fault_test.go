package slbemu_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

func describeLBs(c *slb.Client) error {
	_, err := c.DescribeLoadBalancers(slb.CreateDescribeLoadBalancersRequest())
	return err
}

func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	var se interface{ ErrorCode() string }
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return "client error"
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		fault  slbemu.Fault
		calls  int
		want   []string // per call: "ok" or the code
		status int      // HTTP status of the faulted answers
	}{
		{"throttling for the next 2 calls", slbemu.Fault{Code: "Throttling", Count: 2}, 4,
			[]string{"Throttling", "Throttling", "ok", "ok"}, 400},
		{"user flow control", slbemu.Fault{Code: "Throttling.User", Count: 1}, 2, []string{"Throttling.User", "ok"}, 400},
		{"service unavailable", slbemu.Fault{Code: "ServiceUnavailable", Count: 1}, 2, []string{"ServiceUnavailable", "ok"}, 503},
		{"internal error", slbemu.Fault{Code: "InternalError", Count: 1}, 2, []string{"InternalError", "ok"}, 500},
		{"every second call", slbemu.Fault{Code: "SystemBusy", Ratio: 0.5}, 6,
			[]string{"ok", "SystemBusy", "ok", "SystemBusy", "ok", "SystemBusy"}, 400},
		{"a quarter, twice", slbemu.Fault{Code: "Throttling", Ratio: 0.25, Count: 2}, 10,
			[]string{"ok", "ok", "ok", "Throttling", "ok", "ok", "ok", "Throttling", "ok", "ok"}, 400},
		{"other action untouched", slbemu.Fault{Action: "CreateVServerGroup", Code: "Throttling"}, 2, []string{"ok", "ok"}, 0},
		{"custom code and status", slbemu.Fault{Code: "Forbidden.RAM", HTTPStatus: 403, Count: 1}, 2,
			[]string{"Forbidden.RAM", "ok"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu := newEmu(t, nil)
			c, _ := newClient(t, emu, testSecret)
			if err := emu.InjectFault(tt.fault); err != nil {
				t.Fatal(err)
			}
			var got []string
			for range tt.calls {
				err := describeLBs(c)
				got = append(got, codeOf(err))
				if err != nil {
					if se := serverError(t, err); se.HttpStatus() != tt.status {
						t.Errorf("%s answered HTTP %d, want %d", se.ErrorCode(), se.HttpStatus(), tt.status)
					}
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			for i, call := range emu.Calls() {
				if call.Injected != (tt.want[i] != "ok") {
					t.Errorf("call %d: Injected=%v, answer %s", i, call.Injected, tt.want[i])
				}
			}
		})
	}
}

// A faulted write changes nothing; faults never hide an authentication failure.
func TestFaultedCallChangesNothing(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	mustOK(t, emu.InjectFault(slbemu.Fault{Action: "CreateVServerGroup", Code: "ServiceUnavailable", Count: 1}))
	r := slb.CreateCreateVServerGroupRequest()
	r.LoadBalancerId, r.VServerGroupName = testLB, "g"
	_, err := c.CreateVServerGroup(r)
	wantCode(t, err, 503, "ServiceUnavailable")
	if n := len(emu.Snapshot().VServerGroups); n != 0 {
		t.Errorf("faulted create left %d groups", n)
	}

	mustOK(t, emu.InjectFault(slbemu.Fault{Code: "Throttling"}))
	bad, _ := newClient(t, emu, "wrong")
	wantCode(t, describeLBs(bad), 400, "SignatureDoesNotMatch")
	emu.ClearFaults()
	mustOK(t, describeLBs(c))

	for _, f := range []slbemu.Fault{{}, {Code: "Throttling", Ratio: 2}, {Action: "Nope", Code: "Throttling"}, {Code: "X", HTTPStatus: 200}} {
		if err := emu.InjectFault(f); err == nil {
			t.Errorf("InjectFault(%+v) accepted an invalid fault", f)
		}
	}
}

// Latency beyond the client's read timeout makes the SDK give up (AutoRetry off).
func TestFaultLatency(t *testing.T) {
	emu := newEmu(t, nil)
	cfg := sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(false).WithTimeout(200 * time.Millisecond)
	cfg.Transport = &http.Transport{Proxy: nil}
	c, err := slb.NewClientWithOptions(testRegion, cfg, credentials.NewStaticAKCredentialsProvider(testKey, testSecret))
	mustOK(t, err)
	c.Domain = emu.Endpoint()
	mustOK(t, emu.InjectFault(slbemu.Fault{Latency: 5 * time.Second, Count: 1}))
	err = describeLBs(c)
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Fatalf("want a client timeout, got %T %v", err, err)
	}
	mustOK(t, describeLBs(c))
}

// The SDK's own retries (AutoRetry on, 5xx) re-sign with fresh nonces, so they pass.
func TestSDKRetriesPassNonceCheck(t *testing.T) {
	emu := newEmu(t, nil)
	cfg := sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(true).WithMaxRetryTime(3)
	cfg.Transport = &http.Transport{Proxy: nil}
	c, err := slb.NewClientWithOptions(testRegion, cfg, credentials.NewStaticAKCredentialsProvider(testKey, testSecret))
	mustOK(t, err)
	c.Domain = emu.Endpoint()
	mustOK(t, emu.InjectFault(slbemu.Fault{Code: "InternalError", Count: 2}))
	mustOK(t, describeLBs(c))
	calls := emu.Calls()
	var codes []string
	nonces := map[string]bool{}
	for _, call := range calls {
		codes = append(codes, call.Code)
		nonces[call.Params["SignatureNonce"]] = true
	}
	if diff := cmp.Diff([]string{"InternalError", "InternalError", ""}, codes); diff != "" {
		t.Errorf("codes (-want +got):\n%s", diff)
	}
	if len(nonces) != 3 {
		t.Errorf("retries reused nonces: %v", nonces)
	}
}

func adminDo(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	mustOK(t, err)
	resp, err := http.DefaultClient.Do(req)
	mustOK(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminAPI(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	base := emu.URL() + "/_emu/"

	status, body := adminDo(t, "POST", base+"faults", `{"action":"DescribeLoadBalancers","code":"Throttling","count":1,"latency":"1ms"}`)
	if status != 200 || !strings.Contains(body, `"latency":"1ms"`) {
		t.Fatalf("POST faults: %d %s", status, body)
	}
	wantCode(t, describeLBs(c), 400, "Throttling")
	mustOK(t, describeLBs(c))
	if status, body := adminDo(t, "GET", base+"faults", ""); status != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("spent fault still listed: %d %s", status, body)
	}

	status, body = adminDo(t, "GET", base+"calls", "")
	var calls []slbemu.Call
	if status != 200 || json.Unmarshal([]byte(body), &calls) != nil || len(calls) != 2 {
		t.Fatalf("GET calls: %d %s", status, body)
	}
	if calls[0].Code != "Throttling" || !calls[0].Injected || calls[1].Code != "" || calls[1].Action != "DescribeLoadBalancers" {
		t.Errorf("call log %+v", calls)
	}
	if _, ok := calls[0].Params["Signature"]; ok {
		t.Error("call log keeps the Signature")
	}
	if calls[0].Params["AccessKeyId"] != testKey || calls[0].Write {
		t.Errorf("call params %v write %v", calls[0].Params, calls[0].Write)
	}
	if status, _ := adminDo(t, "DELETE", base+"calls", ""); status != 204 || len(emu.Calls()) != 0 {
		t.Errorf("DELETE calls: %d, %d left", status, len(emu.Calls()))
	}

	if status, body := adminDo(t, "POST", base+"faults", `[{"code":"Throttling","ratio":0.5},{"latency":"2ms"}]`); status != 200 {
		t.Errorf("POST fault list: %d %s", status, body)
	}
	if n := len(emu.Faults()); n != 2 {
		t.Errorf("%d faults after posting a list of 2", n)
	}
	if status, _ := adminDo(t, "DELETE", base+"faults", ""); status != 204 || len(emu.Faults()) != 0 {
		t.Errorf("DELETE faults: %d", status)
	}

	for _, bad := range []string{`{"code":"Throttling","ratio":2}`, `{"latency":"soon"}`, `not json`, `{}`} {
		if status, body := adminDo(t, "POST", base+"faults", bad); status != 400 || !strings.Contains(body, "error") {
			t.Errorf("POST faults %s: %d %s, want 400", bad, status, body)
		}
	}

	_, err := c.CreateLoadBalancerTCPListener(createTCPListener(80, ""))
	mustOK(t, err)
	status, body = adminDo(t, "GET", base+"state", "")
	var st slbemu.State
	if status != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.LoadBalancers) != 1 ||
		len(st.LoadBalancers[0].Listeners) != 1 || st.LoadBalancers[0].Listeners[0].Status != "stopped" {
		t.Errorf("GET state: %d %s", status, body)
	}

	if status, _ := adminDo(t, "POST", base+"health", `{"serverId":"i-a","port":80,"status":"sick"}`); status != 400 {
		t.Errorf("POST health with a bad status: %d", status)
	}
	if status, _ := adminDo(t, "POST", base+"health", `{"serverId":"i-a","port":80,"status":"abnormal"}`); status != 204 {
		t.Errorf("POST health: %d", status)
	}
	if status, _ := adminDo(t, "GET", base+"nothing", ""); status != 404 {
		t.Errorf("unknown admin endpoint: %d", status)
	}
	if emu.CountCalls(true) != 1 || emu.CountCalls(false, "CreateLoadBalancerTCPListener") != 1 {
		t.Errorf("CountCalls: writes %d", emu.CountCalls(true))
	}
}
