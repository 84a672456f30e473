package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
)

// countingProxy sits between the capstan under test and the real Docker Engine on
// 127.0.0.1, so the tests count the API requests capstan really sends on the wire.
type countingProxy struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []string // "METHOD /path" without the API version prefix
}

func newCountingProxy(t testing.TB) *countingProxy {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	var transport http.RoundTripper
	target := &url.URL{Scheme: "http", Host: "docker"}
	switch {
	case strings.HasPrefix(host, "unix://"):
		path := strings.TrimPrefix(host, "unix://")
		transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
	case strings.HasPrefix(host, "tcp://"):
		target.Host = strings.TrimPrefix(host, "tcp://")
		transport = http.DefaultTransport
	default:
		t.Fatalf("counting proxy: unsupported DOCKER_HOST %q", host)
	}
	p := &countingProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = "docker" },
		Transport: transport,
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if strings.HasPrefix(path, "/v1.") {
			if i := strings.Index(path[1:], "/"); i >= 0 {
				path = path[i+1:]
			}
		}
		p.mu.Lock()
		p.log = append(p.log, r.Method+" "+path)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// host is the --docker-host value that routes through the proxy.
func (p *countingProxy) host() string { return "tcp://" + p.srv.Listener.Addr().String() }

// reset forgets the requests counted so far.
func (p *countingProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = nil
}

// requests returns every request so far, and the writes among them (anything but GET/HEAD).
func (p *countingProxy) requests() (all, writes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	all = append(all, p.log...)
	for _, r := range p.log {
		if !strings.HasPrefix(r, "GET ") && !strings.HasPrefix(r, "HEAD ") {
			writes = append(writes, r)
		}
	}
	return all, writes
}
