package slbemu

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Forwarding: with Config.Forward, each serving tcp or http listener gets a forwarder
// bound to <LB address>:<ListenerPort>. The forwarders are reconciled with the API
// state after every call (syncForwardersLocked); each runs its own health checks.

type fwdKey struct {
	lb       string
	port     int
	protocol string
}

type fwdSpec struct {
	bind      string
	protocol  string // tcp | http
	lbID      string
	lbAddress string
	port      int
	scheduler string
	headers   map[string]bool // XForwardedFor* switches that are on
	hc        healthSpec
	backends  []fwdBackend
}

type fwdBackend struct {
	serverID string
	port     int
	weight   int
	host     string
}

func (b fwdBackend) key() string  { return b.serverID + ":" + strconv.Itoa(b.port) }
func (b fwdBackend) addr() string { return net.JoinHostPort(b.host, strconv.Itoa(b.port)) }

type healthSpec struct {
	enabled   bool
	http      bool // HTTP request; TCP connect otherwise
	uri       string
	domain    string
	method    string
	codes     []string
	port      int // 0: the backend's port
	interval  time.Duration
	timeout   time.Duration
	healthy   int
	unhealthy int
}

// sameProbe reports whether two health checks probe the same way, so results seen
// under one still hold under the other (interval, timeout and thresholds may differ).
func (h healthSpec) sameProbe(o healthSpec) bool {
	return h.enabled == o.enabled && h.http == o.http && h.uri == o.uri && h.domain == o.domain &&
		h.method == o.method && slices.Equal(h.codes, o.codes) && h.port == o.port
}

func attrSeconds(a map[string]string, name string, def int, override time.Duration) time.Duration {
	if override > 0 {
		return override
	}
	return time.Duration(atoiOr(a[name], def)) * time.Second
}

// specLocked derives what a listener's forwarder should do.
func (s *Server) specLocked(lb *lbState, l *listenerState) fwdSpec {
	a := l.attrs
	sp := fwdSpec{
		bind:      net.JoinHostPort(lb.cfg.Address, strconv.Itoa(l.port)),
		protocol:  l.protocol,
		lbID:      lb.cfg.ID,
		lbAddress: lb.cfg.Address,
		port:      l.port,
		scheduler: a["Scheduler"],
		headers:   map[string]bool{},
	}
	for _, h := range []string{"XForwardedFor", "XForwardedFor_proto", "XForwardedFor_SLBIP", "XForwardedFor_SLBID",
		"XForwardedFor_SLBPORT", "XForwardedFor_ClientSrcPort"} {
		if a[h] == "on" {
			sp.headers[h] = true
		}
	}
	hc := healthSpec{
		uri:       a["HealthCheckURI"],
		domain:    a["HealthCheckDomain"],
		method:    a["HealthCheckMethod"],
		port:      atoiOr(a["HealthCheckConnectPort"], 0),
		interval:  attrSeconds(a, "HealthCheckInterval", 2, s.cfg.HealthCheckInterval),
		healthy:   atoiOr(a["HealthyThreshold"], 3),
		unhealthy: atoiOr(a["UnhealthyThreshold"], 3),
	}
	if c := a["HealthCheckHttpCode"]; c != "" {
		hc.codes = strings.Split(c, ",")
	} else {
		hc.codes = []string{"http_2xx"}
	}
	if hc.uri == "" {
		hc.uri = "/"
	}
	if l.protocol == "http" {
		hc.enabled = a["HealthCheck"] == "on"
		hc.http = true
		hc.timeout = attrSeconds(a, "HealthCheckTimeout", 5, s.cfg.HealthCheckTimeout)
	} else {
		hc.enabled = a["HealthCheckSwitch"] == "on"
		hc.http = a["HealthCheckType"] == "http"
		hc.timeout = attrSeconds(a, "HealthCheckConnectTimeout", 5, s.cfg.HealthCheckTimeout)
	}
	sp.hc = hc
	for _, b := range s.listenerBackendsLocked(lb, l) {
		sp.backends = append(sp.backends, fwdBackend{serverID: b.ServerID, port: b.Port, weight: b.Weight, host: s.hostOf(b)})
	}
	return sp
}

// listenerBackendsLocked is the listener's server group, ports resolved.
func (s *Server) listenerBackendsLocked(lb *lbState, l *listenerState) []Backend {
	if id := l.attrs["VServerGroupId"]; id != "" {
		if g := s.vgroups[id]; g != nil {
			return g.backends
		}
		return nil
	}
	port := atoiOr(l.attrs["BackendServerPort"], 0)
	out := make([]Backend, 0, len(lb.backends))
	for _, b := range lb.backends {
		b.Port = port
		out = append(out, b)
	}
	return out
}

func (s *Server) hostOf(b Backend) string {
	if b.Type == "eni" || b.Type == "eci" {
		return b.ServerIP
	}
	if h := s.cfg.BackendAddresses[b.ServerID]; h != "" {
		return h
	}
	return s.cfg.DefaultBackendHost
}

