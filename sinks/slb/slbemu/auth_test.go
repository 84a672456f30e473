package slbemu_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// The SDK's own golden vectors (sdk/auth/rpc_signature_composer_test.go).
func TestSignatureGoldenVectors(t *testing.T) {
	base := url.Values{
		"Version": {""}, "Action": {""}, "Format": {"JSON"}, "Timestamp": {"mock date"},
		"SignatureMethod": {"HMAC-SHA1"}, "SignatureVersion": {"1.0"}, "SignatureType": {""},
		"SignatureNonce": {"MOCK_UUID"}, "AccessKeyId": {"accessKeyId"}, "RegionId": {"regionId"},
	}
	withToken := url.Values{"SecurityToken": {"accessKeyStsToken"}}
	for k, v := range base {
		withToken[k] = v
	}
	tests := []struct {
		name   string
		params url.Values
		want   string
	}{
		{"access key", base, "7loPmFjvDnzOVnQeQNj85S6nFGY="},
		{"sts token", withToken, "5Nxdcler+ihqWqv0Hr2On4PsBf4="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := slbemu.Sign(slbemu.StringToSign("GET", tt.params), "accessKeySecret"); got != tt.want {
				t.Errorf("signature %s, want %s", got, tt.want)
			}
		})
	}
	if got, want := slbemu.StringToSign("GET", url.Values{"key": {"value"}, "q": {"value"}}), "GET&%2F&key%3Dvalue%26q%3Dvalue"; got != want {
		t.Errorf("string to sign %q, want %q", got, want)
	}
	if got := slbemu.StringToSign("GET", url.Values{"q": {"http://domain/?q=value&q2=value2"}}); !strings.HasSuffix(got,
		"q%3Dhttp%253A%252F%252Fdomain%252F%253Fq%253Dvalue%2526q2%253Dvalue2") {
		t.Errorf("string to sign %q does not double-encode the value", got)
	}
}

func describeLB(c *slb.Client) error {
	r := slb.CreateDescribeLoadBalancerAttributeRequest()
	r.LoadBalancerId = testLB
	_, err := c.DescribeLoadBalancerAttribute(r)
	return err
}

func TestGatewayChecks(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*slbemu.Config)
		secret string
		call   func(*slb.Client) error
		status int
		code   string
	}{
		{name: "good request", secret: testSecret, call: describeLB},
		{name: "wrong secret", secret: "not-the-secret", call: describeLB, status: 400, code: "SignatureDoesNotMatch"},
		{name: "unknown key", secret: testSecret, mod: func(c *slbemu.Config) {
			c.Credentials = []slbemu.Credential{{AccessKeyID: "someone-else", AccessKeySecret: testSecret}}
		}, call: describeLB, status: 404, code: "InvalidAccessKeyId.NotFound"},
		{name: "clock ahead of the client", secret: testSecret, mod: func(c *slbemu.Config) {
			c.Now = func() time.Time { return time.Now().Add(time.Hour) }
		}, call: describeLB, status: 400, code: "InvalidTimeStamp.Expired"},
		{name: "clock behind, within skew", secret: testSecret, mod: func(c *slbemu.Config) {
			c.Now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
		}, call: describeLB},
		{name: "STS key without token", secret: testSecret, mod: func(c *slbemu.Config) {
			c.Credentials[0].SecurityToken = "sts-token"
		}, call: describeLB, status: 400, code: "MissingParameter"},
		{name: "wrong version", secret: testSecret, call: func(c *slb.Client) error {
			r := requests.NewCommonRequest()
			r.Version, r.ApiName, r.Product = "2015-01-01", "DescribeLoadBalancers", "Slb"
			_, err := c.ProcessCommonRequest(r)
			return err
		}, status: 400, code: "InvalidVersion"},
		{name: "unknown action", secret: testSecret, call: func(c *slb.Client) error {
			r := requests.NewCommonRequest()
			r.Version, r.ApiName, r.Product = "2014-05-15", "DescribeNothing", "Slb"
			_, err := c.ProcessCommonRequest(r)
			return err
		}, status: 404, code: "InvalidAction.NotFound"},
		{name: "GET request signed with GET", secret: testSecret, call: func(c *slb.Client) error {
			r := requests.NewCommonRequest()
			r.Method = "GET"
			r.Version, r.ApiName, r.Product = "2014-05-15", "DescribeLoadBalancers", "Slb"
			resp, err := c.ProcessCommonRequest(r)
			if err == nil && !strings.Contains(resp.GetHttpContentString(), testLB) {
				t.Errorf("GET DescribeLoadBalancers does not list %s: %s", testLB, resp.GetHttpContentString())
			}
			return err
		}},
		{name: "unknown load balancer", secret: testSecret, call: func(c *slb.Client) error {
			r := slb.CreateDescribeLoadBalancerAttributeRequest()
			r.LoadBalancerId = "lb-nope"
			_, err := c.DescribeLoadBalancerAttribute(r)
			return err
		}, status: 404, code: "InvalidLoadBalancerId.NotFound"},
		{name: "load balancer of another region", secret: testSecret, call: func(c *slb.Client) error {
			r := slb.CreateDescribeLoadBalancerAttributeRequest()
			r.LoadBalancerId = testLB
			r.RegionId = "cn-beijing"
			_, err := c.DescribeLoadBalancerAttribute(r)
			return err
		}, status: 404, code: "InvalidLoadBalancerId.NotFound"},
		{name: "missing required parameter", secret: testSecret, call: func(c *slb.Client) error {
			r := createHTTPListener(8080, "")
			r.StickySession = ""
			_, err := c.CreateLoadBalancerHTTPListener(r)
			return err
		}, status: 400, code: "MissingParameter"},
		{name: "parameter out of range", secret: testSecret, call: func(c *slb.Client) error {
			r := createHTTPListener(8080, "")
			r.HealthyThreshold = requests.NewInteger(11)
			_, err := c.CreateLoadBalancerHTTPListener(r)
			return err
		}, status: 400, code: "InvalidParameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu := newEmu(t, tt.mod)
			c, _ := newClient(t, emu, tt.secret)
			err := tt.call(c)
			if tt.code == "" {
				mustOK(t, err)
				return
			}
			wantCode(t, err, tt.status, tt.code)
			calls := emu.Calls()
			if len(calls) != 1 || calls[0].Code != tt.code || calls[0].HTTPStatus != tt.status {
				t.Errorf("call log %+v, want one call answered %s", calls, tt.code)
			}
		})
	}
}

