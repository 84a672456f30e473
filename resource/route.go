package resource

// Route says which SLB listener forwards to which Swarm service. Its JSON tags are the
// user-facing field names of the Route document's spec.
type Route struct {
	Name         string       `json:"-"`
	Service      ServiceRef   `json:"service"`
	LoadBalancer LoadBalancer `json:"loadBalancer"`
	Listener     Listener     `json:"listener"`
	Backends     Backends     `json:"backends"`
}

// ServiceRef points at a stack's service and the container port to reach.
type ServiceRef struct {
	Stack      string `json:"stack"`
	Name       string `json:"name"`
	TargetPort uint32 `json:"targetPort"`
}

// ServiceName is the Swarm service name, <stack>_<name>.
func (s ServiceRef) ServiceName() string { return s.Stack + "_" + s.Name }

// LoadBalancer identifies an SLB instance.
type LoadBalancer struct {
	ID     string `json:"id"`
	Region string `json:"region"`
}

// Listener is the SLB listener configuration.
type Listener struct {
	Protocol       string         `json:"protocol"` // http | https | tcp | udp
	Port           int            `json:"port"`
	Bandwidth      *int           `json:"bandwidth,omitempty"`
	Scheduler      string         `json:"scheduler,omitempty"` // wrr | wlc | rr
	HealthCheck    *HealthCheck   `json:"healthCheck,omitempty"`
	StickySession  *StickySession `json:"stickySession,omitempty"`
	CertificateID  string         `json:"certificateId,omitempty"`
	XForwardedFor  *bool          `json:"xForwardedFor,omitempty"`
	Gzip           *bool          `json:"gzip,omitempty"`
	IdleTimeout    int            `json:"idleTimeout,omitempty"`
	RequestTimeout int            `json:"requestTimeout,omitempty"`
	ACL            *ACL           `json:"acl,omitempty"`
}

// HealthCheck configures the listener's backend health check.
type HealthCheck struct {
	Enabled            *bool    `json:"enabled,omitempty"`
	URI                string   `json:"uri,omitempty"`
	Domain             string   `json:"domain,omitempty"`
	HTTPCode           []string `json:"httpCode,omitempty"` // http_2xx, http_3xx, http_4xx, http_5xx
	Interval           int      `json:"interval,omitempty"`
	Timeout            int      `json:"timeout,omitempty"`
	HealthyThreshold   int      `json:"healthyThreshold,omitempty"`
	UnhealthyThreshold int      `json:"unhealthyThreshold,omitempty"`
	ConnectPort        int      `json:"connectPort,omitempty"`
}

// StickySession configures session persistence for http/https listeners.
type StickySession struct {
	Type    string `json:"type"` // insert | server
	Timeout int    `json:"timeout,omitempty"`
	Cookie  string `json:"cookie,omitempty"`
}

// ACL attaches an access control list to the listener.
type ACL struct {
	ID   string `json:"id"`
	Type string `json:"type"` // white | black
}

// Backends selects which Swarm nodes receive traffic.
type Backends struct {
	NodeRole   string            `json:"nodeRole,omitempty"` // any | manager | worker
	NodeLabels map[string]string `json:"nodeLabels,omitempty"`
	Weight     int               `json:"weight,omitempty"`
}
