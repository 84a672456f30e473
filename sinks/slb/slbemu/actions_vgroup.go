package slbemu

import (
	"fmt"
	"net/http"
	"slices"
)

var (
	createGroupParams   = specs(`LoadBalancerId! VServerGroupName:str(1..80)`)
	describeGroupParams = specs(`LoadBalancerId! IncludeListener:bool IncludeRule:bool Description`)
	groupIDParams       = specs(`VServerGroupId!`)
	setGroupParams      = specs(`VServerGroupId! VServerGroupName:str(1..80)`)
)

func (s *Server) groupLocked(c *apiCall) (*vgroupState, *lbState, *apiError) {
	if _, aerr := accept(groupIDParams, c.p); aerr != nil {
		return nil, nil, aerr
	}
	g := s.vgroups[c.p.Get("VServerGroupId")]
	if g == nil || s.lbs[g.lb].cfg.Region != c.region {
		return nil, nil, vgroupNotFound()
	}
	return g, s.lbs[g.lb], nil
}

func groupBackendList(g *vgroupState) map[string]any {
	list := []map[string]any{}
	for _, b := range g.backends {
		e := map[string]any{"ServerId": b.ServerID, "Port": b.Port, "Weight": b.Weight, "Type": b.Type,
			"Description": b.Description}
		if b.ServerIP != "" {
			e["ServerIp"] = b.ServerIP
		}
		list = append(list, e)
	}
	return map[string]any{"BackendServer": list}
}

func toBackend(b backendParam) Backend {
	return Backend{ServerID: b.ServerID, Port: b.Port, Weight: b.Weight, Type: b.Type, ServerIP: b.ServerIP,
		Description: b.Description}
}

// groupBackendsArg parses a backend list parameter of a VServer group call.
func (s *Server) groupBackendsArg(c *apiCall, name string, required bool) ([]backendParam, *apiError) {
	raw := c.p.Get(name)
	if raw == "" {
		if required {
			return nil, missingParam(name)
		}
		return nil, nil
	}
	return parseBackends(name, raw, true, s.cfg.MaxBackendsPerCall)
}

func (s *Server) addToGroupLocked(lb *lbState, g *vgroupState, bs []backendParam) *apiError {
	for _, b := range bs {
		if slices.ContainsFunc(g.backends, func(x Backend) bool { return x.key() == b.key() }) {
			return invalidParam("BackendServers", fmt.Sprintf("backend server %s port %d is already in the VServer group", b.ServerID, b.Port))
		}
	}
	if s.backendCountLocked(lb.cfg.ID)+len(bs) > s.cfg.MaxBackendsPerLB {
		return backendQuota(s.cfg.MaxBackendsPerLB)
	}
	for _, b := range bs {
		g.backends = append(g.backends, toBackend(b))
	}
	return nil
}

func (s *Server) createVServerGroup(c *apiCall) (map[string]any, *apiError) {
	pp, aerr := accept(createGroupParams, c.p)
	if aerr != nil {
		return nil, aerr
	}
	lb, aerr := s.lbLocked(c, pp["LoadBalancerId"])
	if aerr != nil {
		return nil, aerr
	}
	tags, aerr := tagParams(c.p)
	if aerr != nil {
		return nil, aerr
	}
	bs, aerr := s.groupBackendsArg(c, "BackendServers", false)
	if aerr != nil {
		return nil, aerr
	}
	if len(bs) > 0 && lb.pending != nil {
		return nil, backendConfiguring()
	}
	g := &vgroupState{id: randomID("rsp-"), name: pp["VServerGroupName"], lb: lb.cfg.ID, created: s.cfg.Now(), tags: tags}
	if aerr := s.addToGroupLocked(lb, g, bs); aerr != nil {
		return nil, aerr
	}
	s.vgroups[g.id] = g
	if len(bs) > 0 {
		s.backendChangeLocked(lb)
	}
	return map[string]any{"VServerGroupId": g.id, "BackendServers": groupBackendList(g)}, nil
}

var associatedListenerFields = fields(`string: Description Scheduler VServerGroupId
int: Bandwidth`)

func (s *Server) describeVServerGroups(c *apiCall) (map[string]any, *apiError) {
	pp, aerr := accept(describeGroupParams, c.p)
	if aerr != nil {
		return nil, aerr
	}
	lb, aerr := s.lbLocked(c, pp["LoadBalancerId"])
	if aerr != nil {
		return nil, aerr
	}
	want, aerr := tagParams(c.p)
	if aerr != nil {
		return nil, aerr
	}
	list := []map[string]any{}
	for _, g := range s.sortedGroupsLocked(lb.cfg.ID) {
		if (pp["Description"] != "" && pp["Description"] != g.name) || !hasAllTags(g.tags, want) {
			continue
		}
		e := map[string]any{
			"VServerGroupId":   g.id,
			"VServerGroupName": g.name,
			"ServerCount":      len(g.backends),
			"CreateTime":       g.created.UTC().Format("2006-01-02T15:04:05Z"),
			"Tags":             map[string]any{"Tag": tagList(g.tags)},
		}
		if pp["IncludeListener"] == "true" || pp["IncludeRule"] == "true" {
			assoc := map[string]any{"Rules": map[string]any{"Rule": []any{}}}
			ls := []map[string]any{}
			if pp["IncludeListener"] == "true" {
				for _, l := range s.listenersUsingLocked(lb, g.id) {
					le := map[string]any{"ListenerPort": l.port, "Port": l.port, "ListenerProtocol": l.protocol,
						"Protocol": l.protocol, "Status": l.status, "LoadBalancerId": lb.cfg.ID}
					associatedListenerFields.render(l.attrs, le)
					ls = append(ls, le)
				}
			}
			assoc["Listeners"] = map[string]any{"Listener": ls}
			e["AssociatedObjects"] = assoc
		}
		list = append(list, e)
	}
	return map[string]any{"VServerGroups": map[string]any{"VServerGroup": list}}, nil
}

