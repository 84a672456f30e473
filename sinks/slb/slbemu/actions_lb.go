package slbemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

type actionFunc func(*Server, *apiCall) (map[string]any, *apiError)

type actionDef struct {
	fn    actionFunc
	write bool
}

// actions is every action the emulator implements. Set in init: the handlers refer to
// tables that refer back to it.
var actions map[string]actionDef

func init() {
	actions = map[string]actionDef{
		"DescribeLoadBalancers":                      {(*Server).describeLoadBalancers, false},
		"DescribeLoadBalancerAttribute":              {(*Server).describeLoadBalancerAttribute, false},
		"AddBackendServers":                          {(*Server).addBackendServers, true},
		"RemoveBackendServers":                       {(*Server).removeBackendServers, true},
		"SetBackendServers":                          {(*Server).setBackendServers, true},
		"DescribeLoadBalancerListeners":              {(*Server).describeLoadBalancerListeners, false},
		"CreateLoadBalancerHTTPListener":             {createListener("http"), true},
		"CreateLoadBalancerHTTPSListener":            {createListener("https"), true},
		"CreateLoadBalancerTCPListener":              {createListener("tcp"), true},
		"CreateLoadBalancerUDPListener":              {createListener("udp"), true},
		"SetLoadBalancerHTTPListenerAttribute":       {setListener("http"), true},
		"SetLoadBalancerHTTPSListenerAttribute":      {setListener("https"), true},
		"SetLoadBalancerTCPListenerAttribute":        {setListener("tcp"), true},
		"SetLoadBalancerUDPListenerAttribute":        {setListener("udp"), true},
		"DescribeLoadBalancerHTTPListenerAttribute":  {describeListener("http"), false},
		"DescribeLoadBalancerHTTPSListenerAttribute": {describeListener("https"), false},
		"DescribeLoadBalancerTCPListenerAttribute":   {describeListener("tcp"), false},
		"DescribeLoadBalancerUDPListenerAttribute":   {describeListener("udp"), false},
		"StartLoadBalancerListener":                  {(*Server).startListener, true},
		"StopLoadBalancerListener":                   {(*Server).stopListener, true},
		"DeleteLoadBalancerListener":                 {(*Server).deleteListener, true},
		"CreateVServerGroup":                         {(*Server).createVServerGroup, true},
		"DescribeVServerGroups":                      {(*Server).describeVServerGroups, false},
		"DescribeVServerGroupAttribute":              {(*Server).describeVServerGroupAttribute, false},
		"AddVServerGroupBackendServers":              {(*Server).addVServerGroupBackendServers, true},
		"RemoveVServerGroupBackendServers":           {(*Server).removeVServerGroupBackendServers, true},
		"SetVServerGroupAttribute":                   {(*Server).setVServerGroupAttribute, true},
		"ModifyVServerGroupBackendServers":           {(*Server).modifyVServerGroupBackendServers, true},
		"DeleteVServerGroup":                         {(*Server).deleteVServerGroup, true},
		"DescribeHealthStatus":                       {(*Server).describeHealthStatus, false},
		"TagResources":                               {(*Server).tagResources, true},
		"UntagResources":                             {(*Server).untagResources, true},
		"ListTagResources":                           {(*Server).listTagResources, false},
	}
}

// Actions lists the implemented actions.
func Actions() []string { return sortedKeys(actions) }

func isWrite(action string) bool { return actions[action].write }

func (s *Server) lbLocked(c *apiCall, id string) (*lbState, *apiError) {
	if id == "" {
		return nil, missingParam("LoadBalancerId")
	}
	lb := s.lbs[id]
	if lb == nil || lb.cfg.Region != c.region {
		return nil, lbNotFound()
	}
	return lb, nil
}

func tagList(tags []Tag) []map[string]any {
	out := []map[string]any{}
	for _, t := range tags {
		out = append(out, map[string]any{"TagKey": t.Key, "TagValue": t.Value})
	}
	return out
}

func lbTags(lb *lbState) []Tag {
	var tags []Tag
	for _, k := range sortedKeys(lb.cfg.Tags) {
		tags = append(tags, Tag{Key: k, Value: lb.cfg.Tags[k]})
	}
	return tags
}

