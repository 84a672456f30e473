package slb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	slbsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
)

// regionClient is one SDK client. The SDK writes its http.Client and transport on
// every call, so calls on one client are serialized by mu.
type regionClient struct {
	mu  sync.Mutex
	sdk *slbsdk.Client
}

// client returns the SDK client for region, creating it on first use.
func (s *Sink) client(region string) (*regionClient, error) {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	if c, ok := s.clients[region]; ok {
		return c, nil
	}
	// Each client gets its own transport: the SDK rewrites it on every call.
	var transport *http.Transport
	if s.opts.Transport != nil {
		transport = s.opts.Transport.Clone()
	} else {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	cfg := sdk.NewConfig().
		WithAutoRetry(false). // capstan retries, re-reading before it repeats a write
		WithScheme(s.scheme).
		WithTimeout(s.opts.Timeout).
		WithHttpTransport(transport).
		WithUserAgent("capstan")
	var cred any
	if c := s.opts.Credentials; c != nil {
		if c.SecurityToken != "" {
			cred = credentials.NewStaticSTSCredentialsProvider(c.AccessKeyID, c.AccessKeySecret, c.SecurityToken)
		} else {
			cred = credentials.NewStaticAKCredentialsProvider(c.AccessKeyID, c.AccessKeySecret)
		}
	} else {
		cred = credentials.NewDefaultCredentialsProvider()
	}
	c, err := slbsdk.NewClientWithOptions(region, cfg, cred)
	if err != nil {
		return nil, fmt.Errorf("slb: client for region %s: %w", region, err)
	}
	if s.domain != "" {
		c.Domain = s.domain
		// The SDK applies $HTTP(S)_PROXY itself and reads $NO_PROXY as regexps; a local
		// endpoint (the emulator) is never reached through a proxy.
		if host, _, err := net.SplitHostPort(s.domain); err == nil && isLoopback(host) {
			c.SetNoProxy(regexp.QuoteMeta(s.domain))
		}
	}
	rc := &regionClient{sdk: c}
	s.clients[region] = rc
	return rc, nil
}

// send performs one API request, without retrying.
func (s *Sink) send(region, action string, write bool, fn func(*slbsdk.Client) error) error {
	c, err := s.client(region)
	if err != nil {
		return err
	}
	c.mu.Lock()
	err = fn(c.sdk)
	c.mu.Unlock()
	s.calls.Add(1)
	if write {
		s.writes.Add(1)
	}
	if err != nil {
		return wrapError(action, err)
	}
	return nil
}

// read performs a read request, retrying transient failures.
func (s *Sink) read(ctx context.Context, region, action string, fn func(*slbsdk.Client) error) error {
	r := s.retrier()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.send(region, action, false, fn)
		if err == nil {
			return nil
		}
		if err := r.wait(ctx, err); err != nil {
			return err
		}
	}
}

// retrier counts the tries of one call or one write step.
type retrier struct {
	s       *Sink
	attempt int
}

func (s *Sink) retrier() *retrier { return &retrier{s: s} }

// wait returns err when it is not transient or the tries are used up; otherwise it
// sleeps the backoff and returns nil: try again.
func (r *retrier) wait(ctx context.Context, err error) error {
	r.attempt++
	if !Transient(err) {
		return err
	}
	if r.attempt >= r.s.opts.Retry.Attempts {
		return fmt.Errorf("gave up after %d tries: %w", r.attempt, err)
	}
	d := backoff(r.s.opts.Retry, r.attempt)
	r.s.log.Debug("slb: transient error, retrying", "error", err, "attempt", r.attempt, "wait", d)
	return sleep(ctx, d)
}

// backoff is the wait after the nth failed try: between half and all of
// min(Max, Base·2^(n-1)), so concurrent clients spread out but never wait less than
// half the step.
func backoff(p Retry, n int) time.Duration {
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	if d > p.Max {
		d = p.Max
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errGone marks a read that found its object missing.
var errGone = errors.New("not found")

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
