package manifests

import (
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/resource"
)

// routeDecl is one Route document, checked on its own and with defaults applied.
type routeDecl struct {
	file  string
	line  int // line of metadata.name
	route resource.Route
	lines fieldLines
}

func (r *routeDecl) at(path string) int { return r.lines.at(path) }

// key is the listener's Key: slb/listener/<lb>:<port>/<protocol>.
func (r *routeDecl) key() resource.Key {
	l := r.route.Listener
	return resource.Key{
		Sink: resource.SinkSLB,
		Kind: resource.KindListener,
		Name: fmt.Sprintf("%s:%d/%s", r.route.LoadBalancer.ID, l.Port, l.Protocol),
	}
}

// transport is the layer-4 protocol a listener occupies on its port: SLB runs http,
// https and tcp listeners over TCP, so they cannot share a port; udp can.
func transport(protocol string) string {
	if protocol == "udp" {
		return "udp"
	}
	return "tcp"
}

// Listener value ranges from the SLB API (CreateLoadBalancer*Listener).
var schedulers = map[string][]string{
	"http":  {"wrr", "wlc", "rr"},
	"https": {"wrr", "wlc", "rr"},
	"tcp":   {"wrr", "wlc", "rr", "sch", "tch"},
	"udp":   {"wrr", "wlc", "rr", "sch", "tch", "qch"},
}

var httpCodes = []string{"http_2xx", "http_3xx", "http_4xx", "http_5xx"}

// Defaults written into the desired Route, so a listener read back from SLB (which
// always reports them) compares equal.
const (
	defaultBandwidth = -1 // no bandwidth cap (pay by traffic)
	defaultScheduler = "wrr"
	defaultNodeRole  = "any"
	defaultWeight    = 100
)

