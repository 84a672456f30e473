package slbemu_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// checkShape walks a raw JSON answer against the SDK response type: every key must be
// one the SDK struct declares (case-sensitive), wrappers must be objects or arrays as
// declared, and scalars must have the declared JSON type (the SDK decodes fuzzily, so
// decoding alone would hide a number sent as a string).
func checkShape(path string, v any, typ reflect.Type) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	var errs []string
	bad := func(want string) []string { return []string{fmt.Sprintf("%s: %T, want %s", path, v, want)} }
	switch typ.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("object")
		}
		fieldsByTag := map[string]reflect.Type{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			if tag := strings.Split(f.Tag.Get("json"), ",")[0]; tag != "" && tag != "-" {
				fieldsByTag[tag] = f.Type
			}
		}
		for k, val := range m {
			ft, ok := fieldsByTag[k]
			if !ok {
				errs = append(errs, fmt.Sprintf("%s.%s: key not in %s", path, k, typ.Name()))
				continue
			}
			errs = append(errs, checkShape(path+"."+k, val, ft)...)
		}
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			return bad("array")
		}
		for i, e := range a {
			errs = append(errs, checkShape(fmt.Sprintf("%s[%d]", path, i), e, typ.Elem())...)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return bad("string")
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return bad("integer")
		}
		if _, err := n.Int64(); err != nil {
			return bad("integer")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad("bool")
		}
	default:
		return bad(typ.Kind().String())
	}
	return errs
}

