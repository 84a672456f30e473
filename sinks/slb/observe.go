package slb

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	slbsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/slb"

	"github.com/capstan-dev/capstan/resource"
)

// Page sizes and the number of load balancers one DescribeLoadBalancerListeners names.
const (
	lbPageSize       = 100
	listenerPageSize = 100
	lbsPerListing    = 10
)

// Observe reads the listeners and VServer groups capstan may manage (see the package
// documentation for which load balancers, and what it costs). The Set holds every
// listener of those load balancers, whoever owns it, so that a route wanting a port
// another listener holds is a conflict; and this instance's VServer groups with their
// members. A load balancer that a route names or Options lists but that does not exist
// is an error.
func (s *Sink) Observe(ctx context.Context) (*resource.Set, error) {
	set := resource.NewSet()
	scope := s.scope()
	explicit := map[string]bool{}
	s.mu.Lock()
	for lb := range s.watched {
		explicit[lb] = true
	}
	s.mu.Unlock()
	for _, lb := range s.opts.LoadBalancers {
		explicit[lb.ID] = true
	}

	groupIDs := map[string]map[string]string{}
	snapshot := map[resource.Key]resource.SLBListener{}
	owning := map[string]string{}
	for _, region := range sortedKeys(scope) {
		wanted := scope[region]
		lbs, err := s.listLoadBalancers(ctx, region)
		if err != nil {
			return nil, err
		}
		for _, lb := range sortedKeys(wanted) {
			if !slices.Contains(lbs, lb) && explicit[lb] {
				return nil, fmt.Errorf("slb: load balancer %s does not exist in region %s (or the credentials may not see it)", lb, region)
			}
		}
		listeners, err := s.listListeners(ctx, region, lbs)
		if err != nil {
			return nil, err
		}
		relevant := map[string]bool{}
		for lb := range wanted {
			if slices.Contains(lbs, lb) {
				relevant[lb] = true
			}
		}
		for _, l := range listeners {
			if s.ownedMarker(l.Description) {
				relevant[l.LoadBalancerId] = true
			}
		}
		for _, lb := range sortedKeys(relevant) {
			groups, err := s.describeGroups(ctx, region, lb)
			if err != nil {
				return nil, err
			}
			names := map[string]string{}
			ids := map[string]string{}
			for _, g := range groups {
				names[g.VServerGroupId] = g.VServerGroupName
				ids[g.VServerGroupName] = g.VServerGroupId
				if !s.ownedMarker(g.VServerGroupName) {
					continue
				}
				owning[lb] = region
				backends, err := s.members(ctx, region, g.VServerGroupId, g.ServerCount)
				if err != nil {
					return nil, err
				}
				vg := resource.VServerGroup{LoadBalancerID: lb, Region: region, Name: g.VServerGroupName, Backends: backends}
				set.Resources[resource.VServerGroupKey(lb, vg.Name)] = resource.Resource{
					Key: resource.VServerGroupKey(lb, vg.Name), VServerGroup: &vg, ID: g.VServerGroupId, ManagedBy: s.instance,
				}
			}
			groupIDs[lb] = ids
			for _, x := range listeners {
				if x.LoadBalancerId != lb {
					continue
				}
				l := liveListener(region, x, names)
				key := resource.ListenerKey(lb, l.Port, l.Protocol)
				r := resource.Resource{Key: key, SLBListener: &l, ID: key.Name}
				if inst, _, ok := resource.ParseSLBMarker(l.Description); ok {
					r.ManagedBy = inst
					if inst == s.instance {
						owning[lb] = region
					}
				}
				set.Resources[key] = r
				snapshot[key] = l
			}
		}
	}

	s.mu.Lock()
	s.groups = groupIDs
	s.listeners = snapshot
	s.remembered = owning
	s.mu.Unlock()
	return set, nil
}

// ownedMarker reports whether desc is this instance's ownership marker.
func (s *Sink) ownedMarker(desc string) bool {
	inst, _, ok := resource.ParseSLBMarker(desc)
	return ok && inst == s.instance
}

