package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/capstan-dev/capstan/resource"
)

// StatusReader is implemented by sinks whose changes take time to take effect (Swarm
// services roll out tasks). Apply polls it to wait for convergence.
type StatusReader interface {
	ServiceStatus(ctx context.Context, name string) (resource.ServiceStatus, error)
}

// ApplyOptions tunes Apply. The zero value is usable: DefaultApplyOptions fills the rest.
type ApplyOptions struct {
	// Progress receives human-readable progress; nil discards it.
	Progress io.Writer
	// TTY rewrites one status line per service instead of printing a line per change.
	TTY bool
	// ConvergeTimeout bounds the wait for each service to converge; 0 skips waiting.
	ConvergeTimeout time.Duration
	// PollInterval is how often convergence is checked.
	PollInterval time.Duration
	// RolloutGrace is how long an updated service may show no rollout before Apply
	// concludes Swarm had nothing to roll (a change that does not touch tasks).
	RolloutGrace time.Duration
	// StackDeps maps a stack to the stacks it depends on (spec.dependsOn): a stack's
	// changes wait for its dependencies to converge and are skipped if one failed.
	StackDeps map[string][]string
	Logger    *slog.Logger
}

// DefaultApplyOptions waits up to five minutes per service, polling twice a second.
func DefaultApplyOptions() ApplyOptions {
	return ApplyOptions{ConvergeTimeout: 5 * time.Minute, PollInterval: 500 * time.Millisecond, RolloutGrace: 3 * time.Second}
}

// Outcome is what happened to one change.
type Outcome string

// Outcomes of a change.
const (
	Applied   Outcome = "applied"
	Failed    Outcome = "failed"
	Skipped   Outcome = "skipped" // not attempted because something it depends on failed
	Unhandled Outcome = "unhandled"
)

// ChangeResult records the fate of one change.
type ChangeResult struct {
	Change  Change
	Outcome Outcome
	Err     error
}

// Result is the record of one Apply.
type Result struct {
	Changes []ChangeResult
}

// Failed returns the results that did not apply.
func (r Result) Failed() []ChangeResult {
	var out []ChangeResult
	for _, c := range r.Changes {
		if c.Outcome == Failed || c.Outcome == Skipped {
			out = append(out, c)
		}
	}
	return out
}

// ChangeError is a change that failed; it names the key and wraps the cause.
type ChangeError struct {
	Key resource.Key
	Err error
}

func (e *ChangeError) Error() string { return e.Key.String() + ": " + e.Err.Error() }
func (e *ChangeError) Unwrap() error { return e.Err }

// ErrRolledBack is wrapped by the error of an update that Swarm rolled back or paused.
var ErrRolledBack = errors.New("swarm rolled the update back")

// ErrNotConverged is wrapped by the error of a change that did not converge in time.
var ErrNotConverged = errors.New("did not converge")

// Apply carries out plan through sinks (keyed by Sink.Name), in plan order, and waits for
// changed services to converge. It is the only code in capstan that writes.
//
// A failed change stops the rest of its stack and every stack that depends on it (by the
// plan's stack dependencies); unrelated stacks go on. The returned error joins every
// ChangeError; Result says what happened to each change.
func Apply(ctx context.Context, plan Plan, sinks map[string]Sink, opts ApplyOptions) (Result, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultApplyOptions().PollInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	a := &applier{ctx: ctx, opts: opts, out: out, sinks: sinks, plan: plan, failedStacks: map[string]bool{}, pending: map[string][]Change{}}
	return a.run()
}

type applier struct {
	ctx          context.Context
	opts         ApplyOptions
	out          io.Writer
	sinks        map[string]Sink
	plan         Plan
	result       Result
	errs         []error
	failedStacks map[string]bool
	// pending holds applied service changes per stack whose convergence is not yet checked.
	pending map[string][]Change
}

func (a *applier) run() (Result, error) {
	for _, c := range a.plan.Changes {
		if c.Action == NoOp {
			continue
		}
		if err := a.ctx.Err(); err != nil {
			// Cancelled (SIGTERM, a lost lease): start nothing more.
			a.record(c, Skipped, fmt.Errorf("not applied: %w", err))
			continue
		}
		stack := changeStack(c)
		// Before touching a stack, the stacks it depends on must have converged.
		for _, dep := range a.dependencies(stack) {
			a.settle(dep)
		}
		if blocker := a.blockedBy(stack); blocker != "" {
			a.record(c, Skipped, fmt.Errorf("not applied: stack %q failed", blocker))
			continue
		}
		// Deletes come after every create and update: settle what rolled out first, so a
		// delete never races a rollout that still needs the deleted object's peers.
		if c.Action == Delete {
			a.settleAll()
			if a.failedStacks[stack] {
				a.record(c, Skipped, fmt.Errorf("not applied: stack %q failed", stack))
				continue
			}
		}
		a.apply(c, stack)
	}
	a.settleAll()
	return a.result, errors.Join(a.errs...)
}

func (a *applier) apply(c Change, stack string) {
	sink, ok := a.sinks[c.Key.Sink]
	if !ok {
		a.record(c, Unhandled, nil)
		fmt.Fprintf(a.out, "%c %s: skipped, no %s sink configured\n", c.Action, c.Key, c.Key.Sink)
		return
	}
	start := time.Now()
	if err := sink.Apply(a.ctx, c); err != nil {
		a.fail(c, stack, err)
		return
	}
	a.opts.Logger.LogAttrs(a.ctx, slog.LevelInfo, "applied", slog.String("key", c.Key.String()),
		slog.String("action", c.Action.String()), slog.Duration("took", time.Since(start)))
	fmt.Fprintf(a.out, "%c %s: %s\n", c.Action, c.Key, pastTense(c.Action))
	if c.Key.Kind == resource.KindService && c.Action != Delete && a.opts.ConvergeTimeout > 0 {
		if _, ok := sink.(StatusReader); ok {
			a.pending[stack] = append(a.pending[stack], c)
			return
		}
	}
	a.record(c, Applied, nil)
}

