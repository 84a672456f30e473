package daemon

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/capstan-dev/capstan/reconcile"
)

// Phase is where the loop stands, in Flux's vocabulary.
type Phase string

// Phases.
const (
	// PhasePending: nothing has been reconciled yet.
	PhasePending Phase = "Pending"
	// PhaseReconciling: a reconcile is running.
	PhaseReconciling Phase = "Reconciling"
	// PhaseReady: the last reconcile succeeded.
	PhaseReady Phase = "Ready"
	// PhaseStalled: the last reconcile needs a human (see Stalled).
	PhaseStalled Phase = "Stalled"
	// PhaseWaiting: changes were written and are converging.
	PhaseWaiting Phase = "Waiting"
	// PhaseRetrying: the last reconcile failed transiently and will be retried.
	PhaseRetrying Phase = "Retrying"
)

// SyncState says whether a stack or route matches the source.
type SyncState string

// Sync states.
const (
	Synced    SyncState = "Synced"
	OutOfSync SyncState = "OutOfSync"
	SyncError SyncState = "Failed"
	Unknown   SyncState = "Unknown"
)

// Role is this replica's part in leader election.
type Role string

// Roles.
const (
	Leader   Role = "leader"
	Follower Role = "follower"
)

// Status is the daemon's state as /api/v1/status returns it. Times are UTC; a nil time
// means "never".
type Status struct {
	Instance string `json:"instance"`
	// Holder identifies this replica; Leader the replica holding the lease ("" unknown).
	Holder string `json:"holder,omitempty"`
	Role   Role   `json:"role"`
	Leader string `json:"leader,omitempty"`
	Ready  bool   `json:"ready"`
	Phase  Phase  `json:"phase"`
	// Message says what the loop does next.
	Message             string    `json:"message"`
	PhaseTransitionTime time.Time `json:"phaseTransitionTime"`
	// Revision is the last revision applied (or found already applied) without error;
	// SourceRevision the last revision the source yielded, applied or not.
	Revision          string        `json:"revision"`
	SourceRevision    string        `json:"sourceRevision"`
	LastError         *ErrorStatus  `json:"lastError,omitempty"`
	LastReconcileTime *time.Time    `json:"lastReconcileTime,omitempty"`
	LastSuccessTime   *time.Time    `json:"lastSuccessTime,omitempty"`
	NextReconcileTime *time.Time    `json:"nextReconcileTime,omitempty"`
	Stacks            []StackStatus `json:"stacks"`
	Routes            []RouteStatus `json:"routes"`
	// Drift is every drifted object at the last observe (also listed per stack).
	Drift    []Drift     `json:"drift"`
	Warnings []string    `json:"warnings"`
	LastPlan *PlanStatus `json:"lastPlan,omitempty"`
	// LastChanges is the most recent plan that had changes (LastPlan, when it had).
	LastChanges *PlanStatus    `json:"lastChanges,omitempty"`
	History     []HistoryEntry `json:"history"`
}

// ErrorStatus is the last reconcile error.
type ErrorStatus struct {
	Class    Class     `json:"class"`
	Message  string    `json:"message"`
	Revision string    `json:"revision,omitempty"`
	Time     time.Time `json:"time"`
}

// StackStatus is one stack: revision, sync state, health, drift, last error.
type StackStatus struct {
	Name     string           `json:"name"`
	Revision string           `json:"revision"`
	Sync     SyncState        `json:"sync"`
	Health   reconcile.Health `json:"health"`
	Services []ServiceReport  `json:"services"`
	Drift    []Drift          `json:"drift"`
	// LastError is the error of the stack's last failed change, cleared by a sync.
	LastError            string     `json:"lastError,omitempty"`
	LastSyncTime         *time.Time `json:"lastSyncTime,omitempty"`
	SyncTransitionTime   time.Time  `json:"syncTransitionTime"`
	HealthTransitionTime time.Time  `json:"healthTransitionTime"`
}

// RouteStatus is one SLB route; its health is its service's.
type RouteStatus struct {
	RouteReport
	Revision             string           `json:"revision"`
	Sync                 SyncState        `json:"sync"`
	Health               reconcile.Health `json:"health"`
	LastError            string           `json:"lastError,omitempty"`
	SyncTransitionTime   time.Time        `json:"syncTransitionTime"`
	HealthTransitionTime time.Time        `json:"healthTransitionTime"`
}