// listLoadBalancers returns the IDs of the load balancers in region.
func (s *Sink) listLoadBalancers(ctx context.Context, region string) ([]string, error) {
	var ids []string
	for page := 1; ; page++ {
		var resp *slbsdk.DescribeLoadBalancersResponse
		err := s.read(ctx, region, "DescribeLoadBalancers", func(c *slbsdk.Client) error {
			req := slbsdk.CreateDescribeLoadBalancersRequest()
			req.RegionId = region
			req.PageNumber = requests.NewInteger(page)
			req.PageSize = requests.NewInteger(lbPageSize)
			var err error
			resp, err = c.DescribeLoadBalancers(req)
			return err
		})
		if err != nil {
			return nil, err
		}
		got := resp.LoadBalancers.LoadBalancer
		for _, lb := range got {
			ids = append(ids, lb.LoadBalancerId)
		}
		if len(got) < lbPageSize || len(ids) >= resp.TotalCount {
			break
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// listListeners returns every listener of lbs, in one call per ten load balancers
// (and per page).
func (s *Sink) listListeners(ctx context.Context, region string, lbs []string) ([]slbsdk.ListenerInDescribeLoadBalancerListeners, error) {
	var out []slbsdk.ListenerInDescribeLoadBalancerListeners
	for _, batch := range batches(lbs, lbsPerListing) {
		token := ""
		for {
			var resp *slbsdk.DescribeLoadBalancerListenersResponse
			err := s.read(ctx, region, "DescribeLoadBalancerListeners", func(c *slbsdk.Client) error {
				req := slbsdk.CreateDescribeLoadBalancerListenersRequest()
				req.RegionId = region
				ids := slices.Clone(batch)
				req.LoadBalancerId = &ids
				req.MaxResults = requests.NewInteger(listenerPageSize)
				req.NextToken = token
				var err error
				resp, err = c.DescribeLoadBalancerListeners(req)
				return err
			})
			if err != nil {
				return nil, err
			}
			out = append(out, resp.Listeners...)
			if resp.NextToken == "" || resp.NextToken == token || len(resp.Listeners) == 0 {
				break
			}
			token = resp.NextToken
		}
	}
	return out, nil
}

// describeGroups lists lb's VServer groups, without their members.
func (s *Sink) describeGroups(ctx context.Context, region, lb string) ([]slbsdk.VServerGroup, error) {
	var resp *slbsdk.DescribeVServerGroupsResponse
	err := s.read(ctx, region, "DescribeVServerGroups", func(c *slbsdk.Client) error {
		req := slbsdk.CreateDescribeVServerGroupsRequest()
		req.RegionId = region
		req.LoadBalancerId = lb
		var err error
		resp, err = c.DescribeVServerGroups(req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.VServerGroups.VServerGroup, nil
}

// members returns the members of group id, reusing an earlier read while SLB's count of
// them is unchanged and the read is younger than BackendCacheTTL.
func (s *Sink) members(ctx context.Context, region, id string, count int64) ([]resource.SLBBackend, error) {
	ttl := s.opts.BackendCacheTTL
	s.mu.Lock()
	c, ok := s.memberCache[id]
	s.mu.Unlock()
	if ok && ttl > 0 && time.Since(c.at) < ttl && c.count == count && int64(len(c.backends)) == count {
		return slices.Clone(c.backends), nil
	}
	backends, err := s.readMembers(ctx, region, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.memberCache[id] = memberCache{count: count, backends: slices.Clone(backends), at: time.Now()}
	s.mu.Unlock()
	return backends, nil
}

// readMembers reads group id's members from SLB. A group that no longer exists reads
// as errGone.
func (s *Sink) readMembers(ctx context.Context, region, id string) ([]resource.SLBBackend, error) {
	var resp *slbsdk.DescribeVServerGroupAttributeResponse
	err := s.read(ctx, region, "DescribeVServerGroupAttribute", func(c *slbsdk.Client) error {
		req := slbsdk.CreateDescribeVServerGroupAttributeRequest()
		req.RegionId = region
		req.VServerGroupId = id
		var err error
		resp, err = c.DescribeVServerGroupAttribute(req)
		return err
	})
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("VServer group %s: %w", id, errGone)
		}
		return nil, err
	}
	var out []resource.SLBBackend
	for _, b := range resp.BackendServers.BackendServer {
		out = append(out, resource.SLBBackend{ServerID: b.ServerId, Port: b.Port, Weight: b.Weight, Type: b.Type})
	}
	return out, nil
}

// remember caches the members capstan just gave group id; the next Observe checks
// them against SLB's count of members, like any cached read.
func (s *Sink) remember(id string, backends []resource.SLBBackend) {
	s.mu.Lock()
	s.memberCache[id] = memberCache{count: int64(len(backends)), backends: slices.Clone(backends), at: time.Now()}
	s.mu.Unlock()
}

// forget drops the cached members of group id while capstan changes them.
func (s *Sink) forget(id string) {
	s.mu.Lock()
	delete(s.memberCache, id)
	s.mu.Unlock()
}

// liveListener converts a listed listener. groupNames maps the load balancer's group
// IDs to names.
func liveListener(region string, x slbsdk.ListenerInDescribeLoadBalancerListeners, groupNames map[string]string) resource.SLBListener {
	l := resource.SLBListener{
		LoadBalancerID: x.LoadBalancerId,
		Region:         region,
		Protocol:       strings.ToLower(x.ListenerProtocol),
		Port:           x.ListenerPort,
		Bandwidth:      x.Bandwidth,
		Scheduler:      x.Scheduler,
		Description:    x.Description,
		Status:         x.Status,
		VServerGroupID: x.VServerGroupId,
		ACL:            resource.SLBACL{Enabled: x.AclStatus == "on", ID: x.AclId, Type: x.AclType},
	}
	if id := x.VServerGroupId; id != "" {
		name, ok := groupNames[id]
		if !ok {
			name = "(unknown group " + id + ")"
		}
		l.VServerGroup = name
	}
	type l7 struct {
		hc, uri, domain, codes, sticky, stickyType, cookie, xff, gzip string
		interval, timeout, healthy, unhealthy, port, cookieTimeout    int
		idle, request                                                 int
	}
	var c *l7
	switch l.Protocol {
	case "http":
		h := x.HTTPListenerConfig
		c = &l7{h.HealthCheck, h.HealthCheckURI, h.HealthCheckDomain, h.HealthCheckHttpCode, h.StickySession, h.StickySessionType, h.Cookie, h.XForwardedFor, h.Gzip,
			h.HealthCheckInterval, h.HealthCheckTimeout, h.HealthyThreshold, h.UnhealthyThreshold, h.HealthCheckConnectPort, h.CookieTimeout, h.IdleTimeout, h.RequestTimeout}
	case "https":
		h := x.HTTPSListenerConfig
		c = &l7{h.HealthCheck, h.HealthCheckURI, h.HealthCheckDomain, h.HealthCheckHttpCode, h.StickySession, h.StickySessionType, h.Cookie, h.XForwardedFor, h.Gzip,
			h.HealthCheckInterval, h.HealthCheckTimeout, h.HealthyThreshold, h.UnhealthyThreshold, h.HealthCheckConnectPort, h.CookieTimeout, h.IdleTimeout, h.RequestTimeout}
		l.CertificateID = h.ServerCertificateId
	case "tcp":
		t := x.TCPListenerConfig
		l.HealthCheck = resource.SLBHealthCheck{
			Enabled:  switchOn(t.HealthCheckSwitch, t.HealthCheck),
			Interval: t.HealthCheckInterval, Timeout: t.HealthCheckConnectTimeout,
			HealthyThreshold: t.HealthyThreshold, UnhealthyThreshold: t.UnhealthyThreshold, ConnectPort: t.HealthCheckConnectPort,
		}
	case "udp":
		u := x.UDPListenerConfig
		l.HealthCheck = resource.SLBHealthCheck{
			Enabled:  switchOn(u.HealthCheckSwitch, u.HealthCheck),
			Interval: u.HealthCheckInterval, Timeout: u.HealthCheckConnectTimeout,
			HealthyThreshold: u.HealthyThreshold, UnhealthyThreshold: u.UnhealthyThreshold, ConnectPort: u.HealthCheckConnectPort,
		}
	}
	if c != nil {
		l.HealthCheck = resource.SLBHealthCheck{
			Enabled: c.hc == "on", URI: c.uri, Domain: c.domain, HTTPCode: splitList(c.codes),
			Interval: c.interval, Timeout: c.timeout, HealthyThreshold: c.healthy, UnhealthyThreshold: c.unhealthy, ConnectPort: c.port,
		}
		l.StickySession = resource.SLBStickySession{Enabled: c.sticky == "on", Type: c.stickyType, Timeout: c.cookieTimeout, Cookie: c.cookie}
		l.XForwardedFor = c.xff == "on"
		l.Gzip = c.gzip == "on"
		l.IdleTimeout, l.RequestTimeout = c.idle, c.request
	}
	return l
}

// switchOn reads a tcp/udp health-check switch; SLB reports HealthCheckSwitch, older
// answers only HealthCheck. Unreported means SLB's default, on.
func switchOn(sw, hc string) bool {
	switch {
	case sw != "":
		return sw == "on"
	case hc != "":
		return hc == "on"
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
