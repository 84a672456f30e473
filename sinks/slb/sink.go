package slb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

var _ reconcile.Sink = (*Sink)(nil)

// Credentials is a static AccessKey pair (with a security token for STS credentials).
type Credentials struct {
	AccessKeyID     string
	AccessKeySecret string
	SecurityToken   string
}

// PortResolver reads the port Swarm published for a service's container port; apply
// calls it for groups planned before their service existed.
type PortResolver interface {
	PublishedPort(ctx context.Context, service string, targetPort uint32, protocol string) (uint32, error)
}

// Retry bounds capstan's own retries of transient SLB answers.
type Retry struct {
	// Attempts is the most tries of one call or one write step (default 8).
	Attempts int
	// Base and Max bound the exponential backoff between tries (defaults 500ms, 10s);
	// each wait is drawn between half and all of min(Max, Base·2^(n-1)).
	Base, Max time.Duration
}

// Options configure a Sink. The zero value talks to the SDK's regional endpoints over
// HTTPS with the SDK's default credential chain.
type Options struct {
	// Instance is the capstan installation (--instance); "" means resource.DefaultInstance.
	Instance string
	// Endpoint overrides the SDK's regional endpoint: a URL such as
	// http://127.0.0.1:8080 (the emulator) or https://slb-vpc.cn-hangzhou.aliyuncs.com.
	// Its scheme decides HTTP or HTTPS. "" uses slb.aliyuncs.com & co. over HTTPS.
	Endpoint string
	// Credentials are used when set; otherwise the SDK's default chain (environment,
	// OIDC, ~/.alibabacloud, ECS RAM role).
	Credentials *Credentials
	// Regions are searched for load balancers holding this instance's listeners in
	// addition to the regions routes name (--slb-region).
	Regions []string
	// LoadBalancers are always observed, even when no route names them.
	LoadBalancers []resource.LoadBalancer
	// Transport, if set, is the template of the HTTP transport (tests give one trusting
	// their TLS server); each SDK client gets a clone, as the SDK rewrites it on every
	// call.
	Transport *http.Transport
	// Timeout bounds one API call (default 20s).
	Timeout time.Duration
	Retry   Retry
	// SettleTimeout bounds the wait for a listener to leave a transitional status
	// (default 5m); PollInterval is how often it is checked (default 1s).
	SettleTimeout time.Duration
	PollInterval  time.Duration
	// BackendCacheTTL is how long group members read by one Observe are reused by the
	// next ones while the group's ServerCount is unchanged (default 5m; negative: never).
	BackendCacheTTL time.Duration
	// Ports reads published ports at apply time (see PortResolver).
	Ports  PortResolver
	Logger *slog.Logger
}

// Sink reads and writes SLB listeners and VServer groups. It is safe for concurrent
// use; Apply serializes changes per load balancer.
type Sink struct {
	opts     Options
	instance string
	scheme   string // "HTTP" or "HTTPS"
	domain   string // host[:port] overriding the SDK's endpoint, or ""
	log      *slog.Logger

	clientsMu sync.Mutex
	clients   map[string]*regionClient

	lbLocksMu sync.Mutex
	lbLocks   map[string]*sync.Mutex

	mu sync.Mutex
	// watched are load balancers named by the last desired set (Watch).
	watched map[string]string // lb → region
	// remembered are load balancers earlier Observes found this instance's objects on.
	remembered map[string]string
	// groups maps lb → group name → group ID, as last read or created.
	groups map[string]map[string]string
	// members caches the members of this instance's groups (see BackendCacheTTL).
	memberCache map[string]memberCache
	// listeners is the last observed listener of each key (any owner).
	listeners map[resource.Key]resource.SLBListener

	calls, writes atomic.Int64
}

type memberCache struct {
	count    int64
	backends []resource.SLBBackend
	at       time.Time
}

var instanceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// New returns a Sink. It does not contact SLB.
func New(opts Options) (*Sink, error) {
	if opts.Instance == "" {
		opts.Instance = resource.DefaultInstance
	}
	if !instanceRE.MatchString(opts.Instance) {
		return nil, fmt.Errorf("slb: instance %q: use letters, digits, '.', '_' and '-' (it goes into SLB descriptions as capstan/<instance>/<route>)", opts.Instance)
	}
	s := &Sink{
		opts:        opts,
		instance:    opts.Instance,
		scheme:      "HTTPS",
		log:         opts.Logger,
		clients:     map[string]*regionClient{},
		lbLocks:     map[string]*sync.Mutex{},
		watched:     map[string]string{},
		remembered:  map[string]string{},
		groups:      map[string]map[string]string{},
		memberCache: map[string]memberCache{},
		listeners:   map[resource.Key]resource.SLBListener{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Endpoint != "" {
		u, err := url.Parse(opts.Endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("slb: endpoint %q: want a URL such as https://slb.cn-hangzhou.aliyuncs.com or http://127.0.0.1:8080", opts.Endpoint)
		}
		s.scheme, s.domain = strings.ToUpper(u.Scheme), u.Host
	}
	for _, lb := range opts.LoadBalancers {
		if lb.ID == "" || lb.Region == "" {
			return nil, fmt.Errorf("slb: load balancer %q@%q: both ID and region are required", lb.ID, lb.Region)
		}
	}
	if c := opts.Credentials; c != nil && (c.AccessKeyID == "" || c.AccessKeySecret == "") {
		return nil, errors.New("slb: credentials need both an AccessKey ID and its secret")
	}
	if s.opts.Timeout <= 0 {
		s.opts.Timeout = 20 * time.Second
	}
	if s.opts.Retry.Attempts <= 0 {
		s.opts.Retry.Attempts = 8
	}
	if s.opts.Retry.Base <= 0 {
		s.opts.Retry.Base = 500 * time.Millisecond
	}
	if s.opts.Retry.Max <= 0 {
		s.opts.Retry.Max = 10 * time.Second
	}
	if s.opts.Retry.Max < s.opts.Retry.Base {
		s.opts.Retry.Max = s.opts.Retry.Base
	}
	if s.opts.SettleTimeout <= 0 {
		s.opts.SettleTimeout = 5 * time.Minute
	}
	if s.opts.PollInterval <= 0 {
		s.opts.PollInterval = time.Second
	}
	if s.opts.BackendCacheTTL == 0 {
		s.opts.BackendCacheTTL = 5 * time.Minute
	}
	return s, nil
}

// Name is the Key.Sink of every resource the sink handles.
func (s *Sink) Name() string { return resource.SinkSLB }

// Watch makes the next Observes read the load balancers desired's SLB resources name
// (listeners, groups, or Routes not yet expanded), replacing those of an earlier Watch.
func (s *Sink) Watch(desired *resource.Set) {
	lbs := map[string]string{}
	for _, r := range desired.Resources {
		switch {
		case r.SLBListener != nil:
			lbs[r.SLBListener.LoadBalancerID] = r.SLBListener.Region
		case r.VServerGroup != nil:
			lbs[r.VServerGroup.LoadBalancerID] = r.VServerGroup.Region
		case r.Route != nil:
			lbs[r.Route.LoadBalancer.ID] = r.Route.LoadBalancer.Region
		}
	}
	s.mu.Lock()
	s.watched = lbs
	s.mu.Unlock()
}

// Stats counts the SLB API requests the sink has sent, and how many of them were
// writes (everything but Describe*).
func (s *Sink) Stats() (calls, writes int64) { return s.calls.Load(), s.writes.Load() }

// lbLock serializes changes on one load balancer.
func (s *Sink) lbLock(lb string) *sync.Mutex {
	s.lbLocksMu.Lock()
	defer s.lbLocksMu.Unlock()
	m, ok := s.lbLocks[lb]
	if !ok {
		m = &sync.Mutex{}
		s.lbLocks[lb] = m
	}
	return m
}

// scope returns the load balancers to observe, by region: the watched, listed and
// remembered ones. Regions with none still appear when Options.Regions lists them.
func (s *Sink) scope() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	add := func(lb, region string) {
		if out[region] == nil {
			out[region] = map[string]bool{}
		}
		if lb != "" {
			out[region][lb] = true
		}
	}
	s.mu.Lock()
	for lb, r := range s.watched {
		add(lb, r)
	}
	for lb, r := range s.remembered {
		add(lb, r)
	}
	s.mu.Unlock()
	for _, lb := range s.opts.LoadBalancers {
		add(lb.ID, lb.Region)
	}
	for _, r := range s.opts.Regions {
		add("", r)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
