package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func svc(stack, name string) *resource.Resource {
	return &resource.Resource{Key: resource.ServiceKey(stack + "_" + name), Stack: stack}
}

// twoStacks is a reconcile of stacks web and db: db's service is created, web's update
// fails, web's api drifted (reported only), one route to web.
func twoStacks(rev string, failWeb bool) (Report, error) {
	webUpdate := reconcile.Change{Action: reconcile.Update, Key: resource.ServiceKey("web_front"), Before: svc("web", "front"),
		After: svc("web", "front"), Reason: reconcile.SourceChanged,
		Diff: []reconcile.FieldDiff{{Path: "TaskTemplate.ContainerSpec.Image", Before: "front:1", After: "front:2"}}}
	dbCreate := reconcile.Change{Action: reconcile.Create, Key: resource.ServiceKey("db_mysql"), After: svc("db", "mysql"), Reason: reconcile.NotInCluster}
	drift := reconcile.Change{Action: reconcile.NoOp, Key: resource.ServiceKey("web_api"), Before: svc("web", "api"), After: svc("web", "api"),
		Reason: reconcile.Drift, Diff: []reconcile.FieldDiff{
			{Path: "TaskTemplate.ContainerSpec.Env[DB_PASSWORD]", Before: "(masked)", After: "(masked)"},
			{Path: "Mode.Replicated.Replicas", Before: "5", After: "2"}}}
	plan := reconcile.Plan{Revision: rev, Changes: []reconcile.Change{dbCreate, webUpdate, drift},
		Drift: []resource.Key{drift.Key}, StackOrder: []string{"db", "web"}}
	res := reconcile.Result{Changes: []reconcile.ChangeResult{{Change: dbCreate, Outcome: reconcile.Applied}}}
	var err error
	if failWeb {
		err = &reconcile.ChangeError{Key: webUpdate.Key, Err: errors.New("swarm rolled the update back: rollback_completed (task failed)")}
		res.Changes = append(res.Changes, reconcile.ChangeResult{Change: webUpdate, Outcome: reconcile.Failed, Err: err})
	} else {
		res.Changes = append(res.Changes, reconcile.ChangeResult{Change: webUpdate, Outcome: reconcile.Applied})
	}
	frontHealth := reconcile.Healthy
	if failWeb {
		frontHealth = reconcile.Degraded
	}
	rep := Report{
		Revision: rev, Observed: true, Plan: &plan, Result: &res,
		Stacks: []StackReport{
			{Name: "db", Services: []ServiceReport{{Name: "db_mysql", Health: reconcile.Progressing, RunningTasks: 0, DesiredTasks: 1}}},
			{Name: "web", Services: []ServiceReport{
				{Name: "web_api", Health: reconcile.Healthy, RunningTasks: 5, DesiredTasks: 5},
				{Name: "web_front", Health: frontHealth, RunningTasks: 2, DesiredTasks: 2, UpdateState: "rollback_completed"},
			}},
		},
		Routes: []RouteReport{{Name: "front", Key: "slb/listener/lb-1:8080/http", Stack: "web", Service: "web_front", TargetPort: 80,
			LoadBalancer: "lb-1", Listener: "http:8080", Reconciled: true}},
		Drift:    DriftFromPlan(plan),
		Warnings: []string{"stacks/web/compose.yaml:3: warning: links is ignored by Swarm"},
	}
	if err != nil {
		err = Stall(err)
	}
	return rep, err
}

// TestStatusGolden runs a failing reconcile, then a fixed one, on the bubble's fake
// clock, and records /api/v1/status after each.
func TestStatusGolden(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		l := New(Config{Instance: "prod", Holder: "node-1", Interval: time.Minute, Rand: half,
			Reconcile: func(ctx context.Context, req Request) (Report, error) {
				calls++
				time.Sleep(1500 * time.Millisecond)
				return twoStacks("main@sha1:"+map[bool]string{true: "1111111111111111111111111111111111111111", false: "2222222222222222222222222222222222222222"}[calls == 1], calls == 1)
			}})
		if err := l.Once(t.Context()); ClassOf(err) != Stalled {
			t.Fatalf("first reconcile: %v, want a stalled error", err)
		}
		first := l.Status()
		time.Sleep(time.Minute)
		if err := l.Once(t.Context()); err != nil {
			t.Fatalf("second reconcile: %v", err)
		}
		second := l.Status()

		// The assertions that matter, before the golden file holds the rest.
		web := func(st Status) StackStatus { return st.Stacks[1] }
		if s := web(first); s.Sync != SyncError || s.Health != reconcile.Degraded || s.LastError == "" {
			t.Errorf("web after the failure: sync %s health %s error %q", s.Sync, s.Health, s.LastError)
		}
		if first.Revision != "" || first.LastError == nil {
			t.Errorf("after the failure: revision %q (want none applied), last error %v", first.Revision, first.LastError)
		}
		if s := web(second); s.Sync != OutOfSync || s.LastError != "" || !s.SyncTransitionTime.After(web(first).SyncTransitionTime) {
			t.Errorf("web after the fix: sync %s (want OutOfSync: drift is reported only), error %q, transition %s", s.Sync, s.LastError, s.SyncTransitionTime)
		}
		if s := second.Stacks[0]; s.Sync != Synced || s.Revision != "main@sha1:2222222222222222222222222222222222222222" {
			t.Errorf("db after the fix: sync %s revision %q", s.Sync, s.Revision)
		}
		b, err := json.MarshalIndent([]Status{first, second}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "status.json", append(b, '\n'))
	})
}

