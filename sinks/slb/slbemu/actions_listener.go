package slbemu

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Parameters of the listener actions (slb-api.md §5.2 and Appendix A). LoadBalancerId,
// ListenerPort and the VServerGroup / MasterSlaveServerGroup switches are control
// parameters; everything else accepted is stored as an attribute and described back.
const (
	l7Params = `Bandwidth:bw Scheduler:enum(wrr|wlc|rr) StickySessionType:enum(insert|server)
	Cookie:str(1..200) CookieTimeout:int(1..86400) Description:str(1..80)
	HealthCheckURI:uri HealthCheckDomain:str(1..80) HealthCheckConnectPort:int(1..65535)
	HealthyThreshold:int(2..10) UnhealthyThreshold:int(2..10) HealthCheckTimeout:int(1..300)
	HealthCheckInterval:int(1..50) HealthCheckHttpCode:codes HealthCheckMethod:enum(head|get) HealthCheckType
	XForwardedFor:onoff XForwardedFor_SLBIP:onoff XForwardedFor_SLBID:onoff XForwardedFor_proto:onoff
	XForwardedFor_SLBPORT:onoff XForwardedFor_ClientSrcPort:onoff Gzip:onoff IdleTimeout:int(1..60)
	RequestTimeout:int(1..180) AclStatus:onoff AclType:enum(white|black) AclId VpcIds VServerGroupId
	MaxConnection:int(1..1000000)`

	httpsParams = `CACertificateId EnableHttp2:onoff BackendProtocol:enum(http|https)
	TLSCipherPolicy:enum(tls_cipher_policy_1_0|tls_cipher_policy_1_1|tls_cipher_policy_1_2|tls_cipher_policy_1_2_strict|tls_cipher_policy_1_2_strict_with_1_3)
	XForwardedFor_ClientCertClientVerify:onoff XForwardedFor_ClientCertClientVerifyAlias:str(1..40)
	XForwardedFor_ClientCertFingerprint:onoff XForwardedFor_ClientCertFingerprintAlias:str(1..40)
	XForwardedFor_ClientCertIssuerDN:onoff XForwardedFor_ClientCertIssuerDNAlias:str(1..40)
	XForwardedFor_ClientCertSubjectDN:onoff XForwardedFor_ClientCertSubjectDNAlias:str(1..40)`

	l4Params = `Bandwidth:bw Scheduler:enum(wrr|rr|wlc|sch|tch|qch) PersistenceTimeout:int(0..3600)
	HealthCheckSwitch:onoff HealthCheckURI:uri HealthCheckDomain:str(1..80)
	HealthCheckConnectPort:int(1..65535) HealthCheckConnectTimeout:int(1..300) HealthCheckInterval:int(1..50)
	HealthyThreshold:int(2..10) UnhealthyThreshold:int(2..10) HealthCheckHttpCode:codes
	HealthCheckMethod:enum(head|get) ConnectionDrain:onoff ConnectionDrainTimeout:int(10..900)
	Description:str(1..80) AclStatus:onoff AclType:enum(white|black) AclId VpcIds VServerGroupId
	MasterSlaveServerGroupId ProxyProtocolV2Enabled:bool FullNatEnabled:bool FailoverStrategy
	FailoverThreshold:int(0..100) MasterSlaveModeEnabled:bool MasterServerGroupId SlaveServerGroupId
	MaxConnection:int(1..1000000)`

	listenerKeyParams = `LoadBalancerId! ListenerPort:int(1..65535)!`
)