// syncForwardersLocked opens, updates and closes forwarders to match the listeners.
func (s *Server) syncForwardersLocked() {
	if !s.cfg.Forward || s.closed {
		return
	}
	want := map[fwdKey]fwdSpec{}
	for _, lb := range s.lbs {
		for _, l := range lb.listeners {
			if (l.protocol == "tcp" || l.protocol == "http") && l.serving() {
				want[fwdKey{lb.cfg.ID, l.port, l.protocol}] = s.specLocked(lb, l)
			}
		}
	}
	for k, f := range s.fwd {
		if _, ok := want[k]; !ok {
			f.close()
			delete(s.fwd, k)
		}
	}
	for k, sp := range want {
		if f := s.fwd[k]; f != nil {
			f.update(sp)
			continue
		}
		f := newForwarder(sp, s.log, &s.fwdWG)
		s.fwd[k] = f
	}
}

// ForwardAddr reports where a listener's forwarder listens, or why it does not.
func (s *Server) ForwardAddr(lbID, protocol string, port int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fwd[fwdKey{lbID, port, protocol}]
	if f == nil {
		return "", errors.New("no forwarder: forwarding is off, or the listener is not running or not tcp/http")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln == nil {
		return "", f.bindErr
	}
	return f.ln.Addr().String(), nil
}

type beState struct {
	status          string // "" until checked, then normal | abnormal
	okRun, failRun  int
	active          int // open connections or requests, for wlc
	weightedCurrent int // smooth weighted round robin
}

type forwarder struct {
	log *slog.Logger
	wg  *sync.WaitGroup

	mu      sync.Mutex
	spec    fwdSpec
	states  map[string]*beState
	rr      int
	ln      net.Listener
	bindErr error
	srv     *http.Server
	conns   map[net.Conn]struct{}
	closed  bool

	proxy     *httputil.ReverseProxy
	transport *http.Transport
	wake      chan struct{}
	done      chan struct{}
}

func newForwarder(sp fwdSpec, log *slog.Logger, wg *sync.WaitGroup) *forwarder {
	f := &forwarder{
		log:       log.With("listener", sp.bind, "protocol", sp.protocol, "lb", sp.lbID),
		wg:        wg,
		spec:      sp,
		states:    map[string]*beState{},
		conns:     map[net.Conn]struct{}{},
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, MaxIdleConnsPerHost: 16},
	}
	f.proxy = &httputil.ReverseProxy{Rewrite: f.rewrite, Transport: f.transport, ErrorHandler: f.proxyError, ErrorLog: nil}
	for _, b := range sp.backends {
		f.states[b.key()] = &beState{}
	}
	f.mu.Lock()
	f.bindLocked()
	f.mu.Unlock()
	wg.Add(1)
	go f.healthLoop()
	return f
}

// bindLocked opens the port; a failure is kept and retried on the next update.
func (f *forwarder) bindLocked() {
	ln, err := net.Listen("tcp", f.spec.bind)
	if err != nil {
		if f.bindErr == nil {
			f.log.Warn("listener port cannot be opened; the listener runs without forwarding", "err", err)
		}
		f.bindErr = err
		return
	}
	f.ln, f.bindErr = ln, nil
	f.log.Info("forwarding")
	f.wg.Add(1)
	if f.spec.protocol == "http" {
		f.srv = &http.Server{Handler: http.HandlerFunc(f.serveHTTP), ReadHeaderTimeout: 30 * time.Second}
		go func() {
			defer f.wg.Done()
			if err := f.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				f.log.Warn("http forwarder stopped", "err", err)
			}
		}()
		return
	}
	go func() {
		defer f.wg.Done()
		f.acceptTCP(ln)
	}()
}

func (f *forwarder) update(sp fwdSpec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln == nil && !f.closed {
		f.bindLocked()
	}
	if reflect.DeepEqual(sp, f.spec) {
		return
	}
	if !sp.hc.sameProbe(f.spec.hc) {
		for _, st := range f.states {
			st.status, st.okRun, st.failRun = "", 0, 0
		}
	}
	keep := map[string]*beState{}
	for _, b := range sp.backends {
		if st := f.states[b.key()]; st != nil {
			keep[b.key()] = st
		} else {
			keep[b.key()] = &beState{}
		}
	}
	f.states = keep
	f.spec = sp
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	close(f.done)
	if f.srv != nil {
		_ = f.srv.Close()
	} else if f.ln != nil {
		_ = f.ln.Close()
	}
	for c := range f.conns {
		_ = c.Close()
	}
	f.transport.CloseIdleConnections()
	if f.ln != nil {
		f.log.Info("forwarding stopped")
	}
}

