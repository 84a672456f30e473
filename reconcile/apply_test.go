package reconcile

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
)

// recordingSink is a fake for the pure ordering logic of Apply: it records the changes it
// is given, fails the keys it is told to, and plays back service statuses.
type recordingSink struct {
	mu       sync.Mutex
	applied  []string
	fail     map[string]error
	statuses map[string][]resource.ServiceStatus // consumed one per poll; the last repeats
}

func (s *recordingSink) Name() string { return resource.SinkSwarm }

func (s *recordingSink) Observe(context.Context) (*resource.Set, error) {
	return resource.NewSet(), nil
}

func (s *recordingSink) Apply(_ context.Context, c Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = append(s.applied, string(c.Action)+" "+c.Key.String())
	return s.fail[c.Key.String()]
}

func (s *recordingSink) ServiceStatus(_ context.Context, name string) (resource.ServiceStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.statuses[name]
	if len(seq) == 0 {
		return resource.ServiceStatus{RunningTasks: 1, DesiredTasks: 1}, nil
	}
	st := seq[0]
	if len(seq) > 1 {
		s.statuses[name] = seq[1:]
	}
	return st, nil
}

func svcChange(a Action, stack, name string) Change {
	r := &resource.Resource{Key: resource.ServiceKey(name), Stack: stack}
	c := Change{Action: a, Key: r.Key}
	if a == Delete {
		c.Before = r
	} else {
		c.After = r
	}
	return c
}

func netChange(a Action, stack, name string) Change {
	r := &resource.Resource{Key: resource.NetworkKey(name), Stack: stack}
	return Change{Action: a, Key: r.Key, After: r}
}

func fastOptions() ApplyOptions {
	return ApplyOptions{ConvergeTimeout: 2 * time.Second, PollInterval: time.Millisecond, RolloutGrace: 5 * time.Millisecond}
}