var (
	createParams = map[string][]paramSpec{
		"http": specs(listenerKeyParams + ` BackendServerPort:int(1..65535) HealthCheck:onoff! StickySession:onoff!
			HealthCheckHttpVersion:enum(http1.0|http1.1) ListenerForward:onoff ForwardPort:int(1..65535) ` + l7Params),
		"https": specs(listenerKeyParams + ` BackendServerPort:int(1..65535) HealthCheck:onoff! StickySession:onoff!
			ServerCertificateId! HealthCheckHttpVersion:enum(http1.0|http1.1) ` + l7Params + " " + httpsParams),
		"tcp": specs(listenerKeyParams + ` BackendServerPort:int(1..65535) EstablishedTimeout:int(10..900)
			HealthCheckTcpFastCloseEnabled:bool HealthCheckType:enum(tcp|http) ` + l4Params),
		"udp": specs(listenerKeyParams + ` BackendServerPort:int(1..65535) HealthCheckReq HealthCheckExp
			QuicVersion HealthCheckType ` + l4Params),
	}
	setParams = map[string][]paramSpec{
		"http": specs(listenerKeyParams + ` HealthCheck:onoff StickySession:onoff VServerGroup:onoff ` + l7Params),
		"https": specs(listenerKeyParams + ` HealthCheck:onoff StickySession:onoff ServerCertificateId
			VServerGroup:onoff ` + l7Params + " " + httpsParams),
		"tcp": specs(listenerKeyParams + ` EstablishedTimeout:int(10..900) HealthCheckTcpFastCloseEnabled:bool
			HealthCheckType:enum(tcp|http) VServerGroup:onoff MasterSlaveServerGroup:onoff SynProxy:enum(enable|disable)
			ProxyProtocolVpcIdEnabled:bool ` + l4Params),
		"udp": specs(listenerKeyParams + ` HealthCheckReq HealthCheckExp QuicVersion HealthCheckType
			VServerGroup:onoff MasterSlaveServerGroup:onoff ProxyProtocolVpcIdEnabled:bool ` + l4Params),
	}
	listenerControlParams = specs(listenerKeyParams + ` ListenerProtocol:enum(http|https|tcp|udp)`)
	listenerKeySpecs      = specs(listenerKeyParams)
)

// controlParams are accepted but not stored on the listener.
var controlParams = []string{"LoadBalancerId", "ListenerPort", "VServerGroup", "MasterSlaveServerGroup", "ProxyProtocolVpcIdEnabled"}

// listenerDefaults fills what the real API reports for attributes never set.
func listenerDefaults(proto string, a map[string]string) {
	def := func(k, v string) {
		if a[k] == "" {
			a[k] = v
		}
	}
	def("Bandwidth", "-1")
	def("Scheduler", "wrr")
	def("AclStatus", "off")
	switch proto {
	case "http", "https":
		def("XForwardedFor", "on")
		def("XForwardedFor_SLBIP", "off")
		def("XForwardedFor_SLBID", "off")
		def("XForwardedFor_proto", "off")
		def("Gzip", "on")
		def("IdleTimeout", "15")
		def("RequestTimeout", "60")
		if proto == "http" {
			def("ListenerForward", "off")
		} else {
			def("EnableHttp2", "on")
			def("TLSCipherPolicy", "tls_cipher_policy_1_0")
		}
		if a["HealthCheck"] == "on" {
			def("HealthCheckURI", "/")
			def("HealthCheckTimeout", "5")
			def("HealthCheckInterval", "2")
			def("HealthyThreshold", "3")
			def("UnhealthyThreshold", "3")
			def("HealthCheckHttpCode", "http_2xx")
		}
	case "tcp", "udp":
		def("PersistenceTimeout", "0")
		def("HealthCheckSwitch", "on")
		a["HealthCheck"] = a["HealthCheckSwitch"]
		def("ConnectionDrain", "off")
		def("FullNatEnabled", "false")
		def("ProxyProtocolV2Enabled", "false")
		def("MasterSlaveModeEnabled", "false")
		if proto == "tcp" {
			def("EstablishedTimeout", "900")
			def("HealthCheckType", "tcp")
			def("SynProxy", "disable")
			def("HealthCheckTcpFastCloseEnabled", "false")
		}
		if a["HealthCheckSwitch"] == "on" {
			def("HealthCheckConnectTimeout", "5")
			def("HealthCheckInterval", "2")
			def("HealthyThreshold", "3")
			def("UnhealthyThreshold", "3")
			if a["HealthCheckType"] == "http" {
				def("HealthCheckURI", "/")
				def("HealthCheckHttpCode", "http_2xx")
			}
		}
	}
}