// newRouteDecl checks everything a Route says about itself, reporting every problem,
// and fills in defaults. Whether its target exists is checked later, against the stacks.
func newRouteDecl(d *parsedDoc, doc *routeDocument) (*routeDecl, Problems) {
	rd := &routeDecl{file: d.file, line: d.lines.at("metadata.name"), route: doc.Spec, lines: d.lines}
	rd.route.Name = doc.Metadata.Name
	c := &routeChecker{file: d.file, lines: d.lines}
	r := &rd.route

	switch name := doc.Metadata.Name; {
	case name == "":
		c.errorf("metadata.name", "is required")
	case len(name) > maxNameLen:
		c.errorf("metadata.name", "%q is longer than %d characters", name, maxNameLen)
	case !routeNameRE.MatchString(name):
		c.errorf("metadata.name", "%q is not a valid route name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", name)
	}

	svc := r.Service
	if svc.Stack == "" {
		c.errorf("spec.service.stack", "is required")
	}
	if svc.Name == "" {
		c.errorf("spec.service.name", "is required")
	}
	c.port("spec.service.targetPort", int(svc.TargetPort), true)

	lb := r.LoadBalancer
	switch {
	case lb.ID == "":
		c.errorf("spec.loadBalancer.id", "is required")
	case !lbIDRE.MatchString(lb.ID):
		c.errorf("spec.loadBalancer.id", "%q is not a load balancer ID (like lb-2zexxxxxxxxxxxxxxxxxx)", lb.ID)
	}
	switch {
	case lb.Region == "":
		c.errorf("spec.loadBalancer.region", "is required")
	case !regionRE.MatchString(lb.Region):
		c.errorf("spec.loadBalancer.region", "%q is not a region ID (like cn-hangzhou)", lb.Region)
	}

	l := &r.Listener
	proto := l.Protocol
	switch proto {
	case "http", "https", "tcp", "udp":
	case "":
		c.errorf("spec.listener.protocol", "is required: http, https, tcp or udp")
	default:
		c.errorf("spec.listener.protocol", "%q is not one of http, https, tcp, udp", proto)
	}
	// Protocol-specific checks only make sense once the protocol is known.
	_, known := schedulers[proto]
	layer7 := proto == "http" || proto == "https"
	layer4 := proto == "tcp" || proto == "udp"
	c.port("spec.listener.port", l.Port, true)
	if l.Bandwidth == nil {
		bw := defaultBandwidth
		l.Bandwidth = &bw
	} else if bw := *l.Bandwidth; bw != -1 && (bw < 1 || bw > 5120) {
		c.errorf("spec.listener.bandwidth", "%d is out of range: -1 (unlimited) or 1 to 5120 Mbit/s", bw)
	}
	if l.Scheduler == "" {
		l.Scheduler = defaultScheduler
	} else if allowed, ok := schedulers[proto]; ok && !slices.Contains(allowed, l.Scheduler) {
		c.errorf("spec.listener.scheduler", "%q is not available on %s listeners; use one of %s", l.Scheduler, proto, strings.Join(allowed, ", "))
	}
	if proto == "https" && l.CertificateID == "" {
		c.errorf("spec.listener", "certificateId is required for an https listener")
	}
	if known && proto != "https" && l.CertificateID != "" {
		c.errorf("spec.listener.certificateId", "only https listeners take a certificate; this one is %s", proto)
	}
	if layer4 {
		for _, f := range []struct {
			set  bool
			name string
		}{
			{l.StickySession != nil, "stickySession"},
			{l.XForwardedFor != nil, "xForwardedFor"},
			{l.Gzip != nil, "gzip"},
			{l.IdleTimeout != 0, "idleTimeout"},
			{l.RequestTimeout != 0, "requestTimeout"},
		} {
			if f.set {
				c.errorf("spec.listener."+f.name, "applies to http and https listeners only; this one is %s", proto)
			}
		}
	}
	c.rangeIfSet("spec.listener.idleTimeout", l.IdleTimeout, 1, 60, "seconds")
	c.rangeIfSet("spec.listener.requestTimeout", l.RequestTimeout, 1, 180, "seconds")

	if hc := l.HealthCheck; hc != nil {
		if layer4 {
			if hc.URI != "" {
				c.errorf("spec.listener.healthCheck.uri", "applies to http and https listeners only; %s listeners check by connecting", proto)
			}
			if len(hc.HTTPCode) > 0 {
				c.errorf("spec.listener.healthCheck.httpCode", "applies to http and https listeners only; this one is %s", proto)
			}
			if hc.Domain != "" {
				c.errorf("spec.listener.healthCheck.domain", "applies to http and https listeners only; this one is %s", proto)
			}
		}
		if hc.URI != "" {
			switch {
			case !strings.HasPrefix(hc.URI, "/"):
				c.errorf("spec.listener.healthCheck.uri", "%q must start with /", hc.URI)
			case len(hc.URI) > 80:
				c.errorf("spec.listener.healthCheck.uri", "is longer than 80 characters")
			case strings.ContainsAny(hc.URI, " \t\r\n"):
				c.errorf("spec.listener.healthCheck.uri", "%q contains white space", hc.URI)
			}
		}
		if len(hc.Domain) > 80 {
			c.errorf("spec.listener.healthCheck.domain", "is longer than 80 characters")
		}
		seen := map[string]bool{}
		for i, code := range hc.HTTPCode {
			p := fmt.Sprintf("spec.listener.healthCheck.httpCode[%d]", i)
			switch {
			case !slices.Contains(httpCodes, code):
				c.errorf(p, "%q is not one of %s", code, strings.Join(httpCodes, ", "))
			case seen[code]:
				c.errorf(p, "%q is listed twice", code)
			}
			seen[code] = true
		}
		c.rangeIfSet("spec.listener.healthCheck.interval", hc.Interval, 1, 50, "seconds")
		c.rangeIfSet("spec.listener.healthCheck.timeout", hc.Timeout, 1, 300, "seconds")
		c.rangeIfSet("spec.listener.healthCheck.healthyThreshold", hc.HealthyThreshold, 2, 10, "checks")
		c.rangeIfSet("spec.listener.healthCheck.unhealthyThreshold", hc.UnhealthyThreshold, 2, 10, "checks")
		c.port("spec.listener.healthCheck.connectPort", hc.ConnectPort, false)
	}

	if ss := l.StickySession; ss != nil && layer7 {
		switch ss.Type {
		case "insert":
			if ss.Timeout == 0 {
				c.errorf("spec.listener.stickySession.timeout", "is required for type insert (1 to 86400 seconds)")
			}
			c.rangeIfSet("spec.listener.stickySession.timeout", ss.Timeout, 1, 86400, "seconds")
			if ss.Cookie != "" {
				c.errorf("spec.listener.stickySession.cookie", "applies to type server only; type insert makes its own cookie")
			}
		case "server":
			if ss.Cookie == "" {
				c.errorf("spec.listener.stickySession.cookie", "is required for type server: the name of the application's cookie")
			} else if len(ss.Cookie) > 200 {
				c.errorf("spec.listener.stickySession.cookie", "is longer than 200 characters")
			}
			if ss.Timeout != 0 {
				c.errorf("spec.listener.stickySession.timeout", "applies to type insert only")
			}
		case "":
			c.errorf("spec.listener.stickySession.type", "is required: insert or server")
		default:
			c.errorf("spec.listener.stickySession.type", "%q is not one of insert, server", ss.Type)
		}
	}

	if acl := l.ACL; acl != nil {
		if acl.ID == "" {
			c.errorf("spec.listener.acl.id", "is required")
		}
		switch acl.Type {
		case "white", "black":
		case "":
			c.errorf("spec.listener.acl.type", "is required: white or black")
		default:
			c.errorf("spec.listener.acl.type", "%q is not one of white, black", acl.Type)
		}
	}

	b := &r.Backends
	switch b.NodeRole {
	case "":
		b.NodeRole = defaultNodeRole
	case "any", "manager", "worker":
	default:
		c.errorf("spec.backends.nodeRole", "%q is not one of any, manager, worker", b.NodeRole)
	}
	switch {
	case b.Weight == 0:
		b.Weight = defaultWeight
	case b.Weight < 0 || b.Weight > 100:
		c.errorf("spec.backends.weight", "%d is out of range 1 to 100", b.Weight)
	}
	for _, k := range sortedKeys(b.NodeLabels) {
		if strings.TrimSpace(k) == "" {
			c.errorf("spec.backends.nodeLabels", "label names must not be empty")
		}
	}

	if c.problems.HasErrors() {
		return nil, c.problems
	}
	return rd, c.problems
}

