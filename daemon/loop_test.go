package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/reconcile"
)

func TestClassOf(t *testing.T) {
	plain := errors.New("engine unreachable")
	notConverged := fmt.Errorf("web: %w", reconcile.ErrNotConverged)
	judge := func(err error) Class {
		if errors.Is(err, reconcile.ErrNotConverged) {
			return Waiting
		}
		return ""
	}
	for _, tc := range []struct {
		name  string
		err   error
		judge func(error) Class
		want  Class
	}{
		{"nil", nil, nil, ""},
		{"plain error is transient", plain, nil, Transient},
		{"stall mark", Stall(plain), nil, Stalled},
		{"wait mark", Wait(plain), nil, Waiting},
		{"mark survives wrapping", fmt.Errorf("reconcile: %w", Stall(plain)), nil, Stalled},
		{"judge names a class", notConverged, judge, Waiting},
		{"judge defers to marks", Stall(plain), judge, Stalled},
		{"join: stalled beats transient", errors.Join(plain, Stall(plain)), nil, Stalled},
		{"join: transient beats waiting", errors.Join(Wait(plain), plain), nil, Transient},
		{"join: all waiting", errors.Join(notConverged, notConverged), judge, Waiting},
		{"join is judged per part", fmt.Errorf("apply: %w", errors.Join(notConverged, Stall(plain))), judge, Stalled},
		{"context cancelled is transient", context.Canceled, nil, Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err, tc.judge); got != tc.want {
				t.Errorf("class = %q, want %q", got, tc.want)
			}
		})
	}
}

// script is a fake ReconcileFunc: each call takes the next step (the last repeats) and
// records when it ran, by the bubble's fake clock.
type script struct {
	mu    sync.Mutex
	steps []step
	calls []call
	start time.Time
}

type step struct {
	rep Report
	err error
}

type call struct {
	at  time.Duration // since the script started
	req Request
}

func newScript(steps ...step) *script { return &script{steps: steps, start: time.Now()} }

func (s *script) reconcile(_ context.Context, req Request) (Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call{at: time.Since(s.start), req: req})
	st := s.steps[min(len(s.calls), len(s.steps))-1]
	return st.rep, st.err
}

func (s *script) times() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Duration, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.at
	}
	return out
}

func (s *script) triggers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.req.Trigger
	}
	return out
}

// half makes jitter neutral: intervals are exact, backoffs 3/4 of their cap.
func half() float64 { return 0.5 }

func okReport(rev string) step {
	return step{rep: Report{Revision: rev, Observed: true, Plan: &reconcile.Plan{Revision: rev}}}
}

// runFor runs l in a synctest bubble for d of fake time, then stops it.
func runFor(t *testing.T, l *Loop, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	time.Sleep(d)
	synctest.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestLoopSchedule(t *testing.T) {
	transient := errors.New("engine unreachable")
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
		run   time.Duration
		want  []time.Duration
		// headMoves, when set, gives the loop a Head that answers r1, then r2 from then on.
		headMoves time.Duration
	}{
		{
			name:  "success waits the interval",
			cfg:   Config{Interval: time.Minute},
			steps: []step{okReport("r1")},
			run:   150 * time.Second,
			want:  []time.Duration{0, time.Minute, 2 * time.Minute},
		},
		{
			name:  "transient errors back off exponentially up to the cap",
			cfg:   Config{Interval: time.Hour, BackoffMin: 2 * time.Second, BackoffMax: 10 * time.Second},
			steps: []step{{err: transient}},
			run:   40 * time.Second,
			// waits 1.5, 3, 6, 7.5, 7.5, 7.5 s (3/4 of 2, 4, 8, 10, 10, 10)
			want: []time.Duration{0, 1500 * time.Millisecond, 4500 * time.Millisecond, 10500 * time.Millisecond,
				18 * time.Second, 25500 * time.Millisecond, 33 * time.Second},
		},
		{
			name:  "a success resets the backoff",
			cfg:   Config{Interval: 20 * time.Second, BackoffMin: 2 * time.Second},
			steps: []step{{err: transient}, {err: transient}, okReport("r1"), {err: transient}},
			run:   30 * time.Second,
			// 1.5 s after the error at 24.5 s, not 6 s: the count started again
			want: []time.Duration{0, 1500 * time.Millisecond, 4500 * time.Millisecond, 24500 * time.Millisecond, 26 * time.Second, 29 * time.Second},
		},
		{
			name:  "waiting looks again after WaitDelay",
			cfg:   Config{Interval: time.Minute, WaitDelay: 5 * time.Second},
			steps: []step{{err: Wait(reconcile.ErrNotConverged)}, {err: Wait(reconcile.ErrNotConverged)}, okReport("r1")},
			run:   70 * time.Second,
			want:  []time.Duration{0, 5 * time.Second, 10 * time.Second, 70 * time.Second},
		},
		{
			name:      "stalled waits for a new revision",
			cfg:       Config{Interval: 10 * time.Second},
			headMoves: 35 * time.Second,
			steps:     []step{{rep: Report{Revision: "r1"}, err: Stall(errors.New("bad manifest"))}, okReport("r2")},
			run:       55 * time.Second,
			// ticks at 10, 20, 30 find r1 still there; the tick at 40 sees r2.
			want: []time.Duration{0, 40 * time.Second, 50 * time.Second},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newScript(tc.steps...)
				cfg := tc.cfg
				cfg.Reconcile, cfg.Rand = s.reconcile, half
				if tc.headMoves > 0 {
					start := time.Now()
					cfg.Head = func(context.Context) (string, error) {
						if time.Since(start) < tc.headMoves {
							return "r1", nil
						}
						return "r2", nil
					}
				}
				runFor(t, New(cfg), tc.run)
				if diff := cmp.Diff(tc.want, s.times()); diff != "" {
					t.Errorf("reconcile times (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	for _, r := range []float64{0, 0.25, 0.5, 0.999} {
		l := New(Config{Reconcile: newScript(okReport("r")).reconcile, Interval: time.Minute, Jitter: 0.1, Rand: func() float64 { return r }})
		d := l.jittered(time.Minute)
		if d < 54*time.Second || d > 66*time.Second {
			t.Errorf("rand %v: jittered interval %s outside 54s..66s", r, d)
		}
		for n := 1; n < 40; n++ {
			b := l.backoff(n)
			if b < time.Second || b > 5*time.Minute {
				t.Errorf("rand %v: backoff(%d) = %s outside 1s..5m", r, n, b)
			}
		}
	}
}

// blocker is a ReconcileFunc that blocks until released, to hold a reconcile in flight.
type blocker struct {
	script  *script
	entered chan struct{}
	release chan struct{}
}

func (b *blocker) reconcile(ctx context.Context, req Request) (Report, error) {
	rep, err := b.script.reconcile(ctx, req)
	b.entered <- struct{}{}
	<-b.release
	return rep, err
}

func TestTriggersCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &blocker{script: newScript(okReport("r1")), entered: make(chan struct{}), release: make(chan struct{})}
		l := New(Config{Reconcile: b.reconcile, Interval: time.Hour, Rand: half})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()

		<-b.entered // the start reconcile is in flight
		for range 5 {
			l.Trigger("webhook")
		}
		l.Trigger("sync")
		b.release <- struct{}{}
		<-b.entered // exactly one follow-up
		b.release <- struct{}{}
		synctest.Wait() // nothing else runs: the loop sleeps until the interval
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"start", "webhook"}, b.script.triggers()); diff != "" {
			t.Errorf("triggers (-want +got):\n%s", diff)
		}
	})
}

func TestTriggerBypassesBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript(step{err: errors.New("down")}, okReport("r1"))
		l := New(Config{Reconcile: s.reconcile, Interval: time.Hour, BackoffMin: time.Minute, Rand: half})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		time.Sleep(time.Second)
		l.Trigger("sync")
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		<-done
		if diff := cmp.Diff([]time.Duration{0, time.Second}, s.times()); diff != "" {
			t.Errorf("reconcile times (-want +got):\n%s", diff)
		}
	})
}

func TestShutdownFinishesTheChangeInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		entered := make(chan struct{})
		var wrote, startedAnother bool
		var ctxErr error
		reconcileFn := func(ctx context.Context, req Request) (Report, error) {
			close(entered)
			<-req.Stop // SIGTERM arrives while the first write is in flight
			time.Sleep(2 * time.Second)
			ctxErr = ctx.Err()
			wrote = true
			select {
			case <-req.Stop:
			default:
				startedAnother = true
			}
			return Report{}, errors.New("stopped before the next change")
		}
		l := New(Config{Reconcile: reconcileFn, ShutdownGrace: time.Minute})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		<-entered
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !wrote || startedAnother {
			t.Errorf("wrote %t, started another %t; want the write finished and nothing after", wrote, startedAnother)
		}
		if ctxErr != nil {
			t.Errorf("the reconcile's context was cancelled within the grace period: %v", ctxErr)
		}
	})
}

func TestShutdownGraceCancelsAStuckReconcile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		entered := make(chan struct{})
		var took time.Duration
		reconcileFn := func(ctx context.Context, req Request) (Report, error) {
			close(entered)
			start := time.Now()
			<-ctx.Done() // ignores Stop
			took = time.Since(start)
			return Report{}, ctx.Err()
		}
		l := New(Config{Reconcile: reconcileFn, ShutdownGrace: 7 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		<-entered
		cancel()
		<-done
		if took != 7*time.Second {
			t.Errorf("the stuck reconcile was cancelled after %s, want the 7s grace", took)
		}
	})
}

type fakeLeadership struct {
	mu     sync.Mutex
	leader bool
}

func (f *fakeLeadership) IsLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}
func (f *fakeLeadership) Leader() string { return "other-replica" }

func TestFollowerObservesWithoutApplying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript(okReport("r1"))
		lead := &fakeLeadership{}
		l := New(Config{Reconcile: s.reconcile, Interval: time.Minute, Rand: half, Leadership: lead, Holder: "me"})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		synctest.Wait()
		if st := l.Status(); st.Role != Follower || st.Leader != "other-replica" || !st.Ready {
			t.Errorf("follower status: role %q leader %q ready %t", st.Role, st.Leader, st.Ready)
		}
		lead.mu.Lock()
		lead.leader = true
		lead.mu.Unlock()
		l.Trigger("leader")
		synctest.Wait()
		cancel()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.calls) != 2 || s.calls[0].req.Apply || !s.calls[1].req.Apply {
			t.Fatalf("calls %+v: want a dry one as follower, then one that applies as leader", s.calls)
		}
		if st := l.Status(); st.Role != Leader {
			t.Errorf("role %q after taking the lease, want leader", st.Role)
		}
	})
}

func TestOnceReturnsTheError(t *testing.T) {
	s := newScript(step{err: Stall(errors.New("bad manifest"))})
	l := New(Config{Reconcile: s.reconcile})
	err := l.Once(t.Context())
	if err == nil || ClassOf(err) != Stalled {
		t.Fatalf("Once = %v, want the stalled error", err)
	}
	if st := l.Status(); st.Phase != PhaseStalled || st.LastError == nil || st.LastError.Class != Stalled {
		t.Errorf("status after a stalled once: phase %q, last error %+v", st.Phase, st.LastError)
	}
}
