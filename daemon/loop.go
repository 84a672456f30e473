package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/capstan-dev/capstan/reconcile"
)

// Config configures a Loop. Only Reconcile is required.
type Config struct {
	Reconcile ReconcileFunc
	// Instance is the installation's name (--instance); Holder identifies this replica.
	Instance string
	Holder   string

	// Interval is the time between reconciles when nothing triggers one; default 60 s.
	// Each wait is randomised by ±Jitter (a fraction, default 0.1) so replicas and
	// installations sharing an engine do not beat in step.
	Interval time.Duration
	Jitter   float64
	// WaitDelay is how soon the loop looks again after a Waiting error; default 10 s,
	// never more than Interval.
	WaitDelay time.Duration
	// BackoffMin and BackoffMax bound the retry delay after transient errors: it doubles
	// from BackoffMin with each consecutive failure up to BackoffMax (defaults 2 s and
	// 5 min), with jitter.
	BackoffMin, BackoffMax time.Duration
	// ShutdownGrace is how long a reconcile in flight may go on after Run's context is
	// cancelled before its own context is cancelled too; default 25 s.
	ShutdownGrace time.Duration

	// Classify names the class of an error (or "" to defer to Stall/Wait marks and the
	// Transient default). It is called on each error of a joined error separately.
	Classify func(error) Class
	// Head, when set, returns the source's current revision cheaply. While stalled, an
	// interval tick only reconciles when Head moved away from the stalled revision.
	Head func(ctx context.Context) (string, error)

	// Leadership, when set, makes a follower reconcile without applying.
	Leadership Leadership
	Metrics    *Metrics
	Notifier   *Notifier
	Logger     *slog.Logger
	// History is how many reconciles status remembers; default 20.
	History int
	// ProgressDeadline is how long a service may stay Progressing with no rollout under
	// way (fewer tasks running than desired: tasks that fail to start, a placement no
	// node satisfies, restarts Swarm gave up on) before status calls it Degraded;
	// default 10 min. Swarm's counts cannot tell a task still starting from one that will
	// never run, so time has to.
	ProgressDeadline time.Duration
	// Rand returns a float in [0, 1) for jitter; default math/rand/v2.
	Rand func() float64
}

// Loop reconciles one revision at a time, on an interval and on triggers.
type Loop struct {
	cfg      Config
	log      *slog.Logger
	triggers chan string

	mu    sync.Mutex
	state *state
	// what the scheduler knows between reconciles
	failures  int    // consecutive transient failures
	stalledAt string // revision a stalled reconcile was at
	stalled   bool
}

// New returns a Loop; call Run.
func New(cfg Config) *Loop {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Jitter < 0 || cfg.Jitter >= 1 {
		cfg.Jitter = 0
	} else if cfg.Jitter == 0 {
		cfg.Jitter = 0.1
	}
	if cfg.WaitDelay <= 0 {
		cfg.WaitDelay = 10 * time.Second
	}
	cfg.WaitDelay = min(cfg.WaitDelay, cfg.Interval)
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 2 * time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 25 * time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 20
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Instance == "" {
		cfg.Instance = "capstan"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ProgressDeadline <= 0 {
		cfg.ProgressDeadline = 10 * time.Minute
	}
	st := newState(cfg.Instance, cfg.Holder)
	st.progressDeadline = cfg.ProgressDeadline
	return &Loop{cfg: cfg, log: log, triggers: make(chan string, 1), state: st}
}

// Trigger asks for a reconcile as soon as the one in flight (if any) is done. Triggers
// that arrive while one is already pending coalesce into it. It never blocks.
func (l *Loop) Trigger(reason string) {
	l.cfg.Metrics.trigger(reason)
	select {
	case l.triggers <- reason:
	default:
	}
}

// Status returns a copy of the loop's current status.
func (l *Loop) Status() Status {
	l.mu.Lock()
	st := l.state.snapshot()
	l.mu.Unlock()
	st.Role, st.Leader = l.role()
	return st
}

// Ready reports whether the live state has been observed at least once.
func (l *Loop) Ready() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.status.Ready
}

func (l *Loop) role() (Role, string) {
	if l.cfg.Leadership == nil {
		return Leader, l.cfg.Holder
	}
	if l.cfg.Leadership.IsLeader() {
		return Leader, l.cfg.Holder
	}
	return Follower, l.cfg.Leadership.Leader()
}