// checkListenerAttrs validates the combination of attributes a listener would end up
// with.
func (s *Server) checkListenerAttrs(lb *lbState, a map[string]string) *apiError {
	if a["BackendServerPort"] == "" && a["VServerGroupId"] == "" {
		return missingParam("BackendServerPort")
	}
	if id := a["VServerGroupId"]; id != "" {
		if g := s.vgroups[id]; g == nil || g.lb != lb.cfg.ID {
			return vgroupNotFound()
		}
	}
	if a["StickySession"] == "on" {
		switch a["StickySessionType"] {
		case "":
			return missingParam("StickySessionType")
		case "insert":
			if a["CookieTimeout"] == "" {
				return missingParam("CookieTimeout")
			}
		case "server":
			if a["Cookie"] == "" {
				return missingParam("Cookie")
			}
		}
	}
	if a["AclStatus"] == "on" && a["AclId"] == "" {
		return missingParam("AclId")
	}
	return nil
}

// sharesPortSpace: tcp, http and https listeners compete for TCP ports; udp has its own.
func sharesPortSpace(a, b string) bool { return (a == "udp") == (b == "udp") }

func createListener(proto string) actionFunc {
	return func(s *Server, c *apiCall) (map[string]any, *apiError) {
		attrs, aerr := accept(createParams[proto], c.p)
		if aerr != nil {
			return nil, aerr
		}
		lb, aerr := s.lbLocked(c, attrs["LoadBalancerId"])
		if aerr != nil {
			return nil, aerr
		}
		tags, aerr := tagParams(c.p)
		if aerr != nil {
			return nil, aerr
		}
		port, _ := strconv.Atoi(attrs["ListenerPort"])
		for _, k := range controlParams {
			delete(attrs, k)
		}
		for k := range lb.listeners {
			if k.port == port && sharesPortSpace(k.protocol, proto) {
				return nil, errf(http.StatusBadRequest, "ListenerAlreadyExists", "The specified listener already exists.")
			}
		}
		if len(lb.listeners) >= s.cfg.MaxListenersPerLB {
			return nil, errf(http.StatusBadRequest, "QuotaExceeded.ListenersPerLoadBalancer",
				"The number of listeners of the load balancer exceeds the limit of %d.", s.cfg.MaxListenersPerLB)
		}
		listenerDefaults(proto, attrs)
		if aerr := s.checkListenerAttrs(lb, attrs); aerr != nil {
			return nil, aerr
		}
		lb.listeners[listenerKey{port, proto}] = &listenerState{lb: lb.cfg.ID, port: port, protocol: proto,
			attrs: attrs, tags: tags, status: StatusStopped}
		return nil, nil
	}
}

// writable answers the error a configuration write gets in each status.
func writable(l *listenerState) *apiError {
	switch l.status {
	case StatusConfiguring:
		return serviceIsConfiguring()
	case StatusStarting, StatusStopping:
		return statusNotSupport()
	}
	return nil
}

func setListener(proto string) actionFunc {
	return func(s *Server, c *apiCall) (map[string]any, *apiError) {
		attrs, aerr := accept(setParams[proto], c.p)
		if aerr != nil {
			return nil, aerr
		}
		lb, aerr := s.lbLocked(c, attrs["LoadBalancerId"])
		if aerr != nil {
			return nil, aerr
		}
		port, _ := strconv.Atoi(attrs["ListenerPort"])
		l := lb.listeners[listenerKey{port, proto}]
		if l == nil {
			return nil, listenerNotFound()
		}
		if aerr := writable(l); aerr != nil {
			return nil, aerr
		}
		useGroup := attrs["VServerGroup"]
		for _, k := range controlParams {
			delete(attrs, k)
		}
		merged := maps.Clone(l.attrs)
		maps.Copy(merged, attrs)
		switch useGroup {
		case "on":
			if attrs["VServerGroupId"] == "" {
				return nil, missingParam("VServerGroupId")
			}
		case "off":
			delete(merged, "VServerGroupId")
			if merged["BackendServerPort"] == "" {
				return nil, invalidParam("VServerGroup", "the listener has no BackendServerPort for the default server group")
			}
		}
		if proto == "tcp" || proto == "udp" {
			merged["HealthCheck"] = merged["HealthCheckSwitch"]
		}
		listenerDefaults(proto, merged)
		if aerr := s.checkListenerAttrs(lb, merged); aerr != nil {
			return nil, aerr
		}
		l.attrs = merged
		stable := StatusStopped
		if l.status == StatusRunning {
			stable = StatusRunning
		}
		s.transitionLocked(l, StatusConfiguring, stable)
		return nil, nil
	}
}

