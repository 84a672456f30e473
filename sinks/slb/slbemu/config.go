package slbemu

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"
)

// APIVersion is the only SLB API version the emulator speaks.
const APIVersion = "2014-05-15"

// Config describes one emulated account. The zero value of every field except
// Credentials and LoadBalancers is usable.
type Config struct {
	// Credentials the emulator accepts: AccessKeyId → secret (and optional STS token).
	Credentials []Credential

	// LoadBalancers exist from the start (the emulator does not create load balancers;
	// capstan manages listeners of existing ones).
	LoadBalancers []LoadBalancer

	// TransitionDelay is how long a listener stays starting/configuring/stopping after
	// a write. 0: no wait.
	TransitionDelay time.Duration
	// TransitionCalls is how many further API calls (any action) still see a listener
	// in its transitional status before it settles; it combines with TransitionDelay
	// (both must have passed). Deterministic alternative to a delay for tests.
	TransitionCalls int
	// BackendPendingCalls opens, after every backend change on an LB, a window of that
	// many further calls during which another backend change on the same LB answers
	// BackendServer.configuring. 0 disables it.
	BackendPendingCalls int

	// TimestampSkew is the accepted distance between a request's Timestamp and Now
	// (default 15 minutes); nonces are remembered for the same duration.
	TimestampSkew time.Duration
	// Now is the clock (default time.Now). Used for timestamps, nonce expiry and
	// transitions.
	Now func() time.Time

	// MaxListenersPerLB (default 50), MaxBackendsPerLB (default 200, counted over the
	// default server group and every VServer group of the LB) and MaxBackendsPerCall
	// (default 20) are the quotas.
	MaxListenersPerLB  int
	MaxBackendsPerLB   int
	MaxBackendsPerCall int

	// Forward makes every running tcp and http listener really listen on
	// <LB bind address>:<ListenerPort> and proxy to its backends.
	Forward bool
	// ForwardAddress is the IP listeners bind to (default 127.0.0.1) unless the
	// LoadBalancer sets its own Address.
	ForwardAddress string
	// BackendAddresses maps an ECS instance id (a backend's ServerId) to the host the
	// forwarder connects to. Unlisted ids use DefaultBackendHost (default 127.0.0.1).
	// eni/eci backends use their ServerIp.
	BackendAddresses   map[string]string
	DefaultBackendHost string
	// HealthCheckInterval, when set, replaces every listener's HealthCheckInterval
	// (seconds on the API) so tests need not wait whole seconds; HealthCheckTimeout
	// likewise replaces HealthCheckTimeout / HealthCheckConnectTimeout.
	HealthCheckInterval time.Duration
	HealthCheckTimeout  time.Duration

	// Logger receives the emulator's own log (default: discarded).
	Logger *slog.Logger
}

// Credential is one access key known to the emulator.
type Credential struct {
	AccessKeyID     string
	AccessKeySecret string
	// SecurityToken, when set, must come with every request signed by this key
	// (STS credentials).
	SecurityToken string
}

// LoadBalancer is a pre-existing CLB instance.
type LoadBalancer struct {
	ID     string // e.g. "lb-capstan1"
	Region string // e.g. "cn-hangzhou"
	Name   string // default: the ID
	// Address is the VIP reported by the API and, with forwarding, the IP its
	// listeners bind to (default Config.ForwardAddress). Distinct 127.x.y.z addresses
	// let two load balancers use the same listener port.
	Address string
	// AddressType is "intranet" (default) or "internet".
	AddressType string
	// Tags on the instance.
	Tags map[string]string
}

// ParseLoadBalancer parses the command-line form ID@REGION.
func ParseLoadBalancer(s string) (LoadBalancer, error) {
	id, region, ok := strings.Cut(s, "@")
	if !ok || id == "" || region == "" {
		return LoadBalancer{}, fmt.Errorf("load balancer %q: want ID@REGION, e.g. lb-demo@cn-hangzhou", s)
	}
	return LoadBalancer{ID: id, Region: region}, nil
}

// Validate reports configuration mistakes New would otherwise panic on.
func (c Config) Validate() error {
	var errs []error
	if len(c.Credentials) == 0 {
		errs = append(errs, errors.New("no credentials: set at least one AccessKeyID/AccessKeySecret"))
	}
	keys := map[string]bool{}
	for i, cr := range c.Credentials {
		if cr.AccessKeyID == "" || cr.AccessKeySecret == "" {
			errs = append(errs, fmt.Errorf("credential %d: AccessKeyID and AccessKeySecret are both required", i+1))
		}
		if keys[cr.AccessKeyID] {
			errs = append(errs, fmt.Errorf("credential %q listed twice", cr.AccessKeyID))
		}
		keys[cr.AccessKeyID] = true
	}
	ids := map[string]bool{}
	for i, lb := range c.LoadBalancers {
		if lb.ID == "" || lb.Region == "" {
			errs = append(errs, fmt.Errorf("load balancer %d: ID and Region are both required", i+1))
		}
		if ids[lb.ID] {
			errs = append(errs, fmt.Errorf("load balancer %q listed twice", lb.ID))
		}
		ids[lb.ID] = true
		if lb.Address != "" && net.ParseIP(lb.Address) == nil {
			errs = append(errs, fmt.Errorf("load balancer %q: address %q is not an IP", lb.ID, lb.Address))
		}
		if lb.AddressType != "" && lb.AddressType != "intranet" && lb.AddressType != "internet" {
			errs = append(errs, fmt.Errorf("load balancer %q: address type %q: want intranet or internet", lb.ID, lb.AddressType))
		}
	}
	if c.ForwardAddress != "" && net.ParseIP(c.ForwardAddress) == nil {
		errs = append(errs, fmt.Errorf("forward address %q is not an IP", c.ForwardAddress))
	}
	if c.TransitionDelay < 0 || c.TransitionCalls < 0 || c.BackendPendingCalls < 0 {
		errs = append(errs, errors.New("transition delay and call counts must not be negative"))
	}
	if c.MaxListenersPerLB < 0 || c.MaxBackendsPerLB < 0 || c.MaxBackendsPerCall < 0 {
		errs = append(errs, errors.New("quotas must not be negative"))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.TimestampSkew == 0 {
		c.TimestampSkew = 15 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxListenersPerLB == 0 {
		c.MaxListenersPerLB = 50
	}
	if c.MaxBackendsPerLB == 0 {
		c.MaxBackendsPerLB = 200
	}
	if c.MaxBackendsPerCall == 0 {
		c.MaxBackendsPerCall = 20
	}
	if c.ForwardAddress == "" {
		c.ForwardAddress = "127.0.0.1"
	}
	if c.DefaultBackendHost == "" {
		c.DefaultBackendHost = "127.0.0.1"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}
