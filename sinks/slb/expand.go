package slb

import (
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/resource"
)

// Node is a Swarm node as Expand needs it. Strings are Swarm's: Role manager|worker,
// Availability active|pause|drain, State ready|down|unknown|disconnected.
type Node struct {
	ID           string
	Hostname     string
	Role         string
	Availability string
	State        string
	Labels       map[string]string
}

// PublishedPort is one port Swarm published for a service (its Endpoint.Ports).
type PublishedPort struct {
	Target    uint32
	Published uint32
	Protocol  string // tcp | udp | sctp
}

// ExpandInput is the live Swarm state routes expand against.
type ExpandInput struct {
	Instance string
	Nodes    []Node
	// Published maps a live service name (<stack>_<service>) to its published ports.
	Published map[string][]PublishedPort
}

// Expand replaces every Route in desired with the VServer group and listener it stands
// for (see the package documentation) and returns warnings for the plan: nodes that
// cannot be backends and why, routes without backends, ports known only after apply.
// Routes must have been checked by manifests (valid names, ports, protocols).
func Expand(desired *resource.Set, in ExpandInput) ([]string, error) {
	instance := in.Instance
	if instance == "" {
		instance = resource.DefaultInstance
	}
	var routes []resource.Resource
	for _, k := range desired.Keys() {
		if r := desired.Resources[k]; r.Route != nil {
			routes = append(routes, r)
		}
	}
	if len(routes) == 0 {
		return nil, nil
	}

	var warnings []string
	unlabelled := map[string][]string{} // node → routes it is not a backend of
	var errs []string
	for _, r := range routes {
		rt := *r.Route
		marker := resource.SLBMarker(instance, rt.Name)
		if len(marker) > resource.MaxSLBMarker {
			errs = append(errs, fmt.Sprintf("%s: route %q: its SLB marker %q is longer than %d characters; shorten the route name or --instance",
				r.Source, rt.Name, marker, resource.MaxSLBMarker))
			continue
		}
		backends, missing, dups := selectBackends(rt, in.Nodes)
		for _, n := range missing {
			unlabelled[n] = append(unlabelled[n], rt.Name)
		}
		for _, d := range dups {
			warnings = append(warnings, fmt.Sprintf("%s: route %s: %s", r.Source, rt.Name, d))
		}

		proto := transport(rt.Listener.Protocol)
		port, known := publishedPort(desired, in.Published, rt.Service, proto)
		if !known {
			warnings = append(warnings, fmt.Sprintf("%s: route %s: service %s is not running yet; its published port for %d/%s is known after apply",
				r.Source, rt.Name, rt.Service.ServiceName(), rt.Service.TargetPort, proto))
		}
		group := resource.VServerGroup{
			LoadBalancerID: rt.LoadBalancer.ID,
			Region:         rt.LoadBalancer.Region,
			Name:           marker,
			Service:        rt.Service.ServiceName(),
			TargetPort:     rt.Service.TargetPort,
			PortProtocol:   proto,
		}
		for _, b := range backends {
			group.Backends = append(group.Backends, resource.SLBBackend{ServerID: b, Port: int(port), Weight: weight(rt), Type: "ecs"})
		}
		if len(group.Backends) == 0 {
			warnings = append(warnings, fmt.Sprintf("%s: route %s: no Swarm node qualifies as a backend (ready, active, %s, labelled %s): the listener will have no backends",
				r.Source, rt.Name, roleText(rt.Backends), resource.LabelECSInstanceID))
		}
		listener := listenerFor(rt, marker)

		delete(desired.Resources, r.Key)
		for _, res := range []resource.Resource{
			{Key: resource.VServerGroupKey(group.LoadBalancerID, group.Name), Stack: r.Stack, Source: r.Source, VServerGroup: &group},
			{Key: r.Key, Stack: r.Stack, Source: r.Source, SLBListener: &listener},
		} {
			if err := desired.Add(res); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	warnings = append(warnings, unavailableBackends(in.Nodes)...)
	for _, n := range sortedKeys(unlabelled) {
		node := nodeByID(in.Nodes, n)
		warnings = append(warnings, fmt.Sprintf("node %s (%s) has no label %s, so it is not an SLB backend of route(s) %s; label it: docker node update --label-add %s=<ECS instance ID> %s",
			node.Hostname, node.ID, resource.LabelECSInstanceID, strings.Join(unlabelled[n], ", "), resource.LabelECSInstanceID, node.Hostname))
	}
	if len(errs) > 0 {
		return warnings, fmt.Errorf("slb: %s", strings.Join(errs, "\n"))
	}
	return warnings, nil
}

func weight(rt resource.Route) int {
	if rt.Backends.Weight > 0 {
		return rt.Backends.Weight
	}
	return 100
}

// transport is the layer-4 protocol a listener's traffic reaches the service in.
func transport(protocol string) string {
	if protocol == "udp" {
		return "udp"
	}
	return "tcp"
}

func roleText(b resource.Backends) string {
	role := "any role"
	if b.NodeRole != "" && b.NodeRole != "any" {
		role = b.NodeRole + " role"
	}
	if len(b.NodeLabels) == 0 {
		return role
	}
	var ls []string
	for _, k := range sortedKeys(b.NodeLabels) {
		ls = append(ls, k+"="+b.NodeLabels[k])
	}
	return role + ", node labels " + strings.Join(ls, ",")
}

// unavailableBackends says which labelled nodes are left out of every VServer group
// because Swarm reports them down or not active, so a plan that drops their backends
// says why instead of looking like a source change.
func unavailableBackends(nodes []Node) []string {
	var out []string
	for _, n := range nodes {
		ecs := strings.TrimSpace(n.Labels[resource.LabelECSInstanceID])
		if ecs == "" {
			continue
		}
		if n.State != string(swarm.NodeStateReady) {
			out = append(out, fmt.Sprintf("node %s (%s, %s) is %s: it is not an SLB backend until it is ready again", n.Hostname, n.ID, ecs, n.State))
		} else if n.Availability != string(swarm.NodeAvailabilityActive) {
			out = append(out, fmt.Sprintf("node %s (%s, %s) is %s: it is not an SLB backend until it is active again", n.Hostname, n.ID, ecs, n.Availability))
		}
	}
	return out
}

func nodeByID(nodes []Node, id string) Node {
	for _, n := range nodes {
		if n.ID == id {
			return n
		}
	}
	return Node{ID: id}
}

// selectBackends returns the ECS instance IDs of the nodes the route's backends select,
// sorted; the IDs of selected nodes without the ECS label; and problems with duplicate
// instance IDs. Nodes that are down or not active (drained, paused) are left out: SLB
// should not send them traffic.
func selectBackends(rt resource.Route, nodes []Node) (ids, unlabelled, dups []string) {
	seen := map[string]string{}
	for _, n := range nodes {
		if n.State != string(swarm.NodeStateReady) || n.Availability != string(swarm.NodeAvailabilityActive) {
			continue
		}
		if role := rt.Backends.NodeRole; role != "" && role != "any" && role != n.Role {
			continue
		}
		match := true
		for k, v := range rt.Backends.NodeLabels {
			if got, ok := n.Labels[k]; !ok || got != v {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		ecs := strings.TrimSpace(n.Labels[resource.LabelECSInstanceID])
		if ecs == "" {
			unlabelled = append(unlabelled, n.ID)
			continue
		}
		if prev, ok := seen[ecs]; ok {
			dups = append(dups, fmt.Sprintf("nodes %s and %s both carry %s=%s; the instance is a backend once: correct the label of the wrong node",
				prev, n.Hostname, resource.LabelECSInstanceID, ecs))
			continue
		}
		seen[ecs] = n.Hostname
		ids = append(ids, ecs)
	}
	sort.Strings(ids)
	return ids, unlabelled, dups
}

// publishedPort finds the port Swarm publishes ref's targetPort on: the one the source
// declares, when it declares one (it is what the service will have after apply), else
// the one live Swarm assigned. known is false when neither exists yet.
func publishedPort(desired *resource.Set, live map[string][]PublishedPort, ref resource.ServiceRef, proto string) (uint32, bool) {
	if svc, ok := desired.Get(resource.ServiceKey(ref.ServiceName())); ok && svc.Service != nil && svc.Service.EndpointSpec != nil {
		for _, p := range svc.Service.EndpointSpec.Ports {
			if p.TargetPort == ref.TargetPort && protoOf(string(p.Protocol)) == proto && p.PublishedPort != 0 {
				return p.PublishedPort, true
			}
		}
	}
	for _, p := range live[ref.ServiceName()] {
		if p.Target == ref.TargetPort && protoOf(p.Protocol) == proto && p.Published != 0 {
			return p.Published, true
		}
	}
	return 0, false
}

func protoOf(p string) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(p)
}

// listenerFor writes out the listener rt asks for, with SLB's defaults for what it
// leaves out: an http(s) listener checks health only when the route has a healthCheck
// block, a tcp or udp listener always does (SLB's own default); X-Forwarded-For and gzip
// are on unless switched off.
func listenerFor(rt resource.Route, marker string) resource.SLBListener {
	in := rt.Listener
	l := resource.SLBListener{
		LoadBalancerID: rt.LoadBalancer.ID,
		Region:         rt.LoadBalancer.Region,
		Protocol:       in.Protocol,
		Port:           in.Port,
		Bandwidth:      -1,
		Scheduler:      in.Scheduler,
		CertificateID:  in.CertificateID,
		XForwardedFor:  boolOr(in.XForwardedFor, true),
		Gzip:           boolOr(in.Gzip, true),
		IdleTimeout:    in.IdleTimeout,
		RequestTimeout: in.RequestTimeout,
		VServerGroup:   marker,
		Description:    marker,
		Status:         resource.ListenerRunning,
	}
	if in.Bandwidth != nil {
		l.Bandwidth = *in.Bandwidth
	}
	if hc := in.HealthCheck; hc != nil {
		l.HealthCheck = resource.SLBHealthCheck{
			Enabled:            boolOr(hc.Enabled, true),
			URI:                hc.URI,
			Domain:             hc.Domain,
			HTTPCode:           append([]string(nil), hc.HTTPCode...),
			Interval:           hc.Interval,
			Timeout:            hc.Timeout,
			HealthyThreshold:   hc.HealthyThreshold,
			UnhealthyThreshold: hc.UnhealthyThreshold,
			ConnectPort:        hc.ConnectPort,
		}
	} else {
		l.HealthCheck.Enabled = !l.Layer7()
	}
	if ss := in.StickySession; ss != nil {
		l.StickySession = resource.SLBStickySession{Enabled: true, Type: ss.Type, Timeout: ss.Timeout, Cookie: ss.Cookie}
	}
	if acl := in.ACL; acl != nil {
		l.ACL = resource.SLBACL{Enabled: true, ID: acl.ID, Type: acl.Type}
	}
	return l.Normalized()
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// CheckPorts reports desired listeners whose port, on their load balancer, a listener of
// another protocol holds that this instance does not own: SLB runs http, https and tcp
// listeners in one port space, so the route cannot get its listener there. (The same
// protocol on the same port is the same Key, which the plan itself reports as a
// conflict.) Call it with the expanded desired set and the live set Observe returned.
func CheckPorts(desired, live *resource.Set, instance string) error {
	if instance == "" {
		instance = resource.DefaultInstance
	}
	var problems []string
	for _, k := range desired.Keys() {
		d := desired.Resources[k].SLBListener
		if d == nil {
			continue
		}
		for _, lk := range live.Keys() {
			l := live.Resources[lk]
			if l.SLBListener == nil || lk == k {
				continue
			}
			ll := l.SLBListener
			if ll.LoadBalancerID != d.LoadBalancerID || ll.Port != d.Port || transport(ll.Protocol) != transport(d.Protocol) || l.Owner() == instance {
				continue
			}
			owner := "made outside capstan"
			if o := l.Owner(); o != "" {
				owner = "capstan instance " + o + "'s"
			}
			problems = append(problems, fmt.Sprintf("%s: %s port %d of %s is taken by a %s listener (%s, description %q); remove it or move the route to a free port",
				desired.Resources[k].Source, d.Protocol, d.Port, d.LoadBalancerID, ll.Protocol, owner, ll.Description))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("slb: %s", strings.Join(problems, "\n"))
	}
	return nil
}
