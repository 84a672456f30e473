package slbemu_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

type member struct {
	ServerID, Type, Description string
	Port, Weight                int
}

func groupMembers(t *testing.T, c *slb.Client, group string) []member {
	t.Helper()
	r := slb.CreateDescribeVServerGroupAttributeRequest()
	r.VServerGroupId = group
	resp, err := c.DescribeVServerGroupAttribute(r)
	mustOK(t, err)
	if resp.VServerGroupId != group || resp.LoadBalancerId != testLB {
		t.Errorf("DescribeVServerGroupAttribute ids %q %q", resp.VServerGroupId, resp.LoadBalancerId)
	}
	out := []member{}
	for _, b := range resp.BackendServers.BackendServer {
		out = append(out, member{b.ServerId, b.Type, b.Description, b.Port, b.Weight})
	}
	return out
}

func backendsJSON(n, firstPort int) string {
	var list []map[string]string
	for i := range n {
		list = append(list, map[string]string{"ServerId": fmt.Sprintf("i-%03d", i), "Port": itoa(firstPort), "Weight": "100"})
	}
	b, _ := json.Marshal(list)
	return string(b)
}

// The BackendServers parameter is parsed as leniently as the real API; bad entries are
// refused with InvalidParameter and nothing is applied.
func TestBackendServersParsing(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    []member
		errCode string
	}{
		{"sdk style", `[{"ServerId":"i-1","Port":"80","Weight":"100","Type":"ecs","Description":"d"}]`,
			[]member{{"i-1", "ecs", "d", 80, 100}}, ""},
		{"docs single quotes", `[{'ServerId':'vm-233','Port':'80','Weight':'100'}]`,
			[]member{{"vm-233", "ecs", "", 80, 100}}, ""},
		{"ccm lower-case keys, numbers, extra keys", `[{"serverId":"i-2","port":30080,"weight":50,"type":"ecs","description":"k8s/x","IsUserManaged":false,"NodeName":"n1"}]`,
			[]member{{"i-2", "ecs", "k8s/x", 30080, 50}}, ""},
		{"default weight", `[{"ServerId":"i-3","Port":"81"}]`, []member{{"i-3", "ecs", "", 81, 100}}, ""},
		{"duplicates: first wins", `[{"ServerId":"i-4","Port":"80","Weight":"10"},{"ServerId":"i-4","Port":"80","Weight":"20"}]`,
			[]member{{"i-4", "ecs", "", 80, 10}}, ""},
		{"missing port", `[{"ServerId":"i-5"}]`, nil, "InvalidParameter"},
		{"weight above 100", `[{"ServerId":"i-6","Port":"80","Weight":"101"}]`, nil, "InvalidParameter"},
		{"eni without ServerIp", `[{"ServerId":"eni-1","Port":"80","Type":"eni"}]`, nil, "InvalidParameter"},
		{"not json", `i-1:80`, nil, "InvalidParameter"},
		{"21 in one call", backendsJSON(21, 80), nil, "InvalidParameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu := newEmu(t, nil)
			c, _ := newClient(t, emu, testSecret)
			g := createGroup(t, c, "g", "")
			_, err := addBackends(c, g, tt.raw)
			if tt.errCode != "" {
				wantCode(t, err, 400, tt.errCode)
				tt.want = []member{}
			} else {
				mustOK(t, err)
			}
			if diff := cmp.Diff(tt.want, groupMembers(t, c, g)); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
		})
	}
	// Exactly the batch limit is accepted.
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	g := createGroup(t, c, "g", "")
	resp, err := addBackends(c, g, backendsJSON(20, 80))
	mustOK(t, err)
	if len(resp.BackendServers.BackendServer) != 20 {
		t.Errorf("Add of 20 answered %d members", len(resp.BackendServers.BackendServer))
	}
}