// PlanStatus is the last plan built and what became of each change.
type PlanStatus struct {
	Revision string            `json:"revision"`
	Time     time.Time         `json:"time"`
	Applied  bool              `json:"applied"`
	Summary  reconcile.Summary `json:"summary"`
	Changes  []PlanChange      `json:"changes"`
}

// PlanChange is one change of the last plan.
type PlanChange struct {
	Action  string                `json:"action"`
	Key     string                `json:"key"`
	Stack   string                `json:"stack,omitempty"`
	Reason  reconcile.Reason      `json:"reason"`
	Outcome string                `json:"outcome"` // applied, failed, skipped, unhandled, planned
	Error   string                `json:"error,omitempty"`
	Diff    []reconcile.FieldDiff `json:"diff"`
}

// HistoryEntry records one reconcile.
type HistoryEntry struct {
	Start    time.Time         `json:"start"`
	Duration time.Duration     `json:"durationNanos"`
	Trigger  string            `json:"trigger"`
	Role     Role              `json:"role"`
	Revision string            `json:"revision,omitempty"`
	Result   string            `json:"result"` // success, stalled, waiting, transient
	Summary  reconcile.Summary `json:"summary"`
	Applied  int               `json:"applied"`
	Drift    int               `json:"drift"`
	Error    string            `json:"error,omitempty"`
}

// state is the loop's memory between reconciles; Status copies it out.
type state struct {
	status  Status
	stacks  map[string]*StackStatus
	routes  map[string]*RouteStatus
	history []HistoryEntry
	// progressingSince is when each service became Progressing with no rollout under
	// way; past progressDeadline it is reported Degraded.
	progressingSince map[string]time.Time
	progressDeadline time.Duration
}

func newState(instance, holder string) *state {
	return &state{
		status: Status{Instance: instance, Holder: holder, Role: Leader, Phase: PhasePending,
			Message: "waiting for the first reconcile"},
		stacks:           map[string]*StackStatus{},
		routes:           map[string]*RouteStatus{},
		progressingSince: map[string]time.Time{},
		progressDeadline: 10 * time.Minute,
	}
}