// The SDK recognises our answer to a wrong secret as its own string to sign, so its
// Recommend tells the user to check the secret.
func TestWrongSecretRecommendation(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, "wrong")
	err := describeLB(c)
	se := serverError(t, err)
	if !strings.Contains(se.Recommend(), "InvalidAccessKeySecret") {
		t.Errorf("Recommend %q does not point at the secret; message %q", se.Recommend(), se.Message())
	}
}

// Replaying the exact signed URL the SDK sent is refused as a reused nonce.
func TestNonceReuse(t *testing.T) {
	emu := newEmu(t, nil)
	c, rec := newClient(t, emu, testSecret)
	mustOK(t, describeLB(c))
	u, _ := rec.last()
	resp, err := http.Post(u, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "q=SignatureNonceUsed&product=Slb") {
		t.Errorf("Recommend URL escaped in %s", raw)
	}
	if resp.StatusCode != 400 || body["Code"] != "SignatureNonceUsed" {
		t.Errorf("replay answered %d %v, want 400 SignatureNonceUsed", resp.StatusCode, body)
	}
	for _, k := range []string{"RequestId", "HostId", "Code", "Message", "Recommend"} {
		if _, ok := body[k].(string); !ok {
			t.Errorf("error body key %s is %T, want a string", k, body[k])
		}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json;charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	// A fresh signature with a new nonce still works.
	mustOK(t, describeLB(c))
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  slbemu.Config
		want string
	}{
		{"no credentials", slbemu.Config{}, "no credentials"},
		{"lb without region", slbemu.Config{
			Credentials:   []slbemu.Credential{{AccessKeyID: "a", AccessKeySecret: "b"}},
			LoadBalancers: []slbemu.LoadBalancer{{ID: "lb-1"}},
		}, "ID and Region"},
		{"duplicate lb", slbemu.Config{
			Credentials:   []slbemu.Credential{{AccessKeyID: "a", AccessKeySecret: "b"}},
			LoadBalancers: []slbemu.LoadBalancer{{ID: "lb-1", Region: "r"}, {ID: "lb-1", Region: "r"}},
		}, "listed twice"},
		{"bad address", slbemu.Config{
			Credentials:   []slbemu.Credential{{AccessKeyID: "a", AccessKeySecret: "b"}},
			LoadBalancers: []slbemu.LoadBalancer{{ID: "lb-1", Region: "r", Address: "localhost"}},
		}, "not an IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := slbemu.ParseLoadBalancer("lb-1"); err == nil {
		t.Error("ParseLoadBalancer accepted an id without region")
	}
	if lb, err := slbemu.ParseLoadBalancer("lb-1@cn-hangzhou"); err != nil || lb.ID != "lb-1" || lb.Region != "cn-hangzhou" {
		t.Errorf("ParseLoadBalancer = %+v, %v", lb, err)
	}
}