func (s *Server) listenerArgLocked(c *apiCall, proto string) (*lbState, *listenerState, *apiError) {
	attrs, aerr := accept(listenerKeySpecs, c.p)
	if aerr != nil {
		return nil, nil, aerr
	}
	lb, aerr := s.lbLocked(c, attrs["LoadBalancerId"])
	if aerr != nil {
		return nil, nil, aerr
	}
	port, _ := strconv.Atoi(attrs["ListenerPort"])
	l := lb.listeners[listenerKey{port, proto}]
	if l == nil {
		return nil, nil, listenerNotFound()
	}
	return lb, l, nil
}

var attrTables = map[string]fieldTable{"http": httpAttrFields, "https": httpsAttrFields, "tcp": tcpAttrFields, "udp": udpAttrFields}

func describeListener(proto string) actionFunc {
	return func(s *Server, c *apiCall) (map[string]any, *apiError) {
		lb, l, aerr := s.listenerArgLocked(c, proto)
		if aerr != nil {
			return nil, aerr
		}
		out := map[string]any{}
		attrTables[proto].render(l.attrs, out)
		out["LoadBalancerId"] = lb.cfg.ID
		out["ListenerPort"] = l.port
		out["Status"] = l.status
		out["Tags"] = map[string]any{"Tag": tagList(l.tags)}
		out["AclIds"] = map[string]any{"AclId": aclIDs(l)}
		switch proto {
		case "http":
			out["Rules"] = map[string]any{"Rule": []any{}}
		case "https":
			out["Rules"] = map[string]any{"Rule": []any{}}
			out["ServerCertificates"] = map[string]any{"ServerCertificate": []any{}}
			out["DomainExtensions"] = map[string]any{"DomainExtension": []any{}}
		case "tcp", "udp":
			out["PortRanges"] = map[string]any{"PortRange": []any{}}
		}
		return out, nil
	}
}

func aclIDs(l *listenerState) []string {
	if id := l.attrs["AclId"]; id != "" {
		return []string{id}
	}
	return []string{}
}

var listenersParams = specs(`ListenerPort:int(1..65535) ListenerProtocol:enum(http|https|tcp|udp)
	MaxResults:int(1..100) Description`)

var configTables = map[string]struct {
	key   string
	table fieldTable
}{
	"http":  {"HTTPListenerConfig", httpConfigFields},
	"https": {"HTTPSListenerConfig", httpsConfigFields},
	"tcp":   {"TCPListenerConfig", tcpConfigFields},
	"udp":   {"UDPListenerConfig", udpConfigFields},
}

