package slbemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Server is the emulated SLB endpoint: an http.Handler for the RPC API (POST or GET on
// "/") and the test-only admin API under /_emu/.
type Server struct {
	cfg    Config
	log    *slog.Logger
	creds  map[string]Credential
	nonces nonceCache
	faults faultSet
	calls  callLog

	mu      sync.Mutex
	seq     uint64 // authenticated API calls so far
	lbs     map[string]*lbState
	lbOrder []string
	vgroups map[string]*vgroupState
	health  map[string]string // ServerId:Port → forced ServerHealthStatus
	fwd     map[fwdKey]*forwarder
	timers  []*time.Timer
	closed  bool

	fwdWG sync.WaitGroup // forwarder and health-check goroutines

	httpSrv *http.Server
	addr    string
}

// New returns an emulator holding cfg's load balancers. It panics when cfg is invalid
// (see Config.Validate), as it is programmer input.
func New(cfg Config) *Server {
	if err := cfg.Validate(); err != nil {
		panic("slbemu: invalid config: " + err.Error())
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		creds:   map[string]Credential{},
		lbs:     map[string]*lbState{},
		vgroups: map[string]*vgroupState{},
		health:  map[string]string{},
		fwd:     map[fwdKey]*forwarder{},
	}
	for _, c := range cfg.Credentials {
		s.creds[c.AccessKeyID] = c
	}
	now := cfg.Now()
	for _, lb := range cfg.LoadBalancers {
		if lb.Name == "" {
			lb.Name = lb.ID
		}
		if lb.Address == "" {
			lb.Address = cfg.ForwardAddress
		}
		if lb.AddressType == "" {
			lb.AddressType = "intranet"
		}
		lb.Tags = maps.Clone(lb.Tags)
		if lb.Tags == nil {
			lb.Tags = map[string]string{}
		}
		s.lbs[lb.ID] = &lbState{cfg: lb, created: now, listeners: map[listenerKey]*listenerState{}}
		s.lbOrder = append(s.lbOrder, lb.ID)
	}
	return s
}

// Start serves the emulator on addr (e.g. "127.0.0.1:0") in the background. Use URL or
// Endpoint for the address actually bound.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("slbemu: listen on %s: %w", addr, err)
	}
	s.mu.Lock()
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.addr = ln.Addr().String()
	srv := s.httpSrv
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("emulator server stopped", "err", err)
		}
	}()
	s.log.Info("SLB emulator listening", "url", "http://"+s.addr)
	return nil
}

// Endpoint is the host:port Start bound — what the SDK client's Domain takes.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is "http://" + Endpoint().
func (s *Server) URL() string { return "http://" + s.Endpoint() }

// Close stops the server started by Start (if any), every forwarder and every timer.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, t := range s.timers {
		t.Stop()
	}
	for k, f := range s.fwd {
		f.close()
		delete(s.fwd, k)
	}
	srv := s.httpSrv
	s.mu.Unlock()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = srv.Shutdown(ctx)
	}
	s.fwdWG.Wait()
	return err
}

// SetHealthStatus forces the ServerHealthStatus DescribeHealthStatus reports for a
// backend (ServerId and port; port 0 for default-group backends): "normal",
// "abnormal" or "unavailable"; "" removes the override. Forwarding ignores it.
func (s *Server) SetHealthStatus(serverID string, port int, status string) error {
	switch status {
	case "", "normal", "abnormal", "unavailable":
	default:
		return fmt.Errorf("health status %q: want normal, abnormal or unavailable", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := fmt.Sprintf("%s:%d", serverID, port)
	if status == "" {
		delete(s.health, k)
	} else {
		s.health[k] = status
	}
	return nil
}

// ServeHTTP answers the RPC API on "/" and the admin API under /_emu/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_emu/") {
		s.serveAdmin(w, r)
		return
	}
	reqID := newRequestID()
	host := r.Host
	if host == "" {
		host = "slb.aliyuncs.com"
	}
	if r.URL.Path != "/" {
		writeError(w, reqID, host, errf(http.StatusNotFound, "InvalidAction.NotFound",
			"Specified api is not found, please check your url and method."))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeError(w, reqID, host, errf(http.StatusMethodNotAllowed, "UnsupportedHTTPMethod",
			"The HTTP method %s is not supported; use GET or POST.", r.Method))
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, reqID, host, invalidParam("query", err.Error()))
		return
	}
	p := r.Form
	call := Call{Time: s.cfg.Now(), Action: p.Get("Action"), Params: paramMap(p), RequestID: reqID,
		Write: isWrite(p.Get("Action"))}
	body, aerr := s.handleAPI(r, p, reqID, &call)
	if aerr != nil {
		call.HTTPStatus, call.Code = aerr.status, aerr.code
		writeError(w, reqID, host, aerr)
	} else {
		call.HTTPStatus = http.StatusOK
		writeJSON(w, http.StatusOK, body)
	}
	s.calls.add(call)
	s.log.Debug("api call", "action", call.Action, "status", call.HTTPStatus, "code", call.Code, "requestId", reqID)
}

func (s *Server) handleAPI(r *http.Request, p url.Values, reqID string, call *Call) (map[string]any, *apiError) {
	if aerr := s.authenticate(r, p); aerr != nil {
		return nil, aerr
	}
	action := p.Get("Action")
	latency, faultErr := s.faults.pick(action)
	if latency > 0 || faultErr != nil {
		call.Injected = true
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.settleLocked()
	// Settling may have started or stopped listeners even if this call fails.
	defer s.syncForwardersLocked()
	if faultErr != nil {
		return nil, faultErr
	}
	region := p.Get("RegionId")
	if region == "" {
		return nil, missingParam("RegionId")
	}
	body, aerr := actions[action].fn(s, &apiCall{p: canonicalParams(p), region: region})
	if aerr != nil {
		return nil, aerr
	}
	if body == nil {
		body = map[string]any{}
	}
	body["RequestId"] = reqID
	return body, nil
}

// apiCall is what an action handler sees.
type apiCall struct {
	p      url.Values
	region string
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the real API sends "&" in Recommend URLs as is
	if err := enc.Encode(body); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"Code":"InternalError","Message":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func writeError(w http.ResponseWriter, reqID, host string, e *apiError) {
	writeJSON(w, e.status, map[string]string{
		"RequestId": reqID,
		"HostId":    host,
		"Code":      e.code,
		"Message":   e.message,
		"Recommend": "https://api.aliyun.com/troubleshoot?q=" + url.QueryEscape(e.code) + "&product=Slb",
	})
}

// newRequestID makes an upper-case UUID like the real RequestId.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := strings.ToUpper(hex.EncodeToString(b[:]))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomID(prefix string) string {
	var b [17]byte
	_, _ = rand.Read(b[:])
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i, c := range b {
		b[i] = alphabet[int(c)%len(alphabet)]
	}
	return prefix + string(b[:])
}