func TestApplyFailureStopsStackAndDependents(t *testing.T) {
	sink := &recordingSink{fail: map[string]error{"swarm/network/db_default": errors.New("boom")}}
	plan := Plan{Changes: []Change{
		netChange(Create, "db", "db_default"),
		netChange(Create, "web", "web_default"),
		netChange(Create, "other", "other_default"),
		svcChange(Create, "db", "db_mysql"),
		svcChange(Create, "web", "web_wordpress"),
		svcChange(Create, "other", "other_app"),
		svcChange(NoOp, "other", "other_same"),
	}}
	opts := fastOptions()
	opts.StackDeps = map[string][]string{"web": {"db"}}
	res, err := Apply(context.Background(), plan, map[string]Sink{"swarm": sink}, opts)
	if err == nil || !strings.Contains(err.Error(), "swarm/network/db_default: boom") {
		t.Fatalf("error = %v, want the db network failure", err)
	}
	want := []string{
		"+ swarm/network/db_default",
		"+ swarm/network/other_default",
		"+ swarm/service/other_app",
	}
	if diff := cmp.Diff(want, sink.applied); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	outcomes := map[string]Outcome{}
	for _, r := range res.Changes {
		outcomes[r.Change.Key.String()] = r.Outcome
	}
	wantOutcomes := map[string]Outcome{
		"swarm/network/db_default":    Failed,
		"swarm/network/web_default":   Skipped,
		"swarm/network/other_default": Applied,
		"swarm/service/db_mysql":      Skipped,
		"swarm/service/web_wordpress": Skipped,
		"swarm/service/other_app":     Applied,
	}
	if diff := cmp.Diff(wantOutcomes, outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if got := len(res.Failed()); got != 4 {
		t.Errorf("Failed() = %d results, want 4", got)
	}
}

func TestApplyWaitsForConvergence(t *testing.T) {
	tests := []struct {
		name    string
		change  Change
		seq     []resource.ServiceStatus
		wantErr error
	}{
		{
			name:   "create converges",
			change: svcChange(Create, "s", "s_web"),
			seq:    []resource.ServiceStatus{{DesiredTasks: 2}, {RunningTasks: 1, DesiredTasks: 2}, {RunningTasks: 2, DesiredTasks: 2}},
		},
		{
			name: "update waits for completed rollout",
			change: Change{Action: Update, Key: resource.ServiceKey("s_web"), After: &resource.Resource{Stack: "s"},
				Diff: []FieldDiff{{Path: "TaskTemplate.ContainerSpec.Env[X]"}}},
			seq: []resource.ServiceStatus{{RunningTasks: 1, DesiredTasks: 1}, {RunningTasks: 1, DesiredTasks: 1, UpdateState: "updating"},
				{RunningTasks: 1, DesiredTasks: 1, UpdateState: "completed"}},
		},
		{
			name: "rollback is a failure",
			change: Change{Action: Update, Key: resource.ServiceKey("s_web"), After: &resource.Resource{Stack: "s"},
				Diff: []FieldDiff{{Path: "TaskTemplate.ContainerSpec.Image"}}},
			seq: []resource.ServiceStatus{{RunningTasks: 1, DesiredTasks: 1, UpdateState: "updating"},
				{RunningTasks: 1, DesiredTasks: 1, UpdateState: "rollback_completed", UpdateMessage: "rollback completed"}},
			wantErr: ErrRolledBack,
		},
		{
			name: "paused is a failure",
			change: Change{Action: Update, Key: resource.ServiceKey("s_web"), After: &resource.Resource{Stack: "s"},
				Diff: []FieldDiff{{Path: "TaskTemplate.ContainerSpec.Image"}}},
			seq:     []resource.ServiceStatus{{RunningTasks: 0, DesiredTasks: 1, UpdateState: "paused"}},
			wantErr: ErrRolledBack,
		},
		{
			name:    "never running times out",
			change:  svcChange(Create, "s", "s_web"),
			seq:     []resource.ServiceStatus{{RunningTasks: 0, DesiredTasks: 1}},
			wantErr: ErrNotConverged,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &recordingSink{statuses: map[string][]resource.ServiceStatus{"s_web": tt.seq}}
			opts := fastOptions()
			if tt.wantErr == ErrNotConverged {
				opts.ConvergeTimeout = 50 * time.Millisecond
			}
			var out bytes.Buffer
			opts.Progress = &out
			res, err := Apply(context.Background(), Plan{Changes: []Change{tt.change}}, map[string]Sink{"swarm": sink}, opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			want := Applied
			if tt.wantErr != nil {
				want = Failed
			}
			if len(res.Changes) != 1 || res.Changes[0].Outcome != want {
				t.Fatalf("results = %+v, want one %s", res.Changes, want)
			}
			if !strings.Contains(out.String(), "tasks running") {
				t.Errorf("progress shows no task counts:\n%s", out.String())
			}
		})
	}
}

func TestApplyWithoutSinkIsReported(t *testing.T) {
	c := Change{Action: Create, Key: resource.Key{Sink: resource.SinkSLB, Kind: resource.KindListener, Name: "lb-1:80/http"},
		After: &resource.Resource{}}
	var out bytes.Buffer
	res, err := Apply(context.Background(), Plan{Changes: []Change{c}}, map[string]Sink{}, ApplyOptions{Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes[0].Outcome != Unhandled || !strings.Contains(out.String(), "no slb sink configured") {
		t.Errorf("outcome %s, output %q", res.Changes[0].Outcome, out.String())
	}
}

func TestApplyStopsStartingChangesWhenCancelled(t *testing.T) {
	sink := &recordingSink{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	plan := Plan{Changes: []Change{netChange(Create, "s", "s_default"), svcChange(Create, "s", "s_web")}}
	res, err := Apply(ctx, plan, map[string]Sink{"swarm": sink}, fastOptions())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if len(sink.applied) != 0 {
		t.Errorf("a cancelled apply still wrote: %v", sink.applied)
	}
	for _, r := range res.Changes {
		if r.Outcome != Skipped {
			t.Errorf("%s: outcome %s, want skipped", r.Change.Key, r.Outcome)
		}
	}
}
