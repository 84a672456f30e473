package daemon

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/reconcile"
)

func TestParseNotifyURL(t *testing.T) {
	for _, tc := range []struct {
		in    string
		slack bool
		url   string
		bad   bool
	}{
		{in: "https://example.com/hook", url: "https://example.com/hook"},
		{in: "slack+https://chat.example.com/hooks/T0/B0/xyz", slack: true, url: "https://chat.example.com/hooks/T0/B0/xyz"},
		{in: "https://hooks.slack.com/services/T0/B0/xyz", slack: true, url: "https://hooks.slack.com/services/T0/B0/xyz"},
		{in: "ftp://example.com/x", bad: true},
		{in: "slack+mailto:ops@example.com", bad: true},
		{in: "example.com/hook", bad: true},
	} {
		slack, u, err := ParseNotifyURL(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: accepted", tc.in)
			} else if strings.Contains(err.Error(), "xyz") {
				t.Errorf("%s: the error shows the URL's secret path: %v", tc.in, err)
			}
			continue
		}
		if err != nil || slack != tc.slack || u != tc.url {
			t.Errorf("%s: slack %t url %q err %v; want %t %q", tc.in, slack, u, err, tc.slack, tc.url)
		}
	}
}

func kinds(evs []Event) []EventKind {
	out := []EventKind{}
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func driftReport(rev string, drift ...Drift) Report {
	return Report{Revision: rev, Observed: true, Plan: &reconcile.Plan{Revision: rev}, Drift: drift}
}

func TestNotifierDecides(t *testing.T) {
	stalled := Stall(errors.New("stacks/web/compose.yaml:3: unknown key"))
	down := errors.New("engine unreachable")
	replicas := Drift{Key: "swarm/service/web_api", Stack: "web", Diff: []reconcile.FieldDiff{{Path: "Mode.Replicated.Replicas", Before: "5", After: "2"}}}
	image := Drift{Key: "swarm/service/web_api", Stack: "web", Diff: []reconcile.FieldDiff{{Path: "TaskTemplate.ContainerSpec.Image", Before: "x", After: "y"}}}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	type tick struct {
		after time.Duration // since t0
		rep   Report
		err   error
		want  []EventKind
	}
	for _, tc := range []struct {
		name  string
		ticks []tick
	}{
		{"a stalled failure is sent once an hour, then recovery once", []tick{
			{0, Report{Revision: "r1"}, stalled, []EventKind{EventSyncFailed}},
			{time.Minute, Report{Revision: "r1"}, stalled, []EventKind{}},
			{59 * time.Minute, Report{Revision: "r1"}, stalled, []EventKind{}},
			{61 * time.Minute, Report{Revision: "r1"}, stalled, []EventKind{EventSyncFailed}},
			{62 * time.Minute, driftReport("r2"), nil, []EventKind{EventRecovered}},
			{63 * time.Minute, driftReport("r2"), nil, []EventKind{}},
		}},
		{"a new revision failing is news", []tick{
			{0, Report{Revision: "r1"}, stalled, []EventKind{EventSyncFailed}},
			{time.Minute, Report{Revision: "r2"}, stalled, []EventKind{EventSyncFailed}},
		}},
		{"transient failures are sent from the third in a row", []tick{
			{0, Report{}, down, []EventKind{}},
			{time.Second, Report{}, down, []EventKind{}},
			{3 * time.Second, driftReport("r1"), nil, []EventKind{}}, // a blip: no recovery either
			{4 * time.Second, Report{}, down, []EventKind{}},
			{6 * time.Second, Report{}, down, []EventKind{}},
			{10 * time.Second, Report{}, down, []EventKind{EventSyncFailed}},
			{18 * time.Second, Report{}, down, []EventKind{}},
			{30 * time.Second, driftReport("r1"), nil, []EventKind{EventRecovered}},
		}},
		{"waiting is not a failure", []tick{
			{0, driftReport("r1"), Wait(reconcile.ErrNotConverged), []EventKind{}},
			{time.Minute, driftReport("r1"), nil, []EventKind{}},
		}},
		{"drift is sent when new or changed, and again after it cleared", []tick{
			{0, driftReport("r1", replicas), nil, []EventKind{EventDrift}},
			{time.Minute, driftReport("r1", replicas), nil, []EventKind{}},
			{2 * time.Minute, driftReport("r1", image), nil, []EventKind{EventDrift}},
			{3 * time.Minute, driftReport("r1"), nil, []EventKind{}},
			{4 * time.Minute, driftReport("r1", image), nil, []EventKind{EventDrift}},
			{65 * time.Minute, driftReport("r1", image), nil, []EventKind{EventDrift}},
		}},
		{"drift is not forgotten by a reconcile that saw nothing", []tick{
			{0, driftReport("r1", replicas), nil, []EventKind{EventDrift}},
			{time.Minute, Report{}, down, []EventKind{}},
			{2 * time.Minute, driftReport("r1", replicas), nil, []EventKind{}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NewNotifier(nil, NotifierOptions{Instance: "prod"})
			if err != nil {
				t.Fatal(err)
			}
			for i, tk := range tc.ticks {
				got := kinds(n.Decide(t0.Add(tk.after), tk.rep, tk.err, ClassOf(tk.err)))
				if diff := cmp.Diff(tk.want, got); diff != "" {
					t.Errorf("tick %d (+%s): events (-want +got):\n%s", i, tk.after, diff)
				}
			}
		})
	}
}

// TestDecideHealth: a stack turning Degraded is news, again after Repeat while it stays
// so; its return to Healthy is news only if Degraded was notified; Progressing never is.
func TestDecideHealth(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	stuck := ServiceReport{Name: "shop_web", Health: reconcile.Degraded, RunningTasks: 0, DesiredTasks: 2,
		Message: "0 of 2 tasks running for 10m0s: Swarm is not getting the rest to run (docker service ps shop_web)"}
	rolledBack := ServiceReport{Name: "shop_api", Health: reconcile.Degraded, RunningTasks: 2, DesiredTasks: 2,
		UpdateState: "rollback_completed", UpdateMessage: "update rolled back"}
	stack := func(name string, h reconcile.Health, svcs ...ServiceReport) StackStatus {
		return StackStatus{Name: name, Health: h, Services: svcs}
	}
	status := func(stacks ...StackStatus) Status { return Status{Stacks: stacks} }
	n, err := NewNotifier(nil, NotifierOptions{Instance: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range []struct {
		after time.Duration
		st    Status
		want  []EventKind
	}{
		{0, status(stack("shop", reconcile.Progressing)), []EventKind{}},
		{time.Minute, status(stack("shop", reconcile.Degraded, stuck)), []EventKind{EventDegraded}},
		{2 * time.Minute, status(stack("shop", reconcile.Degraded, stuck)), []EventKind{}},
		{62 * time.Minute, status(stack("shop", reconcile.Degraded, stuck)), []EventKind{EventDegraded}},
		{63 * time.Minute, status(stack("shop", reconcile.Progressing)), []EventKind{}},
		{64 * time.Minute, status(stack("shop", reconcile.Healthy)), []EventKind{EventHealthy}},
		{65 * time.Minute, status(stack("shop", reconcile.Healthy)), []EventKind{}},
		{66 * time.Minute, status(stack("shop", reconcile.Degraded, rolledBack)), []EventKind{EventDegraded}},
		// The stack left the source: nothing more about it, and no "healthy" later.
		{67 * time.Minute, status(), []EventKind{}},
		{68 * time.Minute, status(stack("shop", reconcile.Healthy)), []EventKind{}},
	} {
		events := n.DecideHealth(t0.Add(tk.after), tk.st)
		if diff := cmp.Diff(tk.want, kinds(events)); diff != "" {
			t.Errorf("tick %d (+%s): events (-want +got):\n%s", i, tk.after, diff)
		}
		for _, ev := range events {
			if ev.Kind == EventDegraded && (ev.Stack != "shop" || !strings.Contains(ev.Text(), "stack shop is Degraded: shop_")) {
				t.Errorf("tick %d: degraded event %+v reads %q", i, ev, ev.Text())
			}
		}
	}
	if got := degradedWhy(stack("shop", reconcile.Degraded, rolledBack, stuck)); got != "shop_api: 2 of 2 tasks running, update rollback_completed (update rolled back); "+
		"shop_web: 0 of 2 tasks running for 10m0s: Swarm is not getting the rest to run (docker service ps shop_web)" {
		t.Errorf("degradedWhy = %q", got)
	}
}

// receiver is an httptest server on 127.0.0.1 that records the JSON bodies it gets.
func receiver(t *testing.T, status int) (*httptest.Server, <-chan map[string]any) {
	t.Helper()
	got := make(chan map[string]any, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("notification body %q (content type %q): %v", b, r.Header.Get("Content-Type"), err)
		}
		got <- v
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestNotifierSends(t *testing.T) {
	generic, genericGot := receiver(t, http.StatusNoContent)
	slack, slackGot := receiver(t, http.StatusOK)
	n, err := NewNotifier([]string{generic.URL + "/capstan", "slack+" + slack.URL + "/services/T0/B0/secret"}, NotifierOptions{Instance: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Kind: EventSyncFailed, Instance: "prod", Revision: "main@sha1:abc", Class: Stalled,
		Message: "stacks/web/compose.yaml:3: unknown key", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := n.Send(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	g := <-genericGot
	for k, want := range map[string]any{"event": "sync_failed", "instance": "prod", "revision": "main@sha1:abc", "class": "stalled",
		"message": "stacks/web/compose.yaml:3: unknown key", "time": "2025-03-01T12:00:00Z"} {
		if g[k] != want {
			t.Errorf("generic payload %s = %v, want %v", k, g[k], want)
		}
	}
	if text, _ := g["text"].(string); !strings.Contains(text, "Needs a human") {
		t.Errorf("generic payload text %q does not say what happens next", text)
	}
	s := <-slackGot
	if len(s) != 1 || !strings.HasPrefix(s["text"].(string), "capstan prod: sync failed (stalled) at main@sha1:abc") {
		t.Errorf("slack payload %v: want only a text starting with the summary", s)
	}
}

func TestNotifierReportsFailuresWithoutTheSecretPath(t *testing.T) {
	srv, _ := receiver(t, http.StatusInternalServerError)
	n, err := NewNotifier([]string{srv.URL + "/hooks/very-secret-token"}, NotifierOptions{Instance: "prod", RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Send(t.Context(), Event{Kind: EventRecovered, Instance: "prod"})
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Send to a failing receiver = %v, want an error naming the 500", err)
	}
	if strings.Contains(err.Error(), "very-secret-token") {
		t.Errorf("error shows the webhook URL's path: %v", err)
	}
}