func (s *Server) describeLoadBalancerListeners(c *apiCall) (map[string]any, *apiError) {
	pp, aerr := accept(listenersParams, c.p)
	if aerr != nil {
		return nil, aerr
	}
	ids := repeated(c.p, "LoadBalancerId")
	if len(ids) > 10 {
		return nil, invalidParam("LoadBalancerId", "at most 10 load balancers")
	}
	want, aerr := tagParams(c.p)
	if aerr != nil {
		return nil, aerr
	}
	var lbs []*lbState
	if len(ids) == 0 {
		for _, lb := range s.sortedLBsLocked() {
			if lb.cfg.Region == c.region {
				lbs = append(lbs, lb)
			}
		}
	} else {
		for _, id := range ids {
			lb, aerr := s.lbLocked(c, id)
			if aerr != nil {
				return nil, aerr
			}
			lbs = append(lbs, lb)
		}
	}
	var matched []map[string]any
	for _, lb := range lbs {
		for _, l := range s.sortedListenersLocked(lb) {
			switch {
			case pp["ListenerPort"] != "" && pp["ListenerPort"] != strconv.Itoa(l.port),
				pp["ListenerProtocol"] != "" && pp["ListenerProtocol"] != l.protocol,
				pp["Description"] != "" && pp["Description"] != l.attrs["Description"],
				!hasAllTags(l.tags, want):
				continue
			}
			e := map[string]any{}
			listenerFields.render(l.attrs, e)
			e["LoadBalancerId"] = lb.cfg.ID
			e["ListenerPort"] = l.port
			e["ListenerProtocol"] = l.protocol
			e["Status"] = l.status
			e["AclIds"] = aclIDs(l)
			e["Tags"] = tagList(l.tags)
			ct := configTables[l.protocol]
			cfg := map[string]any{}
			ct.table.render(l.attrs, cfg)
			e[ct.key] = cfg
			matched = append(matched, e)
		}
	}
	maxResults := atoiOr(pp["MaxResults"], 20)
	start := 0
	if tok := c.p.Get("NextToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "emu-"))
		if err != nil || !strings.HasPrefix(tok, "emu-") || n < 0 || n > len(matched) {
			return nil, invalidParam("NextToken", "not a token this emulator issued")
		}
		start = n
	}
	end := min(start+maxResults, len(matched))
	next := ""
	if end < len(matched) {
		next = "emu-" + strconv.Itoa(end)
	}
	page := matched[start:end]
	if page == nil {
		page = []map[string]any{}
	}
	return map[string]any{
		"Listeners":  page,
		"MaxResults": maxResults,
		"NextToken":  next,
		"TotalCount": len(matched),
	}, nil
}

// listenerControlLocked finds the listener of Start/Stop/Delete: ListenerProtocol may be
// omitted when only one listener uses the port.
func (s *Server) listenerControlLocked(c *apiCall) (*lbState, *listenerState, *apiError) {
	attrs, aerr := accept(listenerControlParams, c.p)
	if aerr != nil {
		return nil, nil, aerr
	}
	lb, aerr := s.lbLocked(c, attrs["LoadBalancerId"])
	if aerr != nil {
		return nil, nil, aerr
	}
	port, _ := strconv.Atoi(attrs["ListenerPort"])
	var found []*listenerState
	for _, l := range s.sortedListenersLocked(lb) {
		if l.port == port && (attrs["ListenerProtocol"] == "" || attrs["ListenerProtocol"] == l.protocol) {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil, listenerNotFound()
	case 1:
		return lb, found[0], nil
	}
	return nil, nil, errf(http.StatusBadRequest, "TooManyListeners", "More than 1 listener is found, please be more specified.")
}

func (s *Server) startListener(c *apiCall) (map[string]any, *apiError) {
	_, l, aerr := s.listenerControlLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	switch l.status {
	case StatusStopped:
		s.transitionLocked(l, StatusStarting, StatusRunning)
	case StatusConfiguring:
		return nil, operationDeny()
	case StatusStopping:
		return nil, serviceIsStopping()
	}
	return nil, nil
}

func (s *Server) stopListener(c *apiCall) (map[string]any, *apiError) {
	_, l, aerr := s.listenerControlLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	switch l.status {
	case StatusRunning:
		s.transitionLocked(l, StatusStopping, StatusStopped)
	case StatusConfiguring:
		return nil, serviceIsConfiguring()
	case StatusStarting:
		return nil, statusNotSupport()
	}
	return nil, nil
}

func (s *Server) deleteListener(c *apiCall) (map[string]any, *apiError) {
	lb, l, aerr := s.listenerControlLocked(c)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := writable(l); aerr != nil {
		return nil, aerr
	}
	delete(lb.listeners, listenerKey{l.port, l.protocol})
	return nil, nil
}

// listenersUsingLocked lists the listeners whose VServerGroupId is id.
func (s *Server) listenersUsingLocked(lb *lbState, id string) []*listenerState {
	return slices.DeleteFunc(s.sortedListenersLocked(lb), func(l *listenerState) bool {
		return l.attrs["VServerGroupId"] != id && l.attrs["MasterSlaveServerGroupId"] != id
	})
}