func TestVServerGroupLifecycle(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	g := createGroup(t, c, "capstan/shop/web/80", "")
	_, err := addBackends(c, g, `[{"ServerId":"i-a","Port":"30080","Description":"capstan/shop/web/80"},{"ServerId":"i-b","Port":"30080"}]`)
	mustOK(t, err)
	_, err = addBackends(c, g, `[{"ServerId":"i-a","Port":"30080"}]`)
	wantCode(t, err, 400, "InvalidParameter") // already a member

	set := slb.CreateSetVServerGroupAttributeRequest()
	set.VServerGroupId, set.VServerGroupName = g, "renamed"
	set.BackendServers = `[{"ServerId":"i-b","Port":"30080","Weight":"0","Description":"drained"}]`
	sresp, err := c.SetVServerGroupAttribute(set)
	mustOK(t, err)
	if sresp.VServerGroupName != "renamed" || len(sresp.BackendServers.BackendServer) != 2 {
		t.Errorf("SetVServerGroupAttribute answered %+v", sresp)
	}

	mod := slb.CreateModifyVServerGroupBackendServersRequest()
	mod.VServerGroupId = g
	mod.OldBackendServers = `[{"ServerId":"i-a","Port":"30080"}]`
	mod.NewBackendServers = `[{"ServerId":"i-c","Port":"30081","Weight":"60"}]`
	_, err = c.ModifyVServerGroupBackendServers(mod)
	mustOK(t, err)

	want := []member{{"i-b", "ecs", "drained", 30080, 0}, {"i-c", "ecs", "", 30081, 60}}
	if diff := cmp.Diff(want, groupMembers(t, c, g)); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}

	rm := slb.CreateRemoveVServerGroupBackendServersRequest()
	rm.VServerGroupId, rm.BackendServers = g, `[{"ServerId":"i-b","Port":"30080"}]`
	rresp, err := c.RemoveVServerGroupBackendServers(rm)
	mustOK(t, err)
	if len(rresp.BackendServers.BackendServer) != 1 || rresp.BackendServers.BackendServer[0].ServerId != "i-c" {
		t.Errorf("Remove answered %+v, want the remaining member i-c", rresp.BackendServers)
	}
	rm = slb.CreateRemoveVServerGroupBackendServersRequest()
	rm.VServerGroupId, rm.BackendServers = g, `[{"ServerId":"i-b","Port":"30080"}]`
	_, err = c.RemoveVServerGroupBackendServers(rm)
	wantCode(t, err, 400, "InvalidParameter") // not a member any more

	// DescribeVServerGroups: no members, but the count and, on request, the listeners.
	_, err = c.CreateLoadBalancerTCPListener(createTCPListener(7000, g))
	mustOK(t, err)
	d := slb.CreateDescribeVServerGroupsRequest()
	d.LoadBalancerId, d.IncludeListener = testLB, requests.NewBoolean(true)
	list, err := c.DescribeVServerGroups(d)
	mustOK(t, err)
	if n := len(list.VServerGroups.VServerGroup); n != 1 {
		t.Fatalf("want 1 group, got %d", n)
	}
	vg := list.VServerGroups.VServerGroup[0]
	ls := vg.AssociatedObjects.Listeners.Listener
	if vg.VServerGroupId != g || vg.VServerGroupName != "renamed" || vg.ServerCount != 1 ||
		len(ls) != 1 || ls[0].Port != 7000 || ls[0].Protocol != "tcp" {
		t.Errorf("DescribeVServerGroups entry %+v", vg)
	}

	unknown := slb.CreateDescribeVServerGroupAttributeRequest()
	unknown.VServerGroupId = "rsp-unknown"
	_, err = c.DescribeVServerGroupAttribute(unknown)
	wantCode(t, err, 400, "InvalidParameter")
	if se := serverError(t, err); se.Message() != "The specified VServerGroupId does not exist." {
		t.Errorf("unknown group message %q", se.Message())
	}
}

// 200 backends per load balancer, counted over every group.
func TestBackendQuota(t *testing.T) {
	emu := newEmu(t, nil)
	c, _ := newClient(t, emu, testSecret)
	var last string
	for i := range 10 {
		last = createGroup(t, c, fmt.Sprintf("g%d", i), backendsJSON(20, 30000+i))
	}
	_, err := addBackends(c, last, `[{"ServerId":"i-extra","Port":"1"}]`)
	wantCode(t, err, 400, "InstanceBackendServerNumberOverLimit")
	r := slb.CreateAddBackendServersRequest()
	r.LoadBalancerId, r.BackendServers = testLB, `[{"ServerId":"i-extra"}]`
	_, err = c.AddBackendServers(r)
	wantCode(t, err, 400, "InstanceBackendServerNumberOverLimit")
	if n := len(groupMembers(t, c, last)); n != 20 {
		t.Errorf("refused add changed the group: %d members", n)
	}
}