func (s *Server) describeVServerGroupAttribute(c *apiCall) (map[string]any, *apiError) {
	g, lb, aerr := s.groupLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	list := []map[string]any{}
	for _, b := range g.backends {
		e := map[string]any{"ServerId": b.ServerID, "Port": b.Port, "Weight": b.Weight, "Type": b.Type,
			"Description": b.Description, "ServerRegionId": lb.cfg.Region, "ProxyProtocolV2Enabled": false}
		if b.ServerIP != "" {
			e["ServerIp"] = b.ServerIP
		}
		list = append(list, e)
	}
	return map[string]any{
		"VServerGroupId":   g.id,
		"VServerGroupName": g.name,
		"LoadBalancerId":   lb.cfg.ID,
		"CreateTime":       g.created.UTC().Format("2006-01-02T15:04:05Z"),
		"BackendServers":   map[string]any{"BackendServer": list},
		"Tags":             map[string]any{"Tag": tagList(g.tags)},
	}, nil
}

func (s *Server) addVServerGroupBackendServers(c *apiCall) (map[string]any, *apiError) {
	g, lb, aerr := s.groupLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	bs, aerr := s.groupBackendsArg(c, "BackendServers", true)
	if aerr != nil {
		return nil, aerr
	}
	if lb.pending != nil {
		return nil, backendConfiguring()
	}
	if aerr := s.addToGroupLocked(lb, g, bs); aerr != nil {
		return nil, aerr
	}
	s.backendChangeLocked(lb)
	return map[string]any{"VServerGroupId": g.id, "BackendServers": groupBackendList(g)}, nil
}

func removeFromGroup(g *vgroupState, bs []backendParam) *apiError {
	for _, b := range bs {
		if !slices.ContainsFunc(g.backends, func(x Backend) bool { return x.key() == b.key() }) {
			return invalidParam("BackendServers", fmt.Sprintf("backend server %s port %d is not in the VServer group", b.ServerID, b.Port))
		}
	}
	for _, b := range bs {
		g.backends = slices.DeleteFunc(g.backends, func(x Backend) bool { return x.key() == b.key() })
	}
	return nil
}

func (s *Server) removeVServerGroupBackendServers(c *apiCall) (map[string]any, *apiError) {
	g, lb, aerr := s.groupLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	bs, aerr := s.groupBackendsArg(c, "BackendServers", true)
	if aerr != nil {
		return nil, aerr
	}
	if lb.pending != nil {
		return nil, backendConfiguring()
	}
	if aerr := removeFromGroup(g, bs); aerr != nil {
		return nil, aerr
	}
	s.backendChangeLocked(lb)
	return map[string]any{"VServerGroupId": g.id, "BackendServers": groupBackendList(g)}, nil
}

func (s *Server) setVServerGroupAttribute(c *apiCall) (map[string]any, *apiError) {
	pp, aerr := accept(setGroupParams, c.p)
	if aerr != nil {
		return nil, aerr
	}
	g, lb, aerr := s.groupLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	bs, aerr := s.groupBackendsArg(c, "BackendServers", false)
	if aerr != nil {
		return nil, aerr
	}
	if len(bs) > 0 && lb.pending != nil {
		return nil, backendConfiguring()
	}
	idx := make([]int, len(bs))
	for i, b := range bs {
		idx[i] = slices.IndexFunc(g.backends, func(x Backend) bool { return x.key() == b.key() })
		if idx[i] < 0 {
			return nil, invalidParam("BackendServers", fmt.Sprintf("backend server %s port %d is not in the VServer group", b.ServerID, b.Port))
		}
	}
	for i, b := range bs {
		if b.hasWeight {
			g.backends[idx[i]].Weight = b.Weight
		}
		if b.hasDesc {
			g.backends[idx[i]].Description = b.Description
		}
	}
	if name, ok := pp["VServerGroupName"]; ok {
		g.name = name
	}
	if len(bs) > 0 {
		s.backendChangeLocked(lb)
	}
	return map[string]any{"VServerGroupId": g.id, "VServerGroupName": g.name, "BackendServers": groupBackendList(g)}, nil
}

func (s *Server) modifyVServerGroupBackendServers(c *apiCall) (map[string]any, *apiError) {
	g, lb, aerr := s.groupLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	olds, aerr := s.groupBackendsArg(c, "OldBackendServers", true)
	if aerr != nil {
		return nil, aerr
	}
	news, aerr := s.groupBackendsArg(c, "NewBackendServers", true)
	if aerr != nil {
		return nil, aerr
	}
	if lb.pending != nil {
		return nil, backendConfiguring()
	}
	saved := slices.Clone(g.backends)
	if aerr := removeFromGroup(g, olds); aerr != nil {
		return nil, aerr
	}
	if aerr := s.addToGroupLocked(lb, g, news); aerr != nil {
		g.backends = saved
		return nil, aerr
	}
	s.backendChangeLocked(lb)
	return map[string]any{"VServerGroupId": g.id, "BackendServers": groupBackendList(g)}, nil
}

func (s *Server) deleteVServerGroup(c *apiCall) (map[string]any, *apiError) {
	g, lb, aerr := s.groupLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	if len(s.listenersUsingLocked(lb, g.id)) > 0 {
		return nil, errf(http.StatusBadRequest, "RspoolVipExist", "There are listeners or forwarding rules using the specified VServer group.")
	}
	delete(s.vgroups, g.id)
	return nil, nil
}
