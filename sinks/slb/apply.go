package slb

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	slbsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/slb"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

// maxBackendsPerCall is SLB's limit on backends in one VServer group request.
const maxBackendsPerCall = 20

// maxSteps bounds the read-decide-write loops; each step is one write or one wait.
const maxSteps = 200

// Apply carries out one change on a listener or VServer group, holding the load
// balancer's lock for the whole of it (see the package documentation). A Delete
// refuses an object without this instance's marker; a Create or Update must carry it.
// Deleting what is already gone succeeds.
func (s *Sink) Apply(ctx context.Context, c reconcile.Change) error {
	if err := s.apply(ctx, c); err != nil {
		return fmt.Errorf("slb: %s %s: %w", c.Action, c.Key, err)
	}
	return nil
}

func (s *Sink) apply(ctx context.Context, c reconcile.Change) error {
	if c.Key.Sink != resource.SinkSLB {
		return errors.New("key is not an slb key")
	}
	if c.Action == reconcile.NoOp {
		return nil
	}
	var res *resource.Resource
	switch c.Action {
	case reconcile.Create, reconcile.Update, reconcile.Replace:
		if c.After == nil {
			return errors.New("no desired object (Change.After is nil)")
		}
		res = c.After
		if c.Action != reconcile.Create && (c.Before == nil || c.Before.SLBListener == nil && c.Before.VServerGroup == nil) {
			return errors.New("the live object is missing from the change (Change.Before is nil or not an SLB object)")
		}
		if c.Before != nil && (c.Before.SLBListener == nil) != (res.SLBListener == nil) {
			return errors.New("the live and the desired object are of different kinds")
		}
	case reconcile.Delete:
		if c.Before == nil {
			return errors.New("the live object is missing from the change (Change.Before is nil)")
		}
		if owner := c.Before.Owner(); owner != s.instance {
			if owner == "" {
				return errors.New("not managed by capstan (no capstan/<instance>/ marker): refusing to delete it")
			}
			return fmt.Errorf("managed by capstan instance %q, not %q: refusing to delete it", owner, s.instance)
		}
		res = c.Before
	default:
		return fmt.Errorf("action %s is not supported on SLB objects", c.Action)
	}

	switch {
	case c.Key.Kind == resource.KindListener && res.SLBListener != nil:
		l := res.SLBListener
		lock := s.lbLock(l.LoadBalancerID)
		lock.Lock()
		defer lock.Unlock()
		if c.Action == reconcile.Delete {
			return s.removeListener(ctx, *l, true)
		}
		if !s.ownedMarker(l.Description) {
			return fmt.Errorf("the desired listener's description %q is not this instance's marker", l.Description)
		}
		if c.Action == reconcile.Replace {
			if err := s.removeListener(ctx, *c.Before.SLBListener, true); err != nil {
				return fmt.Errorf("remove the old listener: %w", err)
			}
			return s.ensureListener(ctx, *l, nil, true, false)
		}
		var before *resource.SLBListener
		if c.Before != nil {
			before = c.Before.SLBListener
		}
		return s.ensureListener(ctx, *l, before, true, c.Action == reconcile.Update)
	case c.Key.Kind == resource.KindVServerGroup && res.VServerGroup != nil:
		g := res.VServerGroup
		lock := s.lbLock(g.LoadBalancerID)
		lock.Lock()
		defer lock.Unlock()
		switch c.Action {
		case reconcile.Delete:
			return s.deleteGroup(ctx, *g, c.Before.ID)
		case reconcile.Create:
			return s.createGroup(ctx, *g)
		default:
			if !s.ownedMarker(g.Name) {
				return fmt.Errorf("group name %q is not this instance's marker", g.Name)
			}
			want, err := s.resolvePorts(ctx, *g)
			if err != nil {
				return err
			}
			return s.syncMembers(ctx, g.Region, c.Before.ID, want.Backends, c.Before.VServerGroup.Backends, true)
		}
	}
	return fmt.Errorf("kind %q does not match the object in the change", c.Key.Kind)
}