// With BackendPendingCalls, a backend change right after another on the same load
// balancer answers BackendServer.configuring; once the window passes it succeeds.
func TestBackendPendingWindow(t *testing.T) {
	emu := newEmu(t, func(c *slbemu.Config) { c.BackendPendingCalls = 1 })
	c, _ := newClient(t, emu, testSecret)
	g1 := createGroup(t, c, "g1", "")
	g2 := createGroup(t, c, "g2", "")
	_, err := addBackends(c, g1, `[{"ServerId":"i-a","Port":"80"}]`)
	mustOK(t, err)
	_, err = addBackends(c, g2, `[{"ServerId":"i-b","Port":"80"}]`)
	wantCode(t, err, 400, "BackendServer.configuring")
	_, err = addBackends(c, g2, `[{"ServerId":"i-b","Port":"80"}]`)
	mustOK(t, err)
	if diff := cmp.Diff([]member{{"i-b", "ecs", "", 80, 100}}, groupMembers(t, c, g2)); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
}

func TestDescribeLoadBalancers(t *testing.T) {
	emu := newEmu(t, func(c *slbemu.Config) {
		c.LoadBalancers = append(c.LoadBalancers,
			slbemu.LoadBalancer{ID: "lb-two", Region: testRegion, Tags: map[string]string{"team": "a"}},
			slbemu.LoadBalancer{ID: "lb-far", Region: "cn-beijing"})
	})
	c, _ := newClient(t, emu, testSecret)
	ids := func(mod func(*slb.DescribeLoadBalancersRequest)) []string {
		r := slb.CreateDescribeLoadBalancersRequest()
		if mod != nil {
			mod(r)
		}
		resp, err := c.DescribeLoadBalancers(r)
		mustOK(t, err)
		out := []string{}
		for _, lb := range resp.LoadBalancers.LoadBalancer {
			out = append(out, lb.LoadBalancerId)
			if lb.RegionId != testRegion || lb.LoadBalancerStatus != "active" || lb.Address != "127.0.0.1" {
				t.Errorf("load balancer %+v", lb)
			}
		}
		return out
	}
	tests := []struct {
		name string
		mod  func(*slb.DescribeLoadBalancersRequest)
		want []string
	}{
		{"region", nil, []string{testLB, "lb-two"}},
		{"ids", func(r *slb.DescribeLoadBalancersRequest) { r.LoadBalancerId = "lb-two,lb-far" }, []string{"lb-two"}},
		{"tag", func(r *slb.DescribeLoadBalancersRequest) {
			r.Tag = &[]slb.DescribeLoadBalancersTag{{Key: "team", Value: "a"}}
		}, []string{"lb-two"}},
		{"legacy tags", func(r *slb.DescribeLoadBalancersRequest) { r.Tags = `[{"TagKey":"team","TagValue":"a"}]` }, []string{"lb-two"}},
		{"page 2 of size 1", func(r *slb.DescribeLoadBalancersRequest) {
			r.PageNumber, r.PageSize = requests.NewInteger(2), requests.NewInteger(1)
		}, []string{"lb-two"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ids(tt.mod)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}

	_, err := c.CreateLoadBalancerHTTPListener(createHTTPListener(80, ""))
	mustOK(t, err)
	u := slb.CreateCreateLoadBalancerUDPListenerRequest()
	u.LoadBalancerId, u.ListenerPort, u.BackendServerPort = testLB, requests.NewInteger(80), requests.NewInteger(80)
	_, err = c.CreateLoadBalancerUDPListener(u)
	mustOK(t, err)
	a := slb.CreateDescribeLoadBalancerAttributeRequest()
	a.LoadBalancerId = testLB
	attr, err := c.DescribeLoadBalancerAttribute(a)
	mustOK(t, err)
	if diff := cmp.Diff([]int{80}, attr.ListenerPorts.ListenerPort); diff != "" {
		t.Errorf("ListenerPorts (-want +got):\n%s", diff)
	}
	var protos, legacy []string
	for _, p := range attr.ListenerPortsAndProtocol.ListenerPortAndProtocol {
		protos = append(protos, fmt.Sprintf("%s:%d", p.ListenerProtocol, p.ListenerPort))
	}
	for _, p := range attr.ListenerPortsAndProtocal.ListenerPortAndProtocal {
		legacy = append(legacy, fmt.Sprintf("%s:%d", p.ListenerProtocal, p.ListenerPort))
	}
	want := []string{"http:80", "udp:80"}
	if diff := cmp.Diff(want, protos); diff != "" {
		t.Errorf("ListenerPortsAndProtocol (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, legacy); diff != "" {
		t.Errorf("ListenerPortsAndProtocal (-want +got):\n%s", diff)
	}
}