// lbFields are the keys DescribeLoadBalancers entries and DescribeLoadBalancerAttribute
// share.
func (s *Server) lbFields(lb *lbState) map[string]any {
	c := lb.cfg
	charge := "paybytraffic"
	return map[string]any{
		"Address":                      c.Address,
		"AddressIPVersion":             "ipv4",
		"AddressType":                  c.AddressType,
		"Bandwidth":                    5120,
		"BusinessStatus":               "Normal",
		"CreateTime":                   lb.created.UTC().Format("2006-01-02T15:04Z"),
		"CreateTimeStamp":              lb.created.UnixMilli(),
		"DeleteProtection":             "off",
		"InstanceChargeType":           "PayBySpec",
		"InternetChargeType":           charge,
		"LoadBalancerId":               c.ID,
		"LoadBalancerName":             c.Name,
		"LoadBalancerSpec":             "slb.s1.small",
		"LoadBalancerStatus":           "active",
		"MasterZoneId":                 c.Region + "-a",
		"ModificationProtectionStatus": "NonProtection",
		"NetworkType":                  "vpc",
		"PayType":                      "PayOnDemand",
		"RegionId":                     c.Region,
		"RegionIdAlias":                c.Region,
		"ResourceGroupId":              "rg-emulator",
		"SlaveZoneId":                  c.Region + "-b",
		"SpecBpsFlag":                  false,
		"VSwitchId":                    "vsw-emulator",
		"VpcId":                        "vpc-emulator",
		"Tags":                         map[string]any{"Tag": tagList(lbTags(lb))},
	}
}

var describeLBParams = specs(`PageNumber:int(1..1000000) PageSize:int(1..100)`)

func (s *Server) describeLoadBalancers(c *apiCall) (map[string]any, *apiError) {
	pp, aerr := accept(describeLBParams, c.p)
	if aerr != nil {
		return nil, aerr
	}
	ids := splitList(c.p.Get("LoadBalancerId"))
	names := splitList(c.p.Get("LoadBalancerName"))
	if len(ids) > 10 || len(names) > 10 {
		return nil, invalidParam("LoadBalancerId", "at most 10 ids or names")
	}
	want, aerr := tagParams(c.p)
	if aerr != nil {
		return nil, aerr
	}
	legacy, aerr := legacyTags(c.p.Get("Tags"))
	if aerr != nil {
		return nil, aerr
	}
	var matched []map[string]any
	for _, lb := range s.sortedLBsLocked() {
		switch {
		case lb.cfg.Region != c.region,
			len(ids) > 0 && !slices.Contains(ids, lb.cfg.ID),
			len(names) > 0 && !slices.Contains(names, lb.cfg.Name),
			c.p.Get("Address") != "" && c.p.Get("Address") != lb.cfg.Address,
			c.p.Get("AddressType") != "" && c.p.Get("AddressType") != lb.cfg.AddressType,
			c.p.Get("LoadBalancerStatus") != "" && c.p.Get("LoadBalancerStatus") != "active",
			c.p.Get("ServerId") != "" && !s.lbHasServerLocked(lb, c.p.Get("ServerId")),
			!hasAllTags(lbTags(lb), want),
			len(legacy) > 0 && !hasAnyTag(lbTags(lb), legacy):
			continue
		}
		matched = append(matched, s.lbFields(lb))
	}
	page, size := atoiOr(pp["PageNumber"], 1), atoiOr(pp["PageSize"], 10)
	lo := min((page-1)*size, len(matched))
	hi := min(lo+size, len(matched))
	items := matched[lo:hi]
	if items == nil {
		items = []map[string]any{}
	}
	return map[string]any{
		"PageNumber":    page,
		"PageSize":      size,
		"TotalCount":    len(matched),
		"LoadBalancers": map[string]any{"LoadBalancer": items},
	}, nil
}

func (s *Server) lbHasServerLocked(lb *lbState, serverID string) bool {
	for _, b := range lb.backends {
		if b.ServerID == serverID {
			return true
		}
	}
	for _, g := range s.sortedGroupsLocked(lb.cfg.ID) {
		for _, b := range g.backends {
			if b.ServerID == serverID {
				return true
			}
		}
	}
	return false
}

// legacyTags parses the old Tags filter, a JSON list of {TagKey, TagValue} with keys in
// any case.
func legacyTags(raw string) ([]Tag, *apiError) {
	if raw == "" {
		return nil, nil
	}
	var items []map[string]any
	if err := json.Unmarshal([]byte(raw), &items); err != nil {
		var one map[string]any
		if err2 := json.Unmarshal([]byte(raw), &one); err2 != nil {
			return nil, invalidParam("Tags", "not a JSON list of {TagKey, TagValue}")
		}
		items = []map[string]any{one}
	}
	var tags []Tag
	for _, it := range items {
		var t Tag
		for k, v := range it {
			switch strings.ToLower(k) {
			case "tagkey":
				t.Key = scalar(v)
			case "tagvalue":
				t.Value = scalar(v)
			}
		}
		tags = append(tags, t)
	}
	return tags, nil
}

