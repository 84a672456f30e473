package slbemu

import (
	"strconv"
)

var healthParams = specs(`LoadBalancerId! ListenerPort:int(1..65535) ListenerProtocol:enum(http|https|tcp|udp)`)

func (s *Server) describeHealthStatus(c *apiCall) (map[string]any, *apiError) {
	pp, aerr := accept(healthParams, c.p)
	if aerr != nil {
		return nil, aerr
	}
	lb, aerr := s.lbLocked(c, pp["LoadBalancerId"])
	if aerr != nil {
		return nil, aerr
	}
	list := []map[string]any{}
	for _, l := range s.sortedListenersLocked(lb) {
		if (pp["ListenerPort"] != "" && pp["ListenerPort"] != strconv.Itoa(l.port)) ||
			(pp["ListenerProtocol"] != "" && pp["ListenerProtocol"] != l.protocol) {
			continue
		}
		for _, b := range s.listenerBackendsLocked(lb, l) {
			list = append(list, map[string]any{
				"ListenerPort":       l.port,
				"Port":               b.Port,
				"Protocol":           l.protocol,
				"ServerHealthStatus": s.healthLocked(lb, l, b),
				"ServerId":           b.ServerID,
				"ServerIp":           s.hostOf(b),
				"Type":               b.Type,
			})
		}
	}
	return map[string]any{"BackendServers": map[string]any{"BackendServer": list}}, nil
}

// healthLocked is a backend's ServerHealthStatus: a forced value if set; unavailable
// when the listener is not serving or checks are off; what the forwarder's checks saw
// with forwarding; otherwise normal.
func (s *Server) healthLocked(lb *lbState, l *listenerState, b Backend) string {
	if st := s.health[b.ServerID+":"+strconv.Itoa(b.Port)]; st != "" {
		return st
	}
	if !l.serving() {
		return "unavailable"
	}
	check := l.attrs["HealthCheck"]
	if l.protocol == "tcp" || l.protocol == "udp" {
		check = l.attrs["HealthCheckSwitch"]
	}
	if check != "on" {
		return "unavailable"
	}
	if f := s.fwd[fwdKey{lb.cfg.ID, l.port, l.protocol}]; f != nil {
		return f.healthStatus(b)
	}
	return "normal"
}