// Run reconciles at once, then on every interval tick and trigger, until ctx is done.
// It returns nil when ctx ends; a reconcile in flight then finishes first (see the
// package doc).
func (l *Loop) Run(ctx context.Context) error {
	l.cfg.Metrics.trigger("start")
	timer := time.NewTimer(0)
	defer timer.Stop()
	reason := "start"
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case reason = <-l.triggers:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		if reason == "interval" && l.skipStalled(ctx) {
			timer.Reset(l.jittered(l.cfg.Interval))
			l.setNext(l.cfg.Interval)
			continue
		}
		class, _ := l.reconcile(ctx, reason)
		if ctx.Err() != nil {
			return nil
		}
		delay, next := l.delayAfter(class)
		l.setNext(delay)
		timer.Reset(delay)
		reason = next
	}
}

// Once runs a single reconcile and returns its error, for `capstan run --once`.
func (l *Loop) Once(ctx context.Context) error {
	_, err := l.reconcile(ctx, "once")
	return err
}

// skipStalled reports whether an interval tick can be skipped: the loop is stalled and
// the source still shows the stalled revision.
func (l *Loop) skipStalled(ctx context.Context) bool {
	l.mu.Lock()
	stalled, at := l.stalled, l.stalledAt
	l.mu.Unlock()
	if !stalled || l.cfg.Head == nil || at == "" {
		return false
	}
	head, err := l.cfg.Head(ctx)
	if err != nil {
		l.log.Warn("source head check failed while stalled", "error", err.Error())
		return true
	}
	if head == at {
		l.log.Debug("still stalled: the source has not moved", "revision", at)
		return true
	}
	return false
}

// delayAfter is the wait before the next reconcile, and what that reconcile's trigger
// will be called.
func (l *Loop) delayAfter(class Class) (time.Duration, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch class {
	case Transient:
		l.failures++
		return l.backoff(l.failures), "retry"
	case Waiting:
		l.failures = 0
		return l.jittered(l.cfg.WaitDelay), "retry"
	}
	l.failures = 0
	return l.jittered(l.cfg.Interval), "interval"
}

// backoff is BackoffMin·2^(n-1) capped at BackoffMax, then jittered into its upper
// half, so retries from many replicas spread out but never come sooner than half.
func (l *Loop) backoff(n int) time.Duration {
	d := l.cfg.BackoffMin
	for i := 1; i < n && d < l.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, l.cfg.BackoffMax)
	return d/2 + time.Duration(l.cfg.Rand()*float64(d/2))
}

func (l *Loop) jittered(d time.Duration) time.Duration {
	f := 1 + l.cfg.Jitter*(2*l.cfg.Rand()-1)
	return time.Duration(float64(d) * f)
}

func (l *Loop) setNext(d time.Duration) {
	l.mu.Lock()
	l.state.status.NextReconcileTime = timePtr(time.Now().Add(d).UTC())
	l.mu.Unlock()
}

func (l *Loop) setPhase(p Phase, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := &l.state.status
	if st.Phase != p {
		st.Phase, st.PhaseTransitionTime = p, time.Now().UTC()
	}
	st.Message = msg
}

// reconcile runs the ReconcileFunc once and records what happened.
func (l *Loop) reconcile(ctx context.Context, trigger string) (Class, error) {
	role, _ := l.role()
	apply := role == Leader
	l.cfg.Metrics.setLeader(apply)
	l.setPhase(PhaseReconciling, "reconciling ("+trigger+")")

	// The reconcile's context outlives ctx by ShutdownGrace: a write in flight finishes.
	stop := make(chan struct{})
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		close(stop)
		grace := time.NewTimer(l.cfg.ShutdownGrace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			cancel()
		}
	}()
	start := time.Now()
	rep, err := l.cfg.Reconcile(rctx, Request{Apply: apply, Trigger: trigger, Stop: stop})
	took := time.Since(start)
	close(done)
	cancel()

	class := classify(err, l.cfg.Classify)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Cut off by shutdown: not worth a notice.
		class = Transient
	}
	now := time.Now().UTC()

	l.mu.Lock()
	l.state.applyReport(now, rep, err, class, apply)
	l.remember(HistoryEntry{Start: start.UTC(), Duration: took, Trigger: trigger, Role: role, Revision: rep.Revision,
		Result: resultLabel(class), Summary: summary(rep), Applied: appliedCount(rep), Drift: len(rep.Drift), Error: errText(err)})
	if class == Stalled {
		l.stalled, l.stalledAt = true, rep.Revision
	} else {
		l.stalled, l.stalledAt = false, ""
	}
	snap := l.state.snapshot()
	l.mu.Unlock()

	phase, msg := l.describe(class, err)
	l.setPhase(phase, msg)
	l.cfg.Metrics.reconciled(took, resultLabel(class), rep, snap)
	l.logReconcile(rctx, trigger, took, rep, err, class, msg, apply)
	if l.cfg.Notifier != nil && apply && ctx.Err() == nil {
		l.cfg.Notifier.Enqueue(l.cfg.Notifier.Decide(now, rep, err, class)...)
		if rep.Observed && rep.Plan != nil {
			l.cfg.Notifier.Enqueue(l.cfg.Notifier.DecideHealth(now, snap)...)
		}
	}
	return class, err
}

