package daemon

import (
	"context"

	"github.com/capstan-dev/capstan/reconcile"
)

// ReconcileFunc performs one reconcile: load the source, observe the live state, plan,
// and — when req.Apply — apply the plan. It returns what it saw even when it fails
// part-way: a Report with Observed set is still used for health and drift.
//
// ctx is not cancelled when the loop is asked to stop; req.Stop is closed instead, and
// the func should then finish the write in flight and start no other (see the package
// doc, Shutdown).
type ReconcileFunc func(ctx context.Context, req Request) (Report, error)

// Request tells a ReconcileFunc what this reconcile is for.
type Request struct {
	// Apply is false on a follower (another replica holds the lease): observe and plan
	// only, so status stays current, and write nothing.
	Apply bool
	// Trigger says why the reconcile runs: "start", "interval", "webhook", "sync",
	// "file", "leader", "retry"...
	Trigger string
	// Stop is closed when the loop is asked to shut down.
	Stop <-chan struct{}
}

// Report is what one reconcile saw and did.
type Report struct {
	// Revision is the source revision the reconcile planned from; "" when the source
	// could not be loaded.
	Revision string
	// Observed is set once the live state was read: readiness depends on it.
	Observed bool
	// Plan is the plan built from Revision, nil when none was built.
	Plan *reconcile.Plan
	// Result is the outcome of applying Plan, nil when nothing was applied (a follower,
	// an empty plan, a refused plan).
	Result *reconcile.Result
	// Stacks are the desired stacks with their live services, after the apply.
	Stacks []StackReport
	// Routes are the desired SLB routes.
	Routes []RouteReport
	// Drift lists objects whose live state departs from what capstan last applied.
	Drift []Drift
	// Warnings are the source's and the planner's warnings.
	Warnings []string
}

// StackReport is one desired stack as observed.
type StackReport struct {
	Name string `json:"name"`
	// Revision is the revision the stack's live objects were applied from (their
	// dev.capstan.revision label), "" when unknown.
	Revision string          `json:"revision,omitempty"`
	Services []ServiceReport `json:"services"`
}

// ServiceReport is one service's tasks and rollout.
type ServiceReport struct {
	Name          string           `json:"name"`
	Health        reconcile.Health `json:"health"`
	RunningTasks  uint64           `json:"runningTasks"`
	DesiredTasks  uint64           `json:"desiredTasks"`
	UpdateState   string           `json:"updateState,omitempty"`
	UpdateMessage string           `json:"updateMessage,omitempty"`
	// Message says why the service is Degraded when no rollout says it: it stayed
	// Progressing past the progress deadline (Config.ProgressDeadline).
	Message string `json:"message,omitempty"`
}

// RouteReport is one SLB route: which listener sends traffic to which service.
type RouteReport struct {
	Name         string `json:"name"`
	Key          string `json:"key"`
	Stack        string `json:"stack"`
	Service      string `json:"service"`
	TargetPort   uint32 `json:"targetPort"`
	LoadBalancer string `json:"loadBalancer"`
	Listener     string `json:"listener"` // protocol:port
	// Reconciled is false when this build or configuration has no SLB sink.
	Reconciled bool `json:"reconciled"`
}

// Drift is one object whose live state departs from what capstan last applied.
type Drift struct {
	Key   string `json:"key"`
	Stack string `json:"stack,omitempty"`
	// Reverted is true when the plan puts the object back (the stack's selfHeal).
	Reverted bool `json:"reverted"`
	// Diff holds the differing fields, Git value (After) and live value (Before),
	// already masked where secret.
	Diff []reconcile.FieldDiff `json:"diff"`
}

// DriftFromPlan lists p's drift with the field differences the plan recorded.
func DriftFromPlan(p reconcile.Plan) []Drift {
	byKey := map[string]reconcile.Change{}
	for _, c := range p.Changes {
		byKey[c.Key.String()] = c
	}
	out := make([]Drift, 0, len(p.Drift))
	for _, k := range p.Drift {
		d := Drift{Key: k.String(), Diff: []reconcile.FieldDiff{}}
		if c, ok := byKey[k.String()]; ok {
			d.Reverted = c.Action != reconcile.NoOp
			d.Diff = append(d.Diff, c.Diff...)
			d.Stack = changeStack(c)
		}
		out = append(out, d)
	}
	return out
}

func changeStack(c reconcile.Change) string {
	if c.After != nil {
		return c.After.Stack
	}
	if c.Before != nil {
		return c.Before.Stack
	}
	return ""
}