// healthStatus is what DescribeHealthStatus reports for one backend.
func (f *forwarder) healthStatus(b Backend) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.states[b.ServerID+":"+strconv.Itoa(b.Port)]
	if !f.spec.hc.enabled || st == nil || st.status == "" {
		return "unavailable"
	}
	return st.status
}

// pick chooses a backend by the listener's scheduler among those that take traffic:
// weight above 0 and, with health checks on, found normal.
func (f *forwarder) pick(clientIP string) (fwdBackend, *beState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cands []fwdBackend
	for _, b := range f.spec.backends {
		st := f.states[b.key()]
		if b.weight > 0 && st != nil && (!f.spec.hc.enabled || st.status == "normal") {
			cands = append(cands, b)
		}
	}
	if len(cands) == 0 {
		return fwdBackend{}, nil, false
	}
	var chosen fwdBackend
	switch f.spec.scheduler {
	case "rr":
		chosen = cands[f.rr%len(cands)]
		f.rr++
	case "wlc":
		chosen = cands[0]
		for _, b := range cands[1:] {
			// fewer connections per unit of weight wins
			if f.states[b.key()].active*chosen.weight < f.states[chosen.key()].active*b.weight {
				chosen = b
			}
		}
	case "sch", "tch", "qch":
		h := fnv.New32a()
		h.Write([]byte(clientIP))
		chosen = cands[int(h.Sum32()%uint32(len(cands)))]
	default: // wrr: smooth weighted round robin
		total, best := 0, -1
		for i, b := range cands {
			st := f.states[b.key()]
			st.weightedCurrent += b.weight
			total += b.weight
			if best < 0 || st.weightedCurrent > f.states[cands[best].key()].weightedCurrent {
				best = i
			}
		}
		chosen = cands[best]
		f.states[chosen.key()].weightedCurrent -= total
	}
	st := f.states[chosen.key()]
	st.active++
	return chosen, st, true
}

func (f *forwarder) release(st *beState) {
	f.mu.Lock()
	st.active--
	f.mu.Unlock()
}

func (f *forwarder) track(c net.Conn, on bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		if f.closed {
			return false
		}
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
	return true
}

func (f *forwarder) acceptTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.proxyTCP(c)
		}()
	}
}

func (f *forwarder) proxyTCP(c net.Conn) {
	defer c.Close()
	if !f.track(c, true) {
		return
	}
	defer f.track(c, false)
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	b, st, ok := f.pick(host)
	if !ok {
		return // no healthy backend: the connection is reset, as the real SLB does
	}
	defer f.release(st)
	up, err := net.DialTimeout("tcp", b.addr(), 5*time.Second)
	if err != nil {
		f.log.Debug("backend refused", "backend", b.addr(), "err", err)
		return
	}
	defer up.Close()
	if !f.track(up, true) {
		return
	}
	defer f.track(up, false)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		closeWrite(up)
		close(done)
	}()
	_, _ = io.Copy(c, up)
	closeWrite(c)
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	} else {
		_ = c.Close()
	}
}

type backendCtxKey struct{}

func (f *forwarder) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	b, st, ok := f.pick(host)
	if !ok {
		http.Error(w, "503 Service Temporarily Unavailable: no healthy backend server", http.StatusServiceUnavailable)
		return
	}
	defer f.release(st)
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendCtxKey{}, b)))
}

// rewrite sends the request to the chosen backend, keeping the client's Host header
// and adding the X-Forwarded-* / SLB-* headers the listener switches on.
func (f *forwarder) rewrite(pr *httputil.ProxyRequest) {
	b := pr.In.Context().Value(backendCtxKey{}).(fwdBackend)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = b.addr()
	f.mu.Lock()
	sp := f.spec
	f.mu.Unlock()
	clientIP, clientPort, _ := net.SplitHostPort(pr.In.RemoteAddr)
	if sp.headers["XForwardedFor"] {
		xff := append(slices.Clone(pr.In.Header["X-Forwarded-For"]), clientIP)
		pr.Out.Header.Set("X-Forwarded-For", strings.Join(xff, ", "))
	}
	if sp.headers["XForwardedFor_proto"] {
		pr.Out.Header.Set("X-Forwarded-Proto", "http")
	}
	if sp.headers["XForwardedFor_SLBIP"] {
		pr.Out.Header.Set("SLB-IP", sp.lbAddress)
	}
	if sp.headers["XForwardedFor_SLBID"] {
		pr.Out.Header.Set("SLB-ID", sp.lbID)
	}
	if sp.headers["XForwardedFor_SLBPORT"] {
		pr.Out.Header.Set("X-Forwarded-Port", strconv.Itoa(sp.port))
	}
	if sp.headers["XForwardedFor_ClientSrcPort"] {
		pr.Out.Header.Set("X-Forwarded-Client-Srcport", clientPort)
	}
}

func (f *forwarder) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	f.log.Debug("backend request failed", "err", err)
	http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
}