// snapshot returns a copy safe to hand out.
func (s *state) snapshot() Status {
	st := s.status
	st.Stacks = make([]StackStatus, 0, len(s.stacks))
	for _, name := range sortedKeys(s.stacks) {
		st.Stacks = append(st.Stacks, *s.stacks[name])
	}
	st.Routes = make([]RouteStatus, 0, len(s.routes))
	for _, key := range sortedKeys(s.routes) {
		st.Routes = append(st.Routes, *s.routes[key])
	}
	// By route name, as people name them; the key (which holds a port) breaks ties.
	sort.SliceStable(st.Routes, func(i, j int) bool { return st.Routes[i].Name < st.Routes[j].Name })
	st.Warnings = append([]string{}, st.Warnings...)
	st.Drift = append([]Drift{}, st.Drift...)
	// Newest first, as people read a history.
	st.History = make([]HistoryEntry, len(s.history))
	for i, h := range s.history {
		st.History[len(s.history)-1-i] = h
	}
	return st
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func timePtr(t time.Time) *time.Time { return &t }

// applyReport folds one reconcile into the state. applied says whether the reconcile
// was allowed to write (leader).
func (s *state) applyReport(now time.Time, rep Report, err error, class Class, applied bool) {
	st := &s.status
	st.LastReconcileTime = timePtr(now)
	if rep.Observed {
		st.Ready = true
	}
	if rep.Revision != "" {
		st.SourceRevision = rep.Revision
	}
	if rep.Plan != nil || err == nil {
		st.Warnings = append([]string{}, rep.Warnings...)
	}
	if err != nil {
		st.LastError = &ErrorStatus{Class: class, Message: err.Error(), Revision: rep.Revision, Time: now}
	} else {
		st.LastError = nil
		st.LastSuccessTime = timePtr(now)
	}
	if rep.Plan != nil {
		st.LastPlan = planStatus(now, *rep.Plan, rep.Result, applied)
		if len(st.LastPlan.Changes) > 0 {
			st.LastChanges = st.LastPlan
		}
	}
	if rep.Observed && rep.Plan != nil {
		s.applyStacks(now, rep)
		st.Drift = append([]Drift{}, rep.Drift...)
	}
	if err == nil && rep.Plan != nil && rep.Revision != "" && fullyApplied(rep) {
		st.Revision = rep.Revision
	}
}

// fullyApplied reports whether every change of rep's plan was applied (or there were
// none): the revision is then live, whatever drift is only reported.
func fullyApplied(rep Report) bool {
	for _, o := range outcomes(rep) {
		if len(o.failed) > 0 || o.pending {
			return false
		}
	}
	return true
}

// stackOutcome gathers what the plan and its result say about one stack.
type stackOutcome struct {
	failed  []string
	pending bool // a change that was not applied (follower, refused, no sink)
}

func outcomes(rep Report) map[string]*stackOutcome {
	out := map[string]*stackOutcome{}
	get := func(stack string) *stackOutcome {
		if out[stack] == nil {
			out[stack] = &stackOutcome{}
		}
		return out[stack]
	}
	done := map[string]bool{}
	if rep.Result != nil {
		for _, r := range rep.Result.Changes {
			o := get(changeStack(r.Change))
			switch r.Outcome {
			case reconcile.Applied:
				done[r.Change.Key.String()] = true
			case reconcile.Failed, reconcile.Skipped:
				done[r.Change.Key.String()] = true
				msg := r.Change.Key.String() + ": " + string(r.Outcome)
				if r.Err != nil {
					msg = r.Err.Error()
				}
				o.failed = append(o.failed, msg)
			}
		}
	}
	for _, c := range rep.Plan.Changes {
		if c.Action == reconcile.NoOp || done[c.Key.String()] {
			continue
		}
		get(changeStack(c)).pending = true
	}
	return out
}

// applyProgressDeadline returns a copy of services in which a service that has been
// Progressing with no rollout under way for s.progressDeadline or longer is Degraded,
// with a message saying why; it records in seen every service it was given.
func (s *state) applyProgressDeadline(now time.Time, services []ServiceReport, seen map[string]bool) []ServiceReport {
	out := append([]ServiceReport{}, services...)
	for i, svc := range out {
		seen[svc.Name] = true
		rollout := svc.UpdateState == "updating" || svc.UpdateState == "rollback_started"
		if svc.Health != reconcile.Progressing || rollout {
			delete(s.progressingSince, svc.Name)
			continue
		}
		since, ok := s.progressingSince[svc.Name]
		if !ok {
			s.progressingSince[svc.Name] = now
			continue
		}
		if waited := now.Sub(since); waited >= s.progressDeadline {
			out[i].Health = reconcile.Degraded
			out[i].Message = fmt.Sprintf("%d of %d tasks running for %s: Swarm is not getting the rest to run (docker service ps %s)",
				svc.RunningTasks, svc.DesiredTasks, waited.Round(time.Second), svc.Name)
		}
	}
	return out
}

func (s *state) applyStacks(now time.Time, rep Report) {
	outs := outcomes(rep)
	drift := map[string][]Drift{}
	for _, d := range rep.Drift {
		drift[d.Stack] = append(drift[d.Stack], d)
	}
	seen := map[string]bool{}
	health := map[string]reconcile.Health{} // service name -> health, for routes
	liveServices := map[string]bool{}
	for _, sr := range rep.Stacks {
		seen[sr.Name] = true
		prev, ok := s.stacks[sr.Name]
		if !ok {
			prev = &StackStatus{Name: sr.Name, Sync: Unknown, Health: reconcile.Unknown,
				SyncTransitionTime: now, HealthTransitionTime: now}
			s.stacks[sr.Name] = prev
		}
		services := s.applyProgressDeadline(now, sr.Services, liveServices)
		hs := make([]reconcile.Health, 0, len(services))
		for _, svc := range services {
			hs = append(hs, svc.Health)
			health[svc.Name] = svc.Health
		}
		h := reconcile.Worst(hs...)
		if len(sr.Services) == 0 {
			h = reconcile.Healthy
		}
		sync, lastErr := Synced, ""
		o := outs[sr.Name]
		if o == nil {
			o = &stackOutcome{}
		}
		switch {
		case len(o.failed) > 0:
			sync, lastErr = SyncError, strings.Join(o.failed, "\n")
		case o.pending || hasUnreverted(drift[sr.Name]):
			sync = OutOfSync
		}
		setSync(prev, now, sync)
		if h != prev.Health {
			prev.Health, prev.HealthTransitionTime = h, now
		}
		prev.Services = services
		prev.Drift = append([]Drift{}, drift[sr.Name]...)
		prev.LastError = lastErr
		// Drift that is only reported does not make the revision any less applied.
		applied := len(o.failed) == 0 && !o.pending
		switch {
		case sr.Revision != "":
			prev.Revision = sr.Revision
		case applied:
			prev.Revision = rep.Revision
		}
		if applied {
			prev.LastSyncTime = timePtr(now)
		}
	}
	for name := range s.stacks {
		if !seen[name] {
			delete(s.stacks, name)
		}
	}
	for name := range s.progressingSince {
		if !liveServices[name] {
			delete(s.progressingSince, name)
		}
	}

	failedKeys := map[string]string{}
	if rep.Result != nil {
		for _, r := range rep.Result.Changes {
			if r.Outcome == reconcile.Failed || r.Outcome == reconcile.Skipped {
				msg := string(r.Outcome)
				if r.Err != nil {
					msg = r.Err.Error()
				}
				failedKeys[r.Change.Key.String()] = msg
			}
		}
	}
	pendingKeys := map[string]bool{}
	for _, c := range rep.Plan.Changes {
		if c.Action != reconcile.NoOp {
			pendingKeys[c.Key.String()] = true
		}
	}
	if rep.Result != nil {
		for _, r := range rep.Result.Changes {
			if r.Outcome == reconcile.Applied {
				delete(pendingKeys, r.Change.Key.String())
			}
		}
	}
	seenRoutes := map[string]bool{}
	for _, rr := range rep.Routes {
		seenRoutes[rr.Key] = true
		prev, ok := s.routes[rr.Key]
		if !ok {
			prev = &RouteStatus{Sync: Unknown, Health: reconcile.Unknown, SyncTransitionTime: now, HealthTransitionTime: now}
			s.routes[rr.Key] = prev
		}
		prev.RouteReport = rr
		sync, lastErr := Synced, ""
		switch {
		case failedKeys[rr.Key] != "":
			sync, lastErr = SyncError, failedKeys[rr.Key]
		case !rr.Reconciled || pendingKeys[rr.Key]:
			sync = OutOfSync
		}
		if prev.Sync != sync {
			prev.Sync, prev.SyncTransitionTime = sync, now
		}
		prev.LastError = lastErr
		if sync == Synced {
			prev.Revision = rep.Revision
		}
		h, ok := health[rr.Service]
		if !ok {
			h = reconcile.Unknown
		}
		if h != prev.Health {
			prev.Health, prev.HealthTransitionTime = h, now
		}
	}
	for k := range s.routes {
		if !seenRoutes[k] {
			delete(s.routes, k)
		}
	}
}

func setSync(st *StackStatus, now time.Time, sync SyncState) {
	if st.Sync != sync {
		st.Sync, st.SyncTransitionTime = sync, now
	}
}

func hasUnreverted(ds []Drift) bool {
	for _, d := range ds {
		if !d.Reverted {
			return true
		}
	}
	return false
}

func planStatus(now time.Time, p reconcile.Plan, res *reconcile.Result, applied bool) *PlanStatus {
	ps := &PlanStatus{Revision: p.Revision, Time: now, Applied: applied && res != nil, Summary: p.Summary(), Changes: []PlanChange{}}
	outcome := map[string]reconcile.ChangeResult{}
	if res != nil {
		for _, r := range res.Changes {
			outcome[r.Change.Key.String()] = r
		}
	}
	for _, c := range p.Changes {
		if c.Action == reconcile.NoOp {
			continue
		}
		pc := PlanChange{Action: c.Action.String(), Key: c.Key.String(), Stack: changeStack(c), Reason: c.Reason,
			Outcome: "planned", Diff: append([]reconcile.FieldDiff{}, c.Diff...)}
		if r, ok := outcome[pc.Key]; ok {
			pc.Outcome = string(r.Outcome)
			if r.Err != nil {
				pc.Error = unwrapChangeError(r.Err)
			}
		}
		ps.Changes = append(ps.Changes, pc)
	}
	return ps
}

// unwrapChangeError drops the key prefix a ChangeError adds: the key is shown next to it.
func unwrapChangeError(err error) string {
	var ce *reconcile.ChangeError
	if errors.As(err, &ce) && ce.Err != nil {
		return ce.Err.Error()
	}
	return err.Error()
}