func (l *Loop) remember(h HistoryEntry) {
	l.state.history = append(l.state.history, h)
	if n := len(l.state.history) - l.cfg.History; n > 0 {
		l.state.history = append([]HistoryEntry(nil), l.state.history[n:]...)
	}
}

// describe says what the loop does next, for status and logs.
func (l *Loop) describe(class Class, err error) (Phase, string) {
	switch class {
	case "":
		return PhaseReady, fmt.Sprintf("reconciled; next in about %s", l.cfg.Interval)
	case Stalled:
		return PhaseStalled, "stalled: needs a human; waiting for a new revision or POST /api/v1/sync"
	case Waiting:
		return PhaseWaiting, fmt.Sprintf("waiting for convergence; looking again in about %s", l.cfg.WaitDelay)
	}
	l.mu.Lock()
	n := l.failures + 1
	l.mu.Unlock()
	d := min(l.cfg.BackoffMin<<min(n-1, 30), l.cfg.BackoffMax)
	return PhaseRetrying, fmt.Sprintf("transient error (%d in a row); retrying in %s–%s", n, d/2, d)
}

func (l *Loop) logReconcile(ctx context.Context, trigger string, took time.Duration, rep Report, err error, class Class, next string, apply bool) {
	attrs := []slog.Attr{
		slog.String("trigger", trigger), slog.String("revision", rep.Revision),
		slog.Duration("took", took), slog.Bool("leader", apply),
	}
	if rep.Plan != nil {
		s := rep.Plan.Summary()
		attrs = append(attrs, slog.Int("add", s.Add), slog.Int("change", s.Change), slog.Int("destroy", s.Destroy),
			slog.Int("applied", appliedCount(rep)))
	}
	attrs = append(attrs, slog.Int("drift", len(rep.Drift)))
	for _, d := range rep.Drift {
		l.log.LogAttrs(ctx, slog.LevelWarn, "drift", slog.String("key", d.Key), slog.String("stack", d.Stack),
			slog.Bool("reverted", d.Reverted && apply), slog.Any("fields", driftFields(d)))
	}
	for _, w := range rep.Warnings {
		l.log.LogAttrs(ctx, slog.LevelDebug, "warning", slog.String("message", w))
	}
	if err == nil {
		l.log.LogAttrs(ctx, slog.LevelInfo, "reconciled", attrs...)
		return
	}
	attrs = append(attrs, slog.String("class", string(class)), slog.String("next", next), slog.String("error", err.Error()))
	level := slog.LevelError
	if class == Waiting {
		level = slog.LevelWarn
	}
	l.log.LogAttrs(ctx, level, "reconcile failed", attrs...)
}

// driftField is one drifted field as logged: Git's value against the live one.
type driftField struct {
	Path string `json:"path"`
	Git  string `json:"git"`
	Live string `json:"live"`
}

func driftFields(d Drift) []driftField {
	out := make([]driftField, 0, len(d.Diff))
	for _, f := range d.Diff {
		out = append(out, driftField{Path: f.Path, Git: f.After, Live: f.Before})
	}
	return out
}

func summary(rep Report) reconcile.Summary {
	if rep.Plan == nil {
		return reconcile.Summary{}
	}
	return rep.Plan.Summary()
}

func appliedCount(rep Report) int {
	if rep.Result == nil {
		return 0
	}
	n := 0
	for _, r := range rep.Result.Changes {
		if r.Outcome == reconcile.Applied {
			n++
		}
	}
	return n
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
