package resource

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// A Route becomes two SLB objects: a VServer group holding the Swarm nodes at the
// service's published port, and a listener forwarding to that group. Both carry the
// ownership marker capstan/<instance>/<route> (SLB has no tags on listeners or groups):
// the listener in its Description, the group as its name.

// slbMarkerPrefix starts every ownership marker.
const slbMarkerPrefix = "capstan/"

// MaxSLBMarker is the longest Description or VServer group name SLB accepts.
const MaxSLBMarker = 80

// SLBMarker is the Description of the listener and the name of the VServer group that
// capstan instance creates for route.
func SLBMarker(instance, route string) string { return slbMarkerPrefix + instance + "/" + route }

// ParseSLBMarker reverses SLBMarker. Anything else (a user's own description) is not a
// marker: ok is false and the object belongs to no capstan instance.
func ParseSLBMarker(s string) (instance, route string, ok bool) {
	rest, found := strings.CutPrefix(s, slbMarkerPrefix)
	if !found {
		return "", "", false
	}
	instance, route, found = strings.Cut(rest, "/")
	if !found || instance == "" || route == "" || strings.Contains(route, "/") {
		return "", "", false
	}
	return instance, route, true
}

// ListenerKey names the listener on port/protocol of load balancer lb:
// slb/listener/<lb>:<port>/<protocol>.
func ListenerKey(lb string, port int, protocol string) Key {
	return Key{Sink: SinkSLB, Kind: KindListener, Name: fmt.Sprintf("%s:%d/%s", lb, port, protocol)}
}

// VServerGroupKey names the VServer group called name on load balancer lb:
// slb/vservergroup/<lb>/<name>.
func VServerGroupKey(lb, name string) Key {
	return Key{Sink: SinkSLB, Kind: KindVServerGroup, Name: lb + "/" + name}
}

// Listener statuses as SLB reports them. Create leaves a listener stopped; Start,
// Stop and Set*ListenerAttribute pass through the transitional ones.
const (
	ListenerRunning     = "running"
	ListenerStopped     = "stopped"
	ListenerStarting    = "starting"
	ListenerConfiguring = "configuring"
	ListenerStopping    = "stopping"
)

// SLBListener is one SLB listener: as a Route asks for it (desired) or as SLB reports it
// (live). Field names are what plans show ("HealthCheck.URI").
type SLBListener struct {
	LoadBalancerID string `json:"loadBalancerId"`
	Region         string `json:"region"`
	Protocol       string `json:"protocol"` // http | https | tcp | udp
	Port           int    `json:"port"`
	Bandwidth      int    `json:"bandwidth"` // -1: no cap
	Scheduler      string `json:"scheduler"`

	HealthCheck   SLBHealthCheck   `json:"healthCheck"`
	StickySession SLBStickySession `json:"stickySession"`
	// CertificateID is the server certificate of an https listener.
	CertificateID  string `json:"certificateId,omitempty"`
	XForwardedFor  bool   `json:"xForwardedFor"`
	Gzip           bool   `json:"gzip"`
	IdleTimeout    int    `json:"idleTimeout,omitempty"`
	RequestTimeout int    `json:"requestTimeout,omitempty"`
	ACL            SLBACL `json:"acl"`

	// VServerGroup is the name of the VServer group the listener forwards to.
	VServerGroup string `json:"vServerGroup"`
	// Description carries the ownership marker.
	Description string `json:"description"`
	// Status is "running" on the desired side; live, one of the Listener* statuses.
	Status string `json:"status"`

	// VServerGroupID is the live group's ID (live only; desired listeners name their
	// group, whose ID is known once it exists).
	VServerGroupID string `json:"vServerGroupId,omitempty"`
}

// SLBHealthCheck is a listener's backend health check. URI, Domain and HTTPCode apply to
// http and https listeners; tcp and udp listeners check by connecting.
type SLBHealthCheck struct {
	Enabled            bool     `json:"enabled"`
	URI                string   `json:"uri,omitempty"`
	Domain             string   `json:"domain,omitempty"`
	HTTPCode           []string `json:"httpCode,omitempty"`
	Interval           int      `json:"interval,omitempty"`
	Timeout            int      `json:"timeout,omitempty"`
	HealthyThreshold   int      `json:"healthyThreshold,omitempty"`
	UnhealthyThreshold int      `json:"unhealthyThreshold,omitempty"`
	// ConnectPort 0 checks the backend's own port.
	ConnectPort int `json:"connectPort,omitempty"`
}

// SLBStickySession is session persistence on an http or https listener.
type SLBStickySession struct {
	Enabled bool   `json:"enabled"`
	Type    string `json:"type,omitempty"`    // insert | server
	Timeout int    `json:"timeout,omitempty"` // insert: cookie lifetime in seconds
	Cookie  string `json:"cookie,omitempty"`  // server: the application's cookie name
}