// transitional reports whether status is one SLB leaves on its own.
func transitional(status string) bool {
	switch status {
	case resource.ListenerStarting, resource.ListenerConfiguring, resource.ListenerStopping:
		return true
	}
	return false
}

// ensureListener converges the listener to want and running, one step at a time: each
// step reads the listener (except the first, which trusts cur when known), then makes
// the one write its state calls for (create, set attributes, start) or waits out a
// transitional status. A failed write is retried only after reading again, so a write
// that took effect without an answer is not repeated. takeOver allows changing a
// listener without this instance's marker (an Update the plan decided, e.g. --adopt);
// otherwise finding one is an error.
func (s *Sink) ensureListener(ctx context.Context, want resource.SLBListener, cur *resource.SLBListener, known, takeOver bool) error {
	region, lb := want.Region, want.LoadBalancerID
	if err := s.clearPort(ctx, want); err != nil {
		return err
	}
	groupID, err := s.groupID(ctx, region, lb, want.VServerGroup)
	if err != nil {
		return err
	}
	r := s.retrier()
	var deadline time.Time
	setDone, started, taken := false, false, false
	for step := 0; step < maxSteps; step++ {
		if !known {
			if cur, err = s.readListener(ctx, region, lb, want.Port, want.Protocol); err != nil {
				return err
			}
		}
		known = false
		var werr error
		switch {
		case cur == nil && taken:
			return fmt.Errorf("SLB answered ListenerAlreadyExists, yet there is no %s listener on port %d: a listener of another protocol holds the port", want.Protocol, want.Port)
		case cur == nil:
			werr = s.writeListener(ctx, want, groupID, nil)
			setDone = werr == nil
		case !takeOver && !s.ownedMarker(cur.Description):
			return fmt.Errorf("another listener took port %d/%s meanwhile (description %q): left alone", want.Port, want.Protocol, cur.Description)
		case transitional(cur.Status):
			if deadline.IsZero() {
				deadline = time.Now().Add(s.opts.SettleTimeout)
			} else if time.Now().After(deadline) {
				return fmt.Errorf("listener still %s after %s", cur.Status, s.opts.SettleTimeout)
			}
			if err := sleep(ctx, s.opts.PollInterval); err != nil {
				return err
			}
			continue
		case !setDone && needsRecreate(*cur, want):
			// SLB cannot set the check back to the backend's port; a new listener can.
			if err := s.removeListener(ctx, *cur, true); err != nil {
				return fmt.Errorf("recreate the listener to reset its health-check port: %w", err)
			}
			cur, known = nil, true
			continue
		case !setDone && needsSet(*cur, want, groupID):
			werr = s.writeListener(ctx, want, groupID, cur)
			setDone = werr == nil
		case cur.Status == resource.ListenerStopped && !started:
			werr = s.listenerAction(ctx, "StartLoadBalancerListener", want)
			started = werr == nil
		default:
			return nil
		}
		deadline = time.Time{}
		if werr != nil {
			if codeIs(werr, "ListenerAlreadyExists") {
				taken = true
				continue // it exists after all, or another holds the port: the next step reads
			}
			if err := r.wait(ctx, werr); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("listener did not converge in %d steps", maxSteps)
}

// needsSet reports whether the live listener's settings differ from want's.
func needsSet(live, want resource.SLBListener, groupID string) bool {
	comparable := func(l resource.SLBListener) resource.SLBListener {
		l = l.Normalized()
		l.Status, l.VServerGroup, l.VServerGroupID, l.Region = "", "", "", ""
		return l
	}
	return live.VServerGroupID != groupID || !reflect.DeepEqual(comparable(live), comparable(want))
}

// needsRecreate reports whether want asks for what Set*ListenerAttribute cannot do:
// checking health on the backend's own port again after a fixed connectPort.
func needsRecreate(live, want resource.SLBListener) bool {
	l, w := live.Normalized(), want.Normalized()
	return w.HealthCheck.Enabled && w.HealthCheck.ConnectPort == 0 && l.HealthCheck.Enabled && l.HealthCheck.ConnectPort > 0
}

// clearPort removes this instance's listener of another protocol on want's port (the
// route changed protocol): SLB allows one TCP-based listener per port, and the plan's
// delete of the old listener only comes after the create of the new one.
func (s *Sink) clearPort(ctx context.Context, want resource.SLBListener) error {
	s.mu.Lock()
	var old []resource.SLBListener
	for _, l := range s.listeners {
		if l.LoadBalancerID == want.LoadBalancerID && l.Port == want.Port && l.Protocol != want.Protocol &&
			transport(l.Protocol) == transport(want.Protocol) && s.ownedMarker(l.Description) {
			old = append(old, l)
		}
	}
	s.mu.Unlock()
	for _, l := range old {
		if err := s.removeListener(ctx, l, false); err != nil {
			return fmt.Errorf("remove this instance's %s listener on port %d first: %w", l.Protocol, l.Port, err)
		}
	}
	return nil
}

// removeListener stops and deletes the listener l names, one step at a time as
// ensureListener does; known trusts l's status for the first step.
func (s *Sink) removeListener(ctx context.Context, l resource.SLBListener, known bool) error {
	r := s.retrier()
	cur := &l
	var deadline time.Time
	for step := 0; step < maxSteps; step++ {
		if !known {
			var err error
			if cur, err = s.readListener(ctx, l.Region, l.LoadBalancerID, l.Port, l.Protocol); err != nil {
				return err
			}
		}
		known = false
		var werr error
		switch {
		case cur == nil:
			s.dropListener(l)
			return nil
		case !s.ownedMarker(cur.Description):
			return fmt.Errorf("the listener is no longer this instance's (description %q): left alone", cur.Description)
		case transitional(cur.Status):
			if deadline.IsZero() {
				deadline = time.Now().Add(s.opts.SettleTimeout)
			} else if time.Now().After(deadline) {
				return fmt.Errorf("listener still %s after %s", cur.Status, s.opts.SettleTimeout)
			}
			if err := sleep(ctx, s.opts.PollInterval); err != nil {
				return err
			}
			continue
		case cur.Status != resource.ListenerStopped:
			werr = s.listenerAction(ctx, "StopLoadBalancerListener", l)
		default:
			werr = s.listenerAction(ctx, "DeleteLoadBalancerListener", l)
			if werr == nil {
				s.dropListener(l)
				return nil
			}
		}
		deadline = time.Time{}
		if werr != nil {
			if notFound(werr) {
				s.dropListener(l)
				return nil
			}
			if err := r.wait(ctx, werr); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("listener was not removed in %d steps", maxSteps)
}

func (s *Sink) dropListener(l resource.SLBListener) {
	s.mu.Lock()
	delete(s.listeners, resource.ListenerKey(l.LoadBalancerID, l.Port, l.Protocol))
	s.mu.Unlock()
}

// readListener reads one listener; nil when there is none on port/protocol.
func (s *Sink) readListener(ctx context.Context, region, lb string, port int, protocol string) (*resource.SLBListener, error) {
	var resp *slbsdk.DescribeLoadBalancerListenersResponse
	err := s.read(ctx, region, "DescribeLoadBalancerListeners", func(c *slbsdk.Client) error {
		req := slbsdk.CreateDescribeLoadBalancerListenersRequest()
		req.RegionId = region
		req.LoadBalancerId = &[]string{lb}
		req.ListenerPort = requests.NewInteger(port)
		req.ListenerProtocol = protocol
		var err error
		resp, err = c.DescribeLoadBalancerListeners(req)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, x := range resp.Listeners {
		if x.LoadBalancerId == lb && x.ListenerPort == port && x.ListenerProtocol == protocol {
			l := liveListener(region, x, nil)
			return &l, nil
		}
	}
	return nil, nil
}

// writeListener creates the listener (live nil) or sets its attributes.
func (s *Sink) writeListener(ctx context.Context, want resource.SLBListener, groupID string, live *resource.SLBListener) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	params := listenerParams(want, groupID, live == nil, live)
	region := want.Region
	type call struct {
		action string
		req    any
		do     func(c *slbsdk.Client) error
	}
	var k call
	switch p := want.Protocol; {
	case p == "http" && live == nil:
		req := slbsdk.CreateCreateLoadBalancerHTTPListenerRequest()
		k = call{"CreateLoadBalancerHTTPListener", req, func(c *slbsdk.Client) error { _, err := c.CreateLoadBalancerHTTPListener(req); return err }}
	case p == "http":
		req := slbsdk.CreateSetLoadBalancerHTTPListenerAttributeRequest()
		k = call{"SetLoadBalancerHTTPListenerAttribute", req, func(c *slbsdk.Client) error { _, err := c.SetLoadBalancerHTTPListenerAttribute(req); return err }}
	case p == "https" && live == nil:
		req := slbsdk.CreateCreateLoadBalancerHTTPSListenerRequest()
		k = call{"CreateLoadBalancerHTTPSListener", req, func(c *slbsdk.Client) error { _, err := c.CreateLoadBalancerHTTPSListener(req); return err }}
	case p == "https":
		req := slbsdk.CreateSetLoadBalancerHTTPSListenerAttributeRequest()
		k = call{"SetLoadBalancerHTTPSListenerAttribute", req, func(c *slbsdk.Client) error { _, err := c.SetLoadBalancerHTTPSListenerAttribute(req); return err }}
	case p == "tcp" && live == nil:
		req := slbsdk.CreateCreateLoadBalancerTCPListenerRequest()
		k = call{"CreateLoadBalancerTCPListener", req, func(c *slbsdk.Client) error { _, err := c.CreateLoadBalancerTCPListener(req); return err }}
	case p == "tcp":
		req := slbsdk.CreateSetLoadBalancerTCPListenerAttributeRequest()
		k = call{"SetLoadBalancerTCPListenerAttribute", req, func(c *slbsdk.Client) error { _, err := c.SetLoadBalancerTCPListenerAttribute(req); return err }}
	case p == "udp" && live == nil:
		req := slbsdk.CreateCreateLoadBalancerUDPListenerRequest()
		k = call{"CreateLoadBalancerUDPListener", req, func(c *slbsdk.Client) error { _, err := c.CreateLoadBalancerUDPListener(req); return err }}
	case p == "udp":
		req := slbsdk.CreateSetLoadBalancerUDPListenerAttributeRequest()
		k = call{"SetLoadBalancerUDPListenerAttribute", req, func(c *slbsdk.Client) error { _, err := c.SetLoadBalancerUDPListenerAttribute(req); return err }}
	default:
		return fmt.Errorf("protocol %q is not http, https, tcp or udp", p)
	}
	params["RegionId"] = region
	if err := setParams(k.req, params); err != nil {
		return err
	}
	return s.send(region, k.action, true, k.do)
}

// listenerAction sends Start-, Stop- or DeleteLoadBalancerListener for l.
func (s *Sink) listenerAction(ctx context.Context, action string, l resource.SLBListener) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	region := l.Region
	return s.send(region, action, true, func(c *slbsdk.Client) error {
		var err error
		switch action {
		case "StartLoadBalancerListener":
			req := slbsdk.CreateStartLoadBalancerListenerRequest()
			req.RegionId, req.LoadBalancerId, req.ListenerPort, req.ListenerProtocol = region, l.LoadBalancerID, requests.NewInteger(l.Port), l.Protocol
			_, err = c.StartLoadBalancerListener(req)
		case "StopLoadBalancerListener":
			req := slbsdk.CreateStopLoadBalancerListenerRequest()
			req.RegionId, req.LoadBalancerId, req.ListenerPort, req.ListenerProtocol = region, l.LoadBalancerID, requests.NewInteger(l.Port), l.Protocol
			_, err = c.StopLoadBalancerListener(req)
		case "DeleteLoadBalancerListener":
			req := slbsdk.CreateDeleteLoadBalancerListenerRequest()
			req.RegionId, req.LoadBalancerId, req.ListenerPort, req.ListenerProtocol = region, l.LoadBalancerID, requests.NewInteger(l.Port), l.Protocol
			_, err = c.DeleteLoadBalancerListener(req)
		default:
			err = fmt.Errorf("unknown listener action %s", action)
		}
		return err
	})
}

// groupID finds the ID of group name on lb: known from Observe or an earlier create,
// else read.
func (s *Sink) groupID(ctx context.Context, region, lb, name string) (string, error) {
	s.mu.Lock()
	id := s.groups[lb][name]
	s.mu.Unlock()
	if id != "" {
		return id, nil
	}
	id, err := s.findGroup(ctx, region, lb, name)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("VServer group %q does not exist on %s", name, lb)
	}
	return id, nil
}

// findGroup reads lb's groups and returns the ID of the one called name ("" if none),
// refreshing what the sink knows of lb's groups.
func (s *Sink) findGroup(ctx context.Context, region, lb, name string) (string, error) {
	groups, err := s.describeGroups(ctx, region, lb)
	if err != nil {
		return "", err
	}
	ids := map[string]string{}
	for _, g := range groups {
		ids[g.VServerGroupName] = g.VServerGroupId
	}
	s.mu.Lock()
	s.groups[lb] = ids
	s.mu.Unlock()
	return ids[name], nil
}

// rememberGroup records group name's ID on lb ("" once deleted), and that lb now
// holds something of this instance's, so later Observes look at it.
func (s *Sink) rememberGroup(region, lb, name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[lb] == nil {
		s.groups[lb] = map[string]string{}
	}
	if id == "" {
		delete(s.groups[lb], name)
		return
	}
	s.groups[lb][name] = id
	s.remembered[lb] = region
}

// resolvePorts fills in the backends' port where the plan could not know it (the
// service was created by the same plan).
func (s *Sink) resolvePorts(ctx context.Context, g resource.VServerGroup) (resource.VServerGroup, error) {
	g.Backends = slices.Clone(g.Backends)
	var port uint32
	for i, b := range g.Backends {
		if b.Port != 0 {
			continue
		}
		if port == 0 {
			if s.opts.Ports == nil {
				return g, fmt.Errorf("the published port of %s for %d/%s is unknown and nothing can read it", g.Service, g.TargetPort, g.PortProtocol)
			}
			p, err := s.opts.Ports.PublishedPort(ctx, g.Service, g.TargetPort, g.PortProtocol)
			if err != nil {
				return g, fmt.Errorf("read the published port of %s: %w", g.Service, err)
			}
			if p == 0 {
				return g, fmt.Errorf("service %s publishes no port for %d/%s", g.Service, g.TargetPort, g.PortProtocol)
			}
			port = p
		}
		g.Backends[i].Port = int(port)
	}
	return g, nil
}

// createGroup creates g with its first batch of backends and adds the rest. Before
// retrying a failed create it looks the group up by name: SLB allows two groups of one
// name, so a create that succeeded unanswered must not be repeated.
func (s *Sink) createGroup(ctx context.Context, g resource.VServerGroup) error {
	if !s.ownedMarker(g.Name) {
		return fmt.Errorf("group name %q is not this instance's marker", g.Name)
	}
	g, err := s.resolvePorts(ctx, g)
	if err != nil {
		return err
	}
	first := g.Backends
	if len(first) > maxBackendsPerCall {
		first = first[:maxBackendsPerCall]
	}
	r := s.retrier()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			id, err := s.findGroup(ctx, g.Region, g.LoadBalancerID, g.Name)
			if err != nil {
				return err
			}
			if id != "" {
				s.rememberGroup(g.Region, g.LoadBalancerID, g.Name, id)
				return s.syncMembers(ctx, g.Region, id, g.Backends, nil, false)
			}
		}
		var resp *slbsdk.CreateVServerGroupResponse
		err := s.send(g.Region, "CreateVServerGroup", true, func(c *slbsdk.Client) error {
			req := slbsdk.CreateCreateVServerGroupRequest()
			req.RegionId = g.Region
			req.LoadBalancerId = g.LoadBalancerID
			req.VServerGroupName = g.Name
			if len(first) > 0 {
				req.BackendServers = backendJSON(first, g.Name)
			}
			var err error
			resp, err = c.CreateVServerGroup(req)
			return err
		})
		if err == nil {
			s.rememberGroup(g.Region, g.LoadBalancerID, g.Name, resp.VServerGroupId)
			if len(first) == len(g.Backends) {
				s.remember(resp.VServerGroupId, first)
				return nil
			}
			return s.syncMembers(ctx, g.Region, resp.VServerGroupId, g.Backends, first, true)
		}
		if err := r.wait(ctx, err); err != nil {
			return err
		}
	}
}

// deleteGroup deletes group id; one already gone is fine.
func (s *Sink) deleteGroup(ctx context.Context, g resource.VServerGroup, id string) error {
	if id == "" {
		var err error
		if id, err = s.findGroup(ctx, g.Region, g.LoadBalancerID, g.Name); err != nil {
			return err
		}
		if id == "" {
			return nil
		}
	}
	r := s.retrier()
	for {
		err := s.send(g.Region, "DeleteVServerGroup", true, func(c *slbsdk.Client) error {
			req := slbsdk.CreateDeleteVServerGroupRequest()
			req.RegionId = g.Region
			req.VServerGroupId = id
			_, err := c.DeleteVServerGroup(req)
			return err
		})
		if err == nil || notFound(err) {
			s.forget(id)
			s.rememberGroup(g.Region, g.LoadBalancerID, g.Name, "")
			return nil
		}
		if codeIs(err, "RspoolVipExist") {
			return fmt.Errorf("a listener or forwarding rule still uses the group: %w", err)
		}
		if err := r.wait(ctx, err); err != nil {
			return err
		}
		// Before deleting again: was it deleted after all?
		if _, err := s.readMembers(ctx, g.Region, id); errors.Is(err, errGone) {
			s.forget(id)
			s.rememberGroup(g.Region, g.LoadBalancerID, g.Name, "")
			return nil
		}
	}
}

// memberOps is what turns a group's members into the wanted ones.
type memberOps struct {
	add        []resource.SLBBackend
	oldPorts   []resource.SLBBackend // paired with newPorts: a node's published port moved
	newPorts   []resource.SLBBackend
	setWeights []resource.SLBBackend
	remove     []resource.SLBBackend
}

func (o memberOps) empty() bool {
	return len(o.add)+len(o.oldPorts)+len(o.setWeights)+len(o.remove) == 0
}

// diffMembers compares members by ServerID: capstan's groups hold each node once.
func diffMembers(have, want []resource.SLBBackend) memberOps {
	typ := func(b resource.SLBBackend) string {
		if b.Type == "" {
			return "ecs"
		}
		return b.Type
	}
	wanted := map[string]resource.SLBBackend{}
	for _, b := range want {
		wanted[b.ServerID] = b
	}
	var o memberOps
	matched := map[string]bool{}
	for _, h := range have {
		w, ok := wanted[h.ServerID]
		switch {
		case !ok || matched[h.ServerID] || typ(h) != typ(w):
			o.remove = append(o.remove, h)
			continue
		case h.Port != w.Port:
			o.oldPorts = append(o.oldPorts, h)
			o.newPorts = append(o.newPorts, w)
		case h.Weight != w.Weight:
			o.setWeights = append(o.setWeights, w)
		}
		matched[h.ServerID] = true
	}
	for _, w := range want {
		if !matched[w.ServerID] {
			o.add = append(o.add, w)
			matched[w.ServerID] = true
		}
	}
	return o
}

// syncMembers makes group id's members want, one batch of at most 20 per write. have
// is the caller's view of the members, trusted for the first step when known; after a
// failed write the members are read again. Adds go first so that traffic always has
// somewhere to go, unless the load balancer's backend quota is full, then removals do.
func (s *Sink) syncMembers(ctx context.Context, region, id string, want, have []resource.SLBBackend, known bool) error {
	s.forget(id)
	r := s.retrier()
	removeFirst := false
	for step := 0; step < maxSteps; step++ {
		if !known {
			var err error
			if have, err = s.readMembers(ctx, region, id); err != nil {
				return err
			}
		}
		known = true
		o := diffMembers(have, want)
		if o.empty() {
			s.remember(id, have)
			return nil
		}
		var (
			action string
			batch  []resource.SLBBackend
			do     func(c *slbsdk.Client) error
			after  func([]resource.SLBBackend) []resource.SLBBackend
		)
		switch {
		case len(o.add) > 0 && !removeFirst:
			action, batch = "AddVServerGroupBackendServers", batches(o.add, maxBackendsPerCall)[0]
			do = func(c *slbsdk.Client) error {
				req := slbsdk.CreateAddVServerGroupBackendServersRequest()
				req.RegionId, req.VServerGroupId, req.BackendServers = region, id, backendJSON(batch, "")
				_, err := c.AddVServerGroupBackendServers(req)
				return err
			}
			after = func(h []resource.SLBBackend) []resource.SLBBackend { return append(h, batch...) }
		case len(o.oldPorts) > 0:
			n := min(len(o.oldPorts), maxBackendsPerCall)
			olds, news := o.oldPorts[:n], o.newPorts[:n]
			action, batch = "ModifyVServerGroupBackendServers", news
			do = func(c *slbsdk.Client) error {
				req := slbsdk.CreateModifyVServerGroupBackendServersRequest()
				req.RegionId, req.VServerGroupId = region, id
				req.OldBackendServers, req.NewBackendServers = backendJSON(olds, ""), backendJSON(news, "")
				_, err := c.ModifyVServerGroupBackendServers(req)
				return err
			}
			after = func(h []resource.SLBBackend) []resource.SLBBackend {
				return append(without(h, olds), news...)
			}
		case len(o.setWeights) > 0:
			action, batch = "SetVServerGroupAttribute", batches(o.setWeights, maxBackendsPerCall)[0]
			do = func(c *slbsdk.Client) error {
				req := slbsdk.CreateSetVServerGroupAttributeRequest()
				req.RegionId, req.VServerGroupId, req.BackendServers = region, id, backendJSON(batch, "")
				_, err := c.SetVServerGroupAttribute(req)
				return err
			}
			after = func(h []resource.SLBBackend) []resource.SLBBackend {
				out := slices.Clone(h)
				for i := range out {
					for _, b := range batch {
						if out[i].ServerID == b.ServerID && out[i].Port == b.Port {
							out[i].Weight = b.Weight
						}
					}
				}
				return out
			}
		case len(o.remove) > 0:
			action, batch = "RemoveVServerGroupBackendServers", batches(o.remove, maxBackendsPerCall)[0]
			do = func(c *slbsdk.Client) error {
				req := slbsdk.CreateRemoveVServerGroupBackendServersRequest()
				req.RegionId, req.VServerGroupId, req.BackendServers = region, id, backendJSON(batch, "")
				_, err := c.RemoveVServerGroupBackendServers(req)
				return err
			}
			after = func(h []resource.SLBBackend) []resource.SLBBackend { return without(h, batch) }
		default: // only adds left, held back for removals that are done
			removeFirst = false
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.send(region, action, true, do)
		if err == nil {
			have = after(have)
			continue
		}
		known = false
		if codeIs(err, "InstanceBackendServerNumberOverLimit") && len(o.remove) > 0 && !removeFirst {
			removeFirst = true
			continue
		}
		if err := r.wait(ctx, err); err != nil {
			return err
		}
	}
	return fmt.Errorf("VServer group %s did not converge in %d steps", id, maxSteps)
}

// without returns h minus the members of drop (by ServerID and Port).
func without(h, drop []resource.SLBBackend) []resource.SLBBackend {
	var out []resource.SLBBackend
	for _, b := range h {
		if !slices.ContainsFunc(drop, func(d resource.SLBBackend) bool { return d.ServerID == b.ServerID && d.Port == b.Port }) {
			out = append(out, b)
		}
	}
	return out
}