// TestResponseShapes drives every action through the SDK, in an order that builds the
// state the later ones describe, and checks each raw answer against the SDK's struct.
func TestResponseShapes(t *testing.T) {
	emu := newEmu(t, func(c *slbemu.Config) { c.LoadBalancers[0].Tags = map[string]string{"env": "test"} })
	c, rec := newClient(t, emu, testSecret)
	var group, group2 string
	tag := &[]slb.CreateVServerGroupTag{{Key: "owner", Value: "capstan"}}
	steps := []struct {
		name string
		call func() (any, error)
	}{
		{"CreateVServerGroup", func() (any, error) {
			r := slb.CreateCreateVServerGroupRequest()
			r.LoadBalancerId, r.VServerGroupName, r.Tag = testLB, "capstan/web/80", tag
			r.BackendServers = `[{"ServerId":"i-a","Port":"30080","Weight":"100","Type":"ecs","Description":"capstan/web/80"}]`
			resp, err := c.CreateVServerGroup(r)
			if err == nil {
				group = resp.VServerGroupId
			}
			return resp, err
		}},
		{"CreateVServerGroup empty", func() (any, error) {
			r := slb.CreateCreateVServerGroupRequest()
			r.LoadBalancerId, r.VServerGroupName = testLB, "spare"
			resp, err := c.CreateVServerGroup(r)
			if err == nil {
				group2 = resp.VServerGroupId
			}
			return resp, err
		}},
		{"AddVServerGroupBackendServers", func() (any, error) {
			return addBackends(c, group, `[{"ServerId":"i-b","Port":"30080","Weight":"50"},{"ServerId":"i-c","Port":"30080","Type":"eni","ServerIp":"10.0.0.3"}]`)
		}},
		{"SetVServerGroupAttribute", func() (any, error) {
			r := slb.CreateSetVServerGroupAttributeRequest()
			r.VServerGroupId, r.VServerGroupName = group, "capstan/web/80"
			r.BackendServers = `[{"ServerId":"i-b","Port":"30080","Weight":"80"}]`
			return c.SetVServerGroupAttribute(r)
		}},
		{"ModifyVServerGroupBackendServers", func() (any, error) {
			r := slb.CreateModifyVServerGroupBackendServersRequest()
			r.VServerGroupId = group
			r.OldBackendServers = `[{"ServerId":"i-c","Port":"30080","Type":"eni","ServerIp":"10.0.0.3"}]`
			r.NewBackendServers = `[{"ServerId":"i-d","Port":"30080"}]`
			return c.ModifyVServerGroupBackendServers(r)
		}},
		{"AddBackendServers", func() (any, error) {
			r := slb.CreateAddBackendServersRequest()
			r.LoadBalancerId, r.BackendServers = testLB, `[{"ServerId":"i-a","Weight":"100"},{"ServerId":"i-b","Weight":"100"}]`
			return c.AddBackendServers(r)
		}},
		{"SetBackendServers", func() (any, error) {
			r := slb.CreateSetBackendServersRequest()
			r.LoadBalancerId, r.BackendServers = testLB, `[{"ServerId":"i-b","Weight":"10"}]`
			return c.SetBackendServers(r)
		}},
		{"RemoveBackendServers", func() (any, error) {
			r := slb.CreateRemoveBackendServersRequest()
			r.LoadBalancerId, r.BackendServers = testLB, `[{"ServerId":"i-b"}]`
			return c.RemoveBackendServers(r)
		}},
		{"CreateLoadBalancerHTTPListener", func() (any, error) {
			r := createHTTPListener(80, group)
			r.HealthCheck, r.HealthCheckURI, r.HealthCheckHttpCode = "on", "/license.txt", "http_2xx,http_3xx"
			r.StickySession, r.StickySessionType, r.CookieTimeout = "on", "insert", requests.NewInteger(1800)
			r.Description = "capstan/80/web/shop/c1"
			r.Tag = &[]slb.CreateLoadBalancerHTTPListenerTag{{Key: "k", Value: "v"}}
			return c.CreateLoadBalancerHTTPListener(r)
		}},
		{"CreateLoadBalancerHTTPSListener", func() (any, error) {
			r := slb.CreateCreateLoadBalancerHTTPSListenerRequest()
			r.LoadBalancerId, r.ListenerPort, r.BackendServerPort = testLB, requests.NewInteger(443), requests.NewInteger(30443)
			r.HealthCheck, r.StickySession, r.ServerCertificateId = "off", "off", "cert-1"
			return c.CreateLoadBalancerHTTPSListener(r)
		}},
		{"CreateLoadBalancerTCPListener", func() (any, error) {
			r := createTCPListener(1000, group)
			r.HealthCheckType, r.HealthCheckURI = "http", "/healthz"
			r.PersistenceTimeout, r.EstablishedTimeout = requests.NewInteger(60), requests.NewInteger(600)
			r.HealthCheckInterval = requests.NewInteger(5)
			return c.CreateLoadBalancerTCPListener(r)
		}},
		{"CreateLoadBalancerUDPListener", func() (any, error) {
			r := slb.CreateCreateLoadBalancerUDPListenerRequest()
			r.LoadBalancerId, r.ListenerPort, r.VServerGroupId = testLB, requests.NewInteger(1000), group
			r.HealthCheckReq, r.HealthCheckExp = "ping", "pong"
			return c.CreateLoadBalancerUDPListener(r)
		}},
		{"StartLoadBalancerListener", func() (any, error) {
			return c.StartLoadBalancerListener(control(slb.CreateStartLoadBalancerListenerRequest(), 80, "http"))
		}},
		{"StartLoadBalancerListener tcp", func() (any, error) {
			return c.StartLoadBalancerListener(control(slb.CreateStartLoadBalancerListenerRequest(), 1000, "tcp"))
		}},
		{"SetLoadBalancerHTTPListenerAttribute", func() (any, error) {
			r := slb.CreateSetLoadBalancerHTTPListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort = testLB, requests.NewInteger(80)
			r.VServerGroup, r.VServerGroupId, r.HealthCheckInterval = "on", group, requests.NewInteger(3)
			r.XForwardedForProto = "on"
			return c.SetLoadBalancerHTTPListenerAttribute(r)
		}},
		{"SetLoadBalancerHTTPSListenerAttribute", func() (any, error) {
			r := slb.CreateSetLoadBalancerHTTPSListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort, r.TLSCipherPolicy = testLB, requests.NewInteger(443), "tls_cipher_policy_1_2"
			return c.SetLoadBalancerHTTPSListenerAttribute(r)
		}},
		{"SetLoadBalancerTCPListenerAttribute", func() (any, error) {
			r := slb.CreateSetLoadBalancerTCPListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort, r.Scheduler = testLB, requests.NewInteger(1000), "wlc"
			r.ProxyProtocolV2Enabled = requests.NewBoolean(true)
			return c.SetLoadBalancerTCPListenerAttribute(r)
		}},
		{"SetLoadBalancerUDPListenerAttribute", func() (any, error) {
			r := slb.CreateSetLoadBalancerUDPListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort, r.HealthCheckSwitch = testLB, requests.NewInteger(1000), "off"
			return c.SetLoadBalancerUDPListenerAttribute(r)
		}},
		{"DescribeLoadBalancers", func() (any, error) {
			return c.DescribeLoadBalancers(slb.CreateDescribeLoadBalancersRequest())
		}},
		{"DescribeLoadBalancerAttribute", func() (any, error) {
			r := slb.CreateDescribeLoadBalancerAttributeRequest()
			r.LoadBalancerId = testLB
			return c.DescribeLoadBalancerAttribute(r)
		}},
		{"DescribeLoadBalancerListeners", func() (any, error) {
			r := slb.CreateDescribeLoadBalancerListenersRequest()
			r.LoadBalancerId = &[]string{testLB}
			return c.DescribeLoadBalancerListeners(r)
		}},
		{"DescribeLoadBalancerHTTPListenerAttribute", func() (any, error) {
			r := slb.CreateDescribeLoadBalancerHTTPListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort = testLB, requests.NewInteger(80)
			return c.DescribeLoadBalancerHTTPListenerAttribute(r)
		}},
		{"DescribeLoadBalancerHTTPSListenerAttribute", func() (any, error) {
			r := slb.CreateDescribeLoadBalancerHTTPSListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort = testLB, requests.NewInteger(443)
			return c.DescribeLoadBalancerHTTPSListenerAttribute(r)
		}},
		{"DescribeLoadBalancerTCPListenerAttribute", func() (any, error) {
			r := slb.CreateDescribeLoadBalancerTCPListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort = testLB, requests.NewInteger(1000)
			return c.DescribeLoadBalancerTCPListenerAttribute(r)
		}},
		{"DescribeLoadBalancerUDPListenerAttribute", func() (any, error) {
			r := slb.CreateDescribeLoadBalancerUDPListenerAttributeRequest()
			r.LoadBalancerId, r.ListenerPort = testLB, requests.NewInteger(1000)
			return c.DescribeLoadBalancerUDPListenerAttribute(r)
		}},
		{"DescribeVServerGroups", func() (any, error) {
			r := slb.CreateDescribeVServerGroupsRequest()
			r.LoadBalancerId, r.IncludeListener, r.IncludeRule = testLB, requests.NewBoolean(true), requests.NewBoolean(true)
			return c.DescribeVServerGroups(r)
		}},
		{"DescribeVServerGroupAttribute", func() (any, error) {
			r := slb.CreateDescribeVServerGroupAttributeRequest()
			r.VServerGroupId = group
			return c.DescribeVServerGroupAttribute(r)
		}},
		{"DescribeHealthStatus", func() (any, error) {
			r := slb.CreateDescribeHealthStatusRequest()
			r.LoadBalancerId = testLB
			return c.DescribeHealthStatus(r)
		}},
		{"TagResources", func() (any, error) {
			r := slb.CreateTagResourcesRequest()
			r.ResourceType, r.ResourceId = "instance", &[]string{testLB}
			r.Tag = &[]slb.TagResourcesTag{{Key: "capstan.managed", Value: "true"}}
			return c.TagResources(r)
		}},
		{"ListTagResources", func() (any, error) {
			r := slb.CreateListTagResourcesRequest()
			r.ResourceType, r.ResourceId = "instance", &[]string{testLB}
			return c.ListTagResources(r)
		}},
		{"UntagResources", func() (any, error) {
			r := slb.CreateUntagResourcesRequest()
			r.ResourceType, r.ResourceId, r.TagKey = "instance", &[]string{testLB}, &[]string{"env"}
			return c.UntagResources(r)
		}},
		{"RemoveVServerGroupBackendServers", func() (any, error) {
			r := slb.CreateRemoveVServerGroupBackendServersRequest()
			r.VServerGroupId, r.BackendServers = group, `[{"ServerId":"i-d","Port":"30080"}]`
			return c.RemoveVServerGroupBackendServers(r)
		}},
		{"StopLoadBalancerListener", func() (any, error) {
			return c.StopLoadBalancerListener(control(slb.CreateStopLoadBalancerListenerRequest(), 80, "http"))
		}},
		{"DeleteLoadBalancerListener", func() (any, error) {
			return c.DeleteLoadBalancerListener(control(slb.CreateDeleteLoadBalancerListenerRequest(), 80, "http"))
		}},
		{"DeleteVServerGroup", func() (any, error) {
			r := slb.CreateDeleteVServerGroupRequest()
			r.VServerGroupId = group2
			return c.DeleteVServerGroup(r)
		}},
	}
	covered := map[string]bool{}
	for _, st := range steps {
		resp, err := st.call()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		_, body := rec.last()
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: answer is not JSON: %v", st.name, err)
		}
		for _, e := range checkShape(strings.Fields(st.name)[0], v, reflect.TypeOf(resp)) {
			t.Error(e)
		}
		if id, _ := v.(map[string]any)["RequestId"].(string); len(id) != 36 || strings.ToUpper(id) != id {
			t.Errorf("%s: RequestId %q is not an upper-case UUID", st.name, id)
		}
		covered[strings.Fields(st.name)[0]] = true
	}
	for _, a := range slbemu.Actions() {
		if !covered[a] {
			t.Errorf("action %s has no shape check", a)
		}
	}
}

// The checker itself must catch what the SDK's fuzzy decoding would let through.
func TestCheckShapeCatches(t *testing.T) {
	typ := reflect.TypeOf(&slb.DescribeVServerGroupAttributeResponse{})
	tests := []struct {
		name, body string
		bad        bool
	}{
		{"good", `{"RequestId":"x","BackendServers":{"BackendServer":[{"ServerId":"i-1","Port":80,"Weight":100}]}}`, false},
		{"port as string", `{"BackendServers":{"BackendServer":[{"Port":"80"}]}}`, true},
		{"unknown key", `{"RequestID":"x"}`, true},
		{"missing wrapper", `{"BackendServers":[{"ServerId":"i-1"}]}`, true},
		{"bool as string", `{"BackendServers":{"BackendServer":[{"ProxyProtocolV2Enabled":"false"}]}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := json.NewDecoder(strings.NewReader(tt.body))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			if errs := checkShape("r", v, typ); (len(errs) > 0) != tt.bad {
				t.Errorf("checkShape = %v, want bad=%v", errs, tt.bad)
			}
		})
	}
}
