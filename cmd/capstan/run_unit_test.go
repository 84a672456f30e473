package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/capstan-dev/capstan/daemon"
	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/source"
)

func TestClassifyError(t *testing.T) {
	change := func(err error) error { return &reconcile.ChangeError{Key: resource.ServiceKey("s_web"), Err: err} }
	for _, tc := range []struct {
		name string
		err  error
		want daemon.Class
	}{
		{"invalid manifests", daemon.Stall(fmt.Errorf("does not validate: %w", manifests.Problems{{File: "a.yaml", Message: "bad"}})), daemon.Stalled},
		{"conflict", fmt.Errorf("plan: %w", &reconcile.ConflictError{Instance: "i"}), daemon.Stalled},
		{"conflict joined with a missing external", fmt.Errorf("plan: %w", errors.Join(&reconcile.ConflictError{}, &reconcile.MissingExternalError{})), daemon.Stalled},
		{"mass delete", fmt.Errorf("nothing applied: %w", &reconcile.MassDeleteError{Owned: 4}), daemon.Stalled},
		{"dependency cycle", &reconcile.CycleError{Cycle: []string{"a", "b", "a"}}, daemon.Stalled},
		{"rolled back", change(fmt.Errorf("%w: rollback_completed", reconcile.ErrRolledBack)), daemon.Stalled},
		{"not converged", errors.Join(change(fmt.Errorf("%w within 5m", reconcile.ErrNotConverged))), daemon.Waiting},
		{"not converged and an engine error", errors.Join(change(reconcile.ErrNotConverged), change(errors.New("connection refused"))), daemon.Transient},
		{"git unreachable", fmt.Errorf("source: %w", &source.Error{Kind: source.ErrUnreachable}), daemon.Transient},
		{"git auth", fmt.Errorf("source: %w", &source.Error{Kind: source.ErrAuth}), daemon.Stalled},
		{"force-push", fmt.Errorf("source: %w", &source.Error{Kind: source.ErrHistoryRewritten}), daemon.Stalled},
		{"engine away", fmt.Errorf("observe swarm: %w", errors.New("connection refused")), daemon.Transient},
		{"shutting down", change(errStopping), daemon.Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := daemon.New(daemon.Config{Classify: classifyError, Reconcile: func(context.Context, daemon.Request) (daemon.Report, error) {
				return daemon.Report{}, tc.err
			}})
			_ = l.Once(t.Context())
			if got := l.Status().LastError.Class; got != tc.want {
				t.Errorf("class %q, want %q", got, tc.want)
			}
		})
	}
}

// recordingSink records the changes it is asked to apply.
type recordingSink struct{ applied []resource.Key }

func (s *recordingSink) Name() string { return resource.SinkSwarm }
func (s *recordingSink) Observe(context.Context) (*resource.Set, error) {
	return resource.NewSet(), nil
}
func (s *recordingSink) Apply(_ context.Context, c reconcile.Change) error {
	s.applied = append(s.applied, c.Key)
	return nil
}

func TestGuardedSinkRefusesAfterStopOrLostLease(t *testing.T) {
	c := reconcile.Change{Action: reconcile.Create, Key: resource.ServiceKey("s_web")}
	stop := make(chan struct{})
	leader := true
	inner := &recordingSink{}
	g := &guardedSink{Sink: inner, stop: stop, leader: func() bool { return leader }}
	if err := g.Apply(t.Context(), c); err != nil || len(inner.applied) != 1 {
		t.Fatalf("a leader that is not stopping: err %v, applied %v", err, inner.applied)
	}
	leader = false
	if err := g.Apply(t.Context(), c); !errors.Is(err, errNotLeader) || len(inner.applied) != 1 {
		t.Errorf("after losing the lease: err %v, applied %v; want refused before writing", err, inner.applied)
	}
	leader = true
	close(stop)
	if err := g.Apply(t.Context(), c); !errors.Is(err, errStopping) || len(inner.applied) != 1 {
		t.Errorf("after SIGTERM: err %v, applied %v; want refused before writing", err, inner.applied)
	}
	gs := &guardedStatusSink{guardedSink: *g}
	if _, err := gs.ServiceStatus(t.Context(), "s_web"); !errors.Is(err, errStopping) {
		t.Errorf("convergence wait after SIGTERM: %v, want it abandoned", err)
	}
}

// TestDirWatcherWaitsForWritesToSettle: a file written in steps (truncated, then filled
// in parts) triggers one reconcile, once it is whole — not one per step, and never while
// it is empty.
func TestDirWatcherWaitsForWritesToSettle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "compose.yaml")
	whole := "services:\n  web:\n    image: capstan-testapp:dev\n"
	if err := os.WriteFile(path, []byte(whole), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newDirWatcher(dir, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	seen := make(chan string, 10)
	go w.run(ctx, func() {
		b, _ := os.ReadFile(path)
		seen <- string(b)
	})
	time.Sleep(50 * time.Millisecond)

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"services:\n", "  web:\n", "    image: capstan-testapp:dev\n"} {
		time.Sleep(30 * time.Millisecond)
		if _, err := f.WriteString(part); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	select {
	case got := <-seen:
		if got != whole {
			t.Errorf("the watcher fired on a half-written file: %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change noticed")
	}
	select {
	case got := <-seen:
		t.Errorf("a second trigger for one write (file %q)", got)
	case <-time.After(300 * time.Millisecond):
	}
}
