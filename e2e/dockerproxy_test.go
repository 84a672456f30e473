//go:build e2e

package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"sync"
	"time"
)

// dockerProxy sits between capstan run and the engine's Unix socket and records every
// request, so the benchmarks can say which calls a reconcile made (and tell them from
// the leader lease's). It forwards everything unchanged.
type dockerProxy struct {
	srv *http.Server
	ln  net.Listener

	mu    sync.Mutex
	calls []dockerCall
}

type dockerCall struct {
	at           time.Time
	method, path string // path without the /vX.Y prefix
}

// newDockerProxy returns nil when the engine is not on a Unix socket (then capstan talks
// to it directly and the benchmarks fall back to capstan's own request metrics).
func newDockerProxy() (*dockerProxy, error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return nil, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &dockerProxy{ln: ln}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "docker"
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		},
		FlushInterval: -1,
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.calls = append(p.calls, dockerCall{at: time.Now(), method: r.Method, path: trimAPIVersion(r.URL.Path)})
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// host is the DOCKER_HOST value that goes through the proxy.
func (p *dockerProxy) host() string { return "tcp://" + p.ln.Addr().String() }

func (p *dockerProxy) close() error { return p.srv.Close() }

// between returns the calls recorded in [from, to).
func (p *dockerProxy) between(from, to time.Time) []dockerCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []dockerCall
	for _, c := range p.calls {
		if !c.at.Before(from) && c.at.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// trimAPIVersion turns "/v1.41/services" into "/services".
func trimAPIVersion(p string) string {
	if rest, ok := strings.CutPrefix(p, "/v"); ok {
		if i := strings.IndexByte(rest, '/'); i > 0 && strings.Trim(rest[:i], "0123456789.") == "" {
			return rest[i:]
		}
	}
	return p
}