type routeChecker struct {
	file     string
	lines    fieldLines
	problems Problems
}

func (c *routeChecker) errorf(path, format string, args ...any) {
	c.problems = append(c.problems, errorAt(c.file, c.lines.at(path), "%s: %s", path, fmt.Sprintf(format, args...)))
}

func (c *routeChecker) port(path string, p int, required bool) {
	switch {
	case p == 0 && required:
		c.errorf(path, "is required (1 to 65535)")
	case p < 0 || p > 65535:
		c.errorf(path, "%d is not a port (1 to 65535)", p)
	}
}

func (c *routeChecker) rangeIfSet(path string, v, lo, hi int, unit string) {
	if v != 0 && (v < lo || v > hi) {
		c.errorf(path, "%d is out of range %d to %d %s", v, lo, hi, unit)
	}
}

// checkRoutes validates routes against each other and against the loaded stacks, and
// returns the listener resources. Routes to a stack that failed to load are not
// checked further: its own errors already say what is wrong.
func checkRoutes(routes []*routeDecl, stacks map[string]*stackDecl, failed map[string]bool, services map[string]resource.Resource) ([]resource.Resource, Problems) {
	var (
		out      []resource.Resource
		problems Problems
		byName   = map[string]*routeDecl{}
		byPort   = map[string]*routeDecl{}
	)
	for _, r := range routes {
		rt := r.route
		if prev, ok := byName[rt.Name]; ok {
			problems = append(problems, errorAt(r.file, r.line, "metadata.name: route %q is already declared at %s:%d", rt.Name, prev.file, prev.line))
			continue
		}
		byName[rt.Name] = r

		l := rt.Listener
		slot := fmt.Sprintf("%s:%d/%s", rt.LoadBalancer.ID, l.Port, transport(l.Protocol))
		if prev, ok := byPort[slot]; ok {
			problems = append(problems, errorAt(r.file, r.at("spec.listener.port"),
				"spec.listener.port: %s port %d of load balancer %s is already used by route %q (%s:%d); one port takes one %s listener",
				strings.ToUpper(transport(l.Protocol)), l.Port, rt.LoadBalancer.ID, prev.route.Name, prev.file, prev.line, transport(l.Protocol)))
			continue
		}
		byPort[slot] = r

		ref := rt.Service
		ok := true
		switch {
		case failed[ref.Stack]:
			// reported with the stack
		case stacks[ref.Stack] == nil:
			problems = append(problems, errorAt(r.file, r.at("spec.service.stack"),
				"spec.service.stack: stack %q is not declared%s", ref.Stack, knownList("stacks", mapKeys(stacks))))
			ok = false
		default:
			svc, found := services[ref.ServiceName()]
			if !found {
				problems = append(problems, errorAt(r.file, r.at("spec.service.name"),
					"spec.service.name: stack %q has no service %q%s", ref.Stack, ref.Name, knownList("services", stackServices(services, ref.Stack))))
				ok = false
				break
			}
			if ps := checkTargetPort(r, svc); len(ps) > 0 {
				problems = append(problems, ps...)
				ok = !ps.HasErrors()
			}
		}
		if !ok {
			continue
		}
		route := rt
		out = append(out, resource.Resource{
			Key:    r.key(),
			Stack:  ref.Stack,
			Source: fmt.Sprintf("%s:%d", r.file, r.line),
			Route:  &route,
		})
	}
	return out, problems
}