func (a *applier) fail(c Change, stack string, err error) {
	a.record(c, Failed, err)
	a.failedStacks[stack] = true
	fmt.Fprintf(a.out, "%c %s: FAILED: %v\n", c.Action, c.Key, err)
}

func (a *applier) record(c Change, o Outcome, err error) {
	if err != nil {
		err = &ChangeError{Key: c.Key, Err: err}
		a.errs = append(a.errs, err)
	}
	a.result.Changes = append(a.result.Changes, ChangeResult{Change: c, Outcome: o, Err: err})
}

// dependencies lists the stacks stack depends on, directly or not.
func (a *applier) dependencies(stack string) []string {
	seen := map[string]bool{}
	var walk func(string)
	var out []string
	walk = func(s string) {
		for _, d := range a.opts.StackDeps[s] {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
				walk(d)
			}
		}
	}
	walk(stack)
	return out
}

// blockedBy names a failed stack that stack is or depends on, or "".
func (a *applier) blockedBy(stack string) string {
	if a.failedStacks[stack] {
		return stack
	}
	for _, d := range a.dependencies(stack) {
		if a.failedStacks[d] {
			return d
		}
	}
	return ""
}

func (a *applier) settleAll() {
	stacks := make([]string, 0, len(a.pending))
	for s := range a.pending {
		stacks = append(stacks, s)
	}
	sort.Strings(stacks)
	for _, s := range stacks {
		a.settle(s)
	}
}

// settle waits for every pending service change of stack to converge.
func (a *applier) settle(stack string) {
	changes := a.pending[stack]
	delete(a.pending, stack)
	for _, c := range changes {
		if err := a.waitService(c); err != nil {
			a.fail(c, stack, err)
			continue
		}
		a.record(c, Applied, nil)
	}
}

// expectsRollout reports whether Swarm will roll tasks for c: a new service, or an update
// that touches the task template or the endpoint.
func expectsRollout(c Change) bool {
	switch c.Action {
	case Create, Replace:
		return true
	case Update:
		if len(c.Diff) == 0 {
			return true // unknown: assume the worst and wait for the rollout
		}
		for _, d := range c.Diff {
			if strings.HasPrefix(d.Path, "TaskTemplate") || strings.HasPrefix(d.Path, "EndpointSpec") {
				return true
			}
		}
	}
	return false
}

func (a *applier) waitService(c Change) error {
	reader := a.sinks[c.Key.Sink].(StatusReader)
	ctx, cancel := context.WithTimeout(a.ctx, a.opts.ConvergeTimeout)
	defer cancel()
	rollout := c.Action == Update && expectsRollout(c)
	start := time.Now()
	var last resource.ServiceStatus
	var lastLine string
	ticker := time.NewTicker(a.opts.PollInterval)
	defer ticker.Stop()
	for {
		st, err := reader.ServiceStatus(ctx, c.Key.Name)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("read status: %w", err)
		}
		if err == nil {
			last = st
			line := fmt.Sprintf("%s: %d/%d tasks running", c.Key, st.RunningTasks, st.DesiredTasks)
			if st.UpdateState != "" {
				line += ", update " + st.UpdateState
			}
			if line != lastLine {
				if a.opts.TTY {
					fmt.Fprintf(a.out, "\r\033[K%s", line)
				} else {
					fmt.Fprintln(a.out, "  "+line)
				}
				lastLine = line
			}
			switch st.UpdateState {
			case "rollback_completed", "rollback_paused", "paused", "rollback_started":
				a.endLine()
				msg := st.UpdateMessage
				if msg == "" {
					msg = st.UpdateState
				}
				return fmt.Errorf("%w: %s (%s)", ErrRolledBack, st.UpdateState, msg)
			}
			running := st.DesiredTasks > 0 && st.RunningTasks == st.DesiredTasks
			if st.DesiredTasks == 0 && st.RunningTasks == 0 {
				running = true // scaled to zero
			}
			rolled := !rollout || st.UpdateState == "completed" ||
				(st.UpdateState == "" && time.Since(start) >= a.opts.RolloutGrace)
			if running && rolled {
				a.endLine()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			a.endLine()
			if a.ctx.Err() != nil {
				return a.ctx.Err()
			}
			return fmt.Errorf("%w within %s: %d/%d tasks running, update state %q",
				ErrNotConverged, a.opts.ConvergeTimeout, last.RunningTasks, last.DesiredTasks, last.UpdateState)
		case <-ticker.C:
		}
	}
}

func (a *applier) endLine() {
	if a.opts.TTY {
		fmt.Fprintln(a.out)
	}
}

func changeStack(c Change) string {
	if c.After != nil {
		return c.After.Stack
	}
	if c.Before != nil {
		return c.Before.Stack
	}
	return ""
}

func pastTense(a Action) string {
	switch a {
	case Create:
		return "created"
	case Update:
		return "updated"
	case Scale:
		return "scaled"
	case Replace:
		return "replaced"
	case Delete:
		return "deleted"
	}
	return "done"
}