func TestStacksAndRoutesFollowTheSource(t *testing.T) {
	s := newState("capstan", "")
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rep, _ := twoStacks("r1", false)
	s.applyReport(now, rep, nil, "", true)
	if len(s.stacks) != 2 || len(s.routes) != 1 {
		t.Fatalf("got %d stacks and %d routes, want 2 and 1", len(s.stacks), len(s.routes))
	}
	rep.Stacks, rep.Routes, rep.Drift = rep.Stacks[:1], nil, nil
	rep.Revision, rep.Plan = "r2", &reconcile.Plan{Revision: "r2"}
	rep.Result = nil
	s.applyReport(now.Add(time.Minute), rep, nil, "", true)
	st := s.snapshot()
	if len(st.Stacks) != 1 || st.Stacks[0].Name != "db" || len(st.Routes) != 0 {
		t.Errorf("after web and its route left the source: stacks %+v routes %+v", st.Stacks, st.Routes)
	}
	// A failed source load (no plan) keeps what was known and the last applied revision.
	s.applyReport(now.Add(2*time.Minute), Report{}, Stall(errors.New("source does not validate")), Stalled, true)
	st = s.snapshot()
	if len(st.Stacks) != 1 || st.Revision != "r2" || st.LastError == nil {
		t.Errorf("after a failed load: stacks %d, revision %q, last error %v; want 1, r2 and the error", len(st.Stacks), st.Revision, st.LastError)
	}
}

// TestRoutesAreListedByName: the key holds the listener port, which says nothing to a
// reader; status lists routes by their name.
func TestRoutesAreListedByName(t *testing.T) {
	s := newState("capstan", "")
	rep, _ := twoStacks("r1", false)
	rep.Routes = []RouteReport{
		{Name: "web", Key: "slb/listener/lb-1:1000/http", Reconciled: true},
		{Name: "api", Key: "slb/listener/lb-1:9000/tcp", Reconciled: true},
	}
	s.applyReport(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), rep, nil, "", true)
	st := s.snapshot()
	if len(st.Routes) != 2 || st.Routes[0].Name != "api" || st.Routes[1].Name != "web" {
		t.Errorf("routes %+v, want api then web", st.Routes)
	}
}

// TestProgressDeadline: a service short of tasks with no rollout under way turns
// Degraded once it has been so for the deadline; a rollout in progress never does, and
// a service that catches up starts afresh.
func TestProgressDeadline(t *testing.T) {
	s := newState("capstan", "")
	s.progressDeadline = 5 * time.Minute
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	report := func(web, api ServiceReport) Report {
		return Report{Revision: "r1", Observed: true, Plan: &reconcile.Plan{Revision: "r1"},
			Stacks: []StackReport{{Name: "shop", Services: []ServiceReport{api, web}}}}
	}
	stuck := ServiceReport{Name: "shop_web", Health: reconcile.Progressing, RunningTasks: 0, DesiredTasks: 2}
	rolling := ServiceReport{Name: "shop_api", Health: reconcile.Progressing, RunningTasks: 1, DesiredTasks: 2, UpdateState: "updating"}
	health := func() (stack, web, api reconcile.Health, msg string) {
		st := s.snapshot()
		if len(st.Stacks) != 1 || len(st.Stacks[0].Services) != 2 {
			t.Fatalf("stacks %+v", st.Stacks)
		}
		sk := st.Stacks[0]
		return sk.Health, sk.Services[1].Health, sk.Services[0].Health, sk.Services[1].Message
	}
	for _, step := range []struct {
		at                 time.Duration
		web                ServiceReport
		wantStack, wantWeb reconcile.Health
		wantMessage        bool
	}{
		{0, stuck, reconcile.Progressing, reconcile.Progressing, false},
		{4 * time.Minute, stuck, reconcile.Progressing, reconcile.Progressing, false},
		{5 * time.Minute, stuck, reconcile.Degraded, reconcile.Degraded, true},
		{6 * time.Minute, stuck, reconcile.Degraded, reconcile.Degraded, true},
		// It caught up: healthy, and the clock starts again if it falls short later.
		{7 * time.Minute, ServiceReport{Name: "shop_web", Health: reconcile.Healthy, RunningTasks: 2, DesiredTasks: 2}, reconcile.Progressing, reconcile.Healthy, false},
		{8 * time.Minute, stuck, reconcile.Progressing, reconcile.Progressing, false},
		{12 * time.Minute, stuck, reconcile.Progressing, reconcile.Progressing, false},
		{13 * time.Minute, stuck, reconcile.Degraded, reconcile.Degraded, true},
	} {
		s.applyReport(t0.Add(step.at), report(step.web, rolling), nil, "", true)
		stack, web, api, msg := health()
		if stack != step.wantStack || web != step.wantWeb || (msg != "") != step.wantMessage {
			t.Errorf("at %v: stack %s, web %s (message %q); want %s, %s, message %v", step.at, stack, web, msg, step.wantStack, step.wantWeb, step.wantMessage)
		}
		if api != reconcile.Progressing {
			t.Errorf("at %v: the service in a rollout is %s, want Progressing (Swarm's rollout has its own monitor)", step.at, api)
		}
	}
	if _, _, _, msg := health(); !strings.Contains(msg, "0 of 2 tasks running for 5m0s") {
		t.Errorf("message %q does not say how long and how many", msg)
	}
}

func TestFollowerPlansAreOutOfSync(t *testing.T) {
	s := newState("capstan", "")
	rep, _ := twoStacks("r1", false)
	rep.Result = nil // a follower applies nothing
	s.applyReport(time.Now(), rep, nil, "", false)
	for _, st := range s.snapshot().Stacks {
		if st.Sync != OutOfSync {
			t.Errorf("stack %s: %s, want OutOfSync: its changes are planned, not applied", st.Name, st.Sync)
		}
	}
}