// checkTargetPort verifies the service publishes targetPort in the transport the
// listener speaks.
func checkTargetPort(r *routeDecl, svc resource.Resource) Problems {
	ref := r.route.Service
	want := swarm.PortConfigProtocol(transport(r.route.Listener.Protocol))
	var ports []swarm.PortConfig
	if svc.Service != nil && svc.Service.EndpointSpec != nil {
		ports = svc.Service.EndpointSpec.Ports
	}
	var other []string
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = swarm.PortConfigProtocolTCP
		}
		if p.TargetPort != ref.TargetPort {
			continue
		}
		if proto != want {
			other = append(other, string(proto))
			continue
		}
		if p.PublishMode == swarm.PortConfigPublishModeHost {
			return Problems{warningAt(r.file, r.at("spec.service.targetPort"),
				"spec.service.targetPort: service %s publishes port %d in host mode: only nodes running one of its tasks answer, so the other backends fail health checks",
				ref.ServiceName(), ref.TargetPort)}
		}
		return nil
	}
	var published []string
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = swarm.PortConfigProtocolTCP
		}
		published = append(published, fmt.Sprintf("%d/%s", p.TargetPort, proto))
	}
	if len(other) > 0 {
		return Problems{errorAt(r.file, r.at("spec.service.targetPort"),
			"spec.service.targetPort: service %s publishes port %d only as %s, but a %s listener needs it as %s",
			ref.ServiceName(), ref.TargetPort, strings.Join(other, ", "), r.route.Listener.Protocol, want)}
	}
	if len(published) == 0 {
		return Problems{errorAt(r.file, r.at("spec.service.targetPort"),
			"spec.service.targetPort: service %s publishes no ports; publish container port %d (ports: [\"%d\"] lets Swarm pick the published port)",
			ref.ServiceName(), ref.TargetPort, ref.TargetPort)}
	}
	return Problems{errorAt(r.file, r.at("spec.service.targetPort"),
		"spec.service.targetPort: service %s does not publish container port %d (it publishes %s)",
		ref.ServiceName(), ref.TargetPort, strings.Join(published, ", "))}
}

func knownList(what string, names []string) string {
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return fmt.Sprintf(" (%s: %s)", what, strings.Join(names, ", "))
}

func mapKeys[V any](m map[string]V) []string { return sortedKeys(m) }

func stackServices(services map[string]resource.Resource, stack string) []string {
	var names []string
	for name, r := range services {
		if r.Stack == stack {
			names = append(names, strings.TrimPrefix(name, stack+"_"))
		}
	}
	return names
}
