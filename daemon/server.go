package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	// APIToken guards POST /api/v1/sync (Authorization: Bearer <token>). Empty disables
	// the sync API: every call is refused with 403.
	APIToken string
	// Webhooks is mounted at /webhook/ (source.Webhooks); nil answers 404 there.
	Webhooks http.Handler
	// Metrics is served at /metrics; nil serves a fresh, empty registry.
	Metrics *Metrics
	// TriggerRate and TriggerBurst limit POST /api/v1/sync and /webhook/ together:
	// TriggerBurst requests at once, then TriggerRate per second (defaults 1 and 10).
	// Beyond that the answer is 429: a flood cannot make the loop reconcile in a frenzy.
	TriggerRate  float64
	TriggerBurst int
	Logger       *slog.Logger
}

// Server is capstan's HTTP API. Its Handler serves:
//
//	GET  /                 the status page (HTML, no JavaScript)
//	GET  /healthz          200 while the process serves
//	GET  /readyz           200 once the live state was observed; says the role
//	GET  /metrics          Prometheus metrics
//	GET  /api/v1/status    the status as JSON (Status)
//	POST /api/v1/sync      trigger a reconcile (bearer token)
//	POST /webhook/{provider}  the source's webhook receivers
//
// Anything else is 404.
type Server struct {
	loop    *Loop
	opts    ServerOptions
	log     *slog.Logger
	limiter *bucket
	mux     *http.ServeMux
}

// NewServer returns the API of loop.
func NewServer(loop *Loop, opts ServerOptions) *Server {
	if opts.TriggerRate <= 0 {
		opts.TriggerRate = 1
	}
	if opts.TriggerBurst <= 0 {
		opts.TriggerBurst = 10
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	s := &Server{loop: loop, opts: opts, log: opts.Logger, limiter: newBucket(opts.TriggerRate, opts.TriggerBurst)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", opts.Metrics.Handler())
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.loop.Status())
	})
	mux.HandleFunc("POST /api/v1/sync", s.sync)
	mux.Handle("/webhook/", s.limited(s.webhooks()))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "not found: " + r.Method + " " + r.URL.Path})
	})
	s.mux = mux
	return s
}

// Handler is the server's routes.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves on ln until ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http server shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readiness is /readyz's body.
type readiness struct {
	Ready  bool   `json:"ready"`
	Role   Role   `json:"role"`
	Leader string `json:"leader,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	role, leader := s.loop.role()
	r := readiness{Ready: s.loop.Ready(), Role: role, Leader: leader}
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
		r.Reason = "the live state has not been observed yet"
	}
	writeJSON(w, code, r)
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	if s.opts.APIToken == "" {
		writeJSON(w, http.StatusForbidden, apiError{Error: "the sync API is disabled: start capstan run with --api-token-file"})
		return
	}
	if !validBearer(r.Header.Get("Authorization"), s.opts.APIToken) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="capstan"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "missing or wrong bearer token"})
		return
	}
	if !s.limiter.allow() {
		s.tooMany(w)
		return
	}
	s.log.Info("sync requested through the API", "remote", r.RemoteAddr)
	s.loop.Trigger("sync")
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "triggered"})
}

// validBearer compares in constant time (over digests, so the length leaks nothing).
func validBearer(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	a, b := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func (s *Server) webhooks() http.Handler {
	if s.opts.Webhooks == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusNotFound, apiError{Error: "webhooks are not enabled: start capstan run with --webhook-secret-file and a Git source"})
		})
	}
	return s.opts.Webhooks
}

func (s *Server) limited(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.limiter.allow() {
			s.tooMany(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) tooMany(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(1/s.opts.TriggerRate))))
	writeJSON(w, http.StatusTooManyRequests, apiError{Error: "too many sync or webhook requests; a reconcile is already pending"})
}

// bucket is a token bucket: burst tokens, refilled at rate per second.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

func (b *bucket) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
