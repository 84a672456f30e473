package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// serve runs a Server for l over a real loopback listener.
func serve(t *testing.T, l *Loop, opts ServerOptions) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewServer(l, opts).Handler())
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// triggered drains l's pending trigger, if any.
func triggered(l *Loop) string {
	select {
	case r := <-l.triggers:
		return r
	default:
		return ""
	}
}

func TestServerRoutes(t *testing.T) {
	l := New(Config{Instance: "prod", Reconcile: func(context.Context, Request) (Report, error) { return twoStacks("main@sha1:abc", false) }})
	hooks := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.Trigger("webhook")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "hook "+r.URL.Path)
	})
	m := NewMetrics()
	l.cfg.Metrics = m
	srv := serve(t, l, ServerOptions{APIToken: "s3cret", Webhooks: hooks, Metrics: m, TriggerBurst: 100})

	// Before the first reconcile: alive, not ready.
	if code, _ := do(t, "GET", srv.URL+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := do(t, "GET", srv.URL+"/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, `"role": "leader"`) {
		t.Errorf("/readyz before observing = %d %s, want 503 naming the role", code, body)
	}
	if err := l.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, "GET", srv.URL+"/readyz", ""); code != http.StatusOK {
		t.Errorf("/readyz after observing = %d, want 200", code)
	}

	code, body := do(t, "GET", srv.URL+"/api/v1/status", "")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("/api/v1/status = %d %v", code, err)
	}
	if len(st.Stacks) != 2 || st.Stacks[1].Name != "web" || len(st.Stacks[1].Drift) != 1 || st.Revision != "main@sha1:abc" {
		t.Errorf("status stacks %+v revision %q", st.Stacks, st.Revision)
	}

	code, body = do(t, "GET", srv.URL+"/metrics", "")
	for _, want := range []string{
		`capstan_reconciles_total{result="success"} 1`,
		`capstan_changes_total{action="create",outcome="applied"} 1`,
		`capstan_drift_objects{stack="web"} 1`,
		`capstan_drift_objects{stack="db"} 0`,
		`capstan_stack_health{health="Progressing",stack="db"} 1`,
		`capstan_stack_health{health="Healthy",stack="db"} 0`,
		`capstan_last_applied_revision_info{revision="main@sha1:abc"} 1`,
		`capstan_reconcile_duration_seconds_count{result="success"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}

	for _, tc := range []struct {
		name, method, path, auth string
		code                     int
		trigger                  string
	}{
		{"sync without a token", "POST", "/api/v1/sync", "", http.StatusUnauthorized, ""},
		{"sync with a wrong token", "POST", "/api/v1/sync", "Bearer nope", http.StatusUnauthorized, ""},
		{"sync with a token prefix", "POST", "/api/v1/sync", "Bearer s3cre", http.StatusUnauthorized, ""},
		{"sync with basic auth", "POST", "/api/v1/sync", "Basic czNjcmV0", http.StatusUnauthorized, ""},
		{"sync", "POST", "/api/v1/sync", "Bearer s3cret", http.StatusAccepted, "sync"},
		{"sync is POST only", "GET", "/api/v1/sync", "Bearer s3cret", http.StatusNotFound, ""},
		{"webhook", "POST", "/webhook/github", "", http.StatusAccepted, "webhook"},
		{"unknown route", "GET", "/api/v1/nothing", "", http.StatusNotFound, ""},
		{"unknown top-level route", "GET", "/admin", "", http.StatusNotFound, ""},
		{"status is GET only", "DELETE", "/api/v1/status", "", http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, srv.URL+tc.path, tc.auth)
			if code != tc.code {
				t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, code, body, tc.code)
			}
			if got := triggered(l); got != tc.trigger {
				t.Errorf("trigger %q, want %q", got, tc.trigger)
			}
		})
	}

	code, body = do(t, "GET", srv.URL+"/", "")
	for _, want := range []string{"<title>capstan prod — Ready</title>", `id="stack-web"`, "web_front", "2/2", "Mode.Replicated.Replicas", "lb-1 http:8080"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("status page (%d) lacks %q", code, want)
		}
	}
}

func TestSyncDisabledWithoutAToken(t *testing.T) {
	l := New(Config{Reconcile: func(context.Context, Request) (Report, error) { return Report{}, nil }})
	srv := serve(t, l, ServerOptions{})
	if code, _ := do(t, "POST", srv.URL+"/api/v1/sync", "Bearer "); code != http.StatusForbidden {
		t.Errorf("sync with no token configured = %d, want 403", code)
	}
	if code, _ := do(t, "POST", srv.URL+"/webhook/github", ""); code != http.StatusNotFound {
		t.Errorf("webhook with none configured = %d, want 404", code)
	}
	if triggered(l) != "" {
		t.Error("a refused request triggered a reconcile")
	}
}

func TestTriggerFloodIsLimited(t *testing.T) {
	l := New(Config{Reconcile: func(context.Context, Request) (Report, error) { return Report{}, nil }})
	hooks := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	// A rate so low that no token comes back during the test.
	srv := serve(t, l, ServerOptions{APIToken: "t", Webhooks: hooks, TriggerBurst: 5, TriggerRate: 1e-6})
	codes := map[int]int{}
	for i := range 20 {
		path, auth := "/webhook/generic", ""
		if i%2 == 0 {
			path, auth = "/api/v1/sync", "Bearer t"
		}
		code, _ := do(t, "POST", srv.URL+path, auth)
		codes[code]++
	}
	if codes[http.StatusAccepted] != 5 || codes[http.StatusTooManyRequests] != 15 {
		t.Errorf("answers to 20 triggers with a burst of 5: %v, want 5×202 and 15×429", codes)
	}
	// Unauthenticated floods do not use up the budget of the real callers.
	if code, _ := do(t, "POST", srv.URL+"/api/v1/sync", "Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("bad token during a flood = %d, want 401", code)
	}
	// Status stays available during a flood.
	if code, _ := do(t, "GET", srv.URL+"/api/v1/status", ""); code != http.StatusOK {
		t.Errorf("status during a flood = %d", code)
	}
}

func TestPageEscapesWhatItShows(t *testing.T) {
	l := New(Config{Reconcile: func(context.Context, Request) (Report, error) {
		rep, _ := twoStacks("main@sha1:abc", false)
		rep.Stacks[0].Services[0].UpdateMessage = `<script>alert("x")</script>`
		return rep, nil
	}})
	if err := l.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, l, ServerOptions{})
	_, body := do(t, "GET", srv.URL+"/", "")
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") {
		t.Error("the status page does not escape values from the cluster")
	}
}