func hasAllTags(have, want []Tag) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func hasAnyTag(have, want []Tag) bool {
	for _, w := range want {
		for _, h := range have {
			if h.Key == w.Key && (w.Value == "" || h.Value == w.Value) {
				return true
			}
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

var portAndProtocolFields = fields(`string: Description ListenerForward
int: ForwardPort`)

func (s *Server) describeLoadBalancerAttribute(c *apiCall) (map[string]any, *apiError) {
	lb, aerr := s.lbLocked(c, c.p.Get("LoadBalancerId"))
	if aerr != nil {
		return nil, aerr
	}
	out := s.lbFields(lb)
	ports := []int{}
	protocal := []map[string]any{}
	protocol := []map[string]any{}
	for _, l := range s.sortedListenersLocked(lb) {
		if !slices.Contains(ports, l.port) {
			ports = append(ports, l.port)
		}
		protocal = append(protocal, map[string]any{"ListenerPort": l.port, "ListenerProtocal": l.protocol})
		e := map[string]any{"ListenerPort": l.port, "ListenerProtocol": l.protocol}
		portAndProtocolFields.render(l.attrs, e)
		protocol = append(protocol, e)
	}
	backends := []map[string]any{}
	for _, b := range lb.backends {
		backends = append(backends, map[string]any{"ServerId": b.ServerID, "Weight": b.Weight, "Type": b.Type,
			"ServerIp": b.ServerIP, "Description": b.Description})
	}
	out["ListenerPorts"] = map[string]any{"ListenerPort": ports}
	out["ListenerPortsAndProtocal"] = map[string]any{"ListenerPortAndProtocal": protocal}
	out["ListenerPortsAndProtocol"] = map[string]any{"ListenerPortAndProtocol": protocol}
	out["BackendServers"] = map[string]any{"BackendServer": backends}
	return out, nil
}

// Default server group (no per-backend port: the listener's BackendServerPort applies).

func (s *Server) defaultGroupCall(c *apiCall) (*lbState, []backendParam, *apiError) {
	lb, aerr := s.lbLocked(c, c.p.Get("LoadBalancerId"))
	if aerr != nil {
		return nil, nil, aerr
	}
	raw := c.p.Get("BackendServers")
	if raw == "" {
		return nil, nil, missingParam("BackendServers")
	}
	bs, aerr := parseBackends("BackendServers", raw, false, s.cfg.MaxBackendsPerCall)
	if aerr != nil {
		return nil, nil, aerr
	}
	if lb.pending != nil {
		return nil, nil, backendConfiguring()
	}
	return lb, bs, nil
}

func lbBackendList(lb *lbState, weightAsString bool) map[string]any {
	list := []map[string]any{}
	for _, b := range lb.backends {
		e := map[string]any{"ServerId": b.ServerID, "Type": b.Type, "Description": b.Description, "Weight": b.Weight}
		if b.ServerIP != "" {
			e["ServerIp"] = b.ServerIP
		}
		if weightAsString {
			e["Weight"] = strconv.Itoa(b.Weight)
		}
		list = append(list, e)
	}
	return map[string]any{"LoadBalancerId": lb.cfg.ID, "BackendServers": map[string]any{"BackendServer": list}}
}

func (s *Server) addBackendServers(c *apiCall) (map[string]any, *apiError) {
	lb, bs, aerr := s.defaultGroupCall(c)
	if aerr != nil {
		return nil, aerr
	}
	for _, b := range bs {
		if slices.ContainsFunc(lb.backends, func(x Backend) bool { return x.key() == b.key() }) {
			return nil, invalidParam("BackendServers", fmt.Sprintf("backend server %s is already attached", b.ServerID))
		}
	}
	if n := s.backendCountLocked(lb.cfg.ID) + len(bs); n > s.cfg.MaxBackendsPerLB {
		return nil, backendQuota(s.cfg.MaxBackendsPerLB)
	}
	for _, b := range bs {
		lb.backends = append(lb.backends, Backend{ServerID: b.ServerID, Weight: b.Weight, Type: b.Type,
			ServerIP: b.ServerIP, Description: b.Description})
	}
	s.backendChangeLocked(lb)
	return lbBackendList(lb, true), nil
}

func (s *Server) removeBackendServers(c *apiCall) (map[string]any, *apiError) {
	lb, bs, aerr := s.defaultGroupCall(c)
	if aerr != nil {
		return nil, aerr
	}
	for _, b := range bs {
		lb.backends = slices.DeleteFunc(lb.backends, func(x Backend) bool { return x.key() == b.key() })
	}
	s.backendChangeLocked(lb)
	return lbBackendList(lb, false), nil
}

func (s *Server) setBackendServers(c *apiCall) (map[string]any, *apiError) {
	lb, bs, aerr := s.defaultGroupCall(c)
	if aerr != nil {
		return nil, aerr
	}
	for _, b := range bs {
		i := slices.IndexFunc(lb.backends, func(x Backend) bool { return x.key() == b.key() })
		if i < 0 {
			return nil, invalidParam("BackendServers", fmt.Sprintf("backend server %s is not attached", b.ServerID))
		}
		if b.hasWeight {
			lb.backends[i].Weight = b.Weight
		}
		if b.hasDesc {
			lb.backends[i].Description = b.Description
		}
	}
	s.backendChangeLocked(lb)
	return lbBackendList(lb, true), nil
}

// The real code for this quota is undocumented; the CCM matches this one on adds.
func backendQuota(max int) *apiError {
	return errf(http.StatusBadRequest, "InstanceBackendServerNumberOverLimit",
		"The number of backend servers of the load balancer exceeds the limit of %d.", max)
}