// SLBACL is the access control list a listener applies.
type SLBACL struct {
	Enabled bool   `json:"enabled"`
	ID      string `json:"id,omitempty"`
	Type    string `json:"type,omitempty"` // white | black
}

// VServerGroup is a set of backends with their own ports, which one listener uses.
type VServerGroup struct {
	LoadBalancerID string       `json:"loadBalancerId"`
	Region         string       `json:"region"`
	Name           string       `json:"name"`
	Backends       []SLBBackend `json:"backends"`

	// Desired side only: the Swarm service and container port the backends' port is
	// published for. A backend Port of 0 means Swarm has not published the port yet
	// (the service is created by the same plan); apply reads it then.
	Service      string `json:"service,omitempty"`
	TargetPort   uint32 `json:"targetPort,omitempty"`
	PortProtocol string `json:"portProtocol,omitempty"` // tcp | udp
}

// SLBBackend is one member of a VServer group: a Swarm node's ECS instance at a port.
type SLBBackend struct {
	ServerID string `json:"serverId"`
	Port     int    `json:"port"`
	Weight   int    `json:"weight"`
	// Type is "ecs" for the instances capstan adds; "" reads as "ecs".
	Type string `json:"type,omitempty"`
}

// Layer7 reports whether the listener speaks HTTP (http or https).
func (l SLBListener) Layer7() bool { return l.Protocol == "http" || l.Protocol == "https" }

// Normalized returns l with the defaults SLB applies written out and the settings that
// do not apply to its protocol or are switched off cleared, so that the listener capstan
// asks for and the one SLB reports back compare equal. Transitional statuses read as
// the status they lead to. The defaults are SLB's documented ones.
func (l SLBListener) Normalized() SLBListener {
	l.Protocol = strings.ToLower(l.Protocol)
	if l.Bandwidth == 0 {
		l.Bandwidth = -1
	}
	if l.Scheduler == "" {
		l.Scheduler = "wrr"
	}
	switch l.Status {
	case ListenerStarting, ListenerConfiguring:
		l.Status = ListenerRunning
	case ListenerStopping:
		l.Status = ListenerStopped
	}

	hc := &l.HealthCheck
	if !hc.Enabled {
		*hc = SLBHealthCheck{}
	} else {
		defaultInt(&hc.Interval, 2)
		defaultInt(&hc.Timeout, 5)
		defaultInt(&hc.HealthyThreshold, 3)
		defaultInt(&hc.UnhealthyThreshold, 3)
		if hc.ConnectPort < 0 {
			hc.ConnectPort = 0
		}
		if l.Layer7() {
			if hc.URI == "" {
				hc.URI = "/"
			}
			if hc.Domain == "$_ip" { // SLB's spelling of "the backend's IP"
				hc.Domain = ""
			}
			if len(hc.HTTPCode) == 0 {
				hc.HTTPCode = []string{"http_2xx"}
			}
			hc.HTTPCode = slices.Clone(hc.HTTPCode)
			sort.Strings(hc.HTTPCode)
			hc.HTTPCode = slices.Compact(hc.HTTPCode)
		} else {
			hc.URI, hc.Domain, hc.HTTPCode = "", "", nil
		}
	}

	if !l.Layer7() {
		l.StickySession = SLBStickySession{}
		l.XForwardedFor, l.Gzip = false, false
		l.IdleTimeout, l.RequestTimeout = 0, 0
	} else {
		defaultInt(&l.IdleTimeout, 15)
		defaultInt(&l.RequestTimeout, 60)
	}
	if l.Protocol != "https" {
		l.CertificateID = ""
	}
	ss := &l.StickySession
	switch {
	case !ss.Enabled:
		*ss = SLBStickySession{}
	case ss.Type == "insert":
		ss.Cookie = ""
	case ss.Type == "server":
		ss.Timeout = 0
	}
	if !l.ACL.Enabled {
		l.ACL = SLBACL{}
	}
	return l
}

func defaultInt(v *int, def int) {
	if *v <= 0 {
		*v = def
	}
}

// Normalized returns g with its backends in a fixed order (SLB keeps no order) and
// their type spelled out.
func (g VServerGroup) Normalized() VServerGroup {
	b := make([]SLBBackend, len(g.Backends))
	copy(b, g.Backends)
	for i := range b {
		if b[i].Type == "" {
			b[i].Type = "ecs"
		}
	}
	sort.Slice(b, func(i, j int) bool {
		if b[i].ServerID != b[j].ServerID {
			return b[i].ServerID < b[j].ServerID
		}
		return b[i].Port < b[j].Port
	})
	if len(b) == 0 {
		b = nil
	}
	g.Backends = b
	return g
}
