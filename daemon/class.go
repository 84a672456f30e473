package daemon

import "errors"

// Class says what the loop does after a failed reconcile.
type Class string

// Classes of reconcile errors.
const (
	// Stalled errors need a human; the loop waits for a new revision or a manual sync.
	Stalled Class = "stalled"
	// Waiting errors are convergence still under way; the loop looks again shortly.
	Waiting Class = "waiting"
	// Transient errors are retried with capped exponential backoff.
	Transient Class = "transient"
)

// classified marks an error with the class the caller knows it belongs to.
type classified struct {
	class Class
	err   error
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// Stall marks err as needing a human (Stalled). A nil err stays nil.
func Stall(err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: Stalled, err: err}
}

// Wait marks err as convergence under way (Waiting). A nil err stays nil.
func Wait(err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: Waiting, err: err}
}

// ClassOf returns the class err was marked with by Stall or Wait; any other error is
// Transient. When errors of several classes are joined (errors.Join), the most demanding
// wins: Stalled over Transient over Waiting, since a human is needed as soon as one part
// needs one, and a retry helps a transient part more than waiting does.
func ClassOf(err error) Class { return classify(err, nil) }

// classify walks err's tree: at each node that is not a join, judge (when set) may name
// the class; a join takes the worst class of its parts.
func classify(err error, judge func(error) Class) Class {
	if err == nil {
		return ""
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return worstClass(joined.Unwrap(), judge)
	}
	if c, ok := err.(*classified); ok {
		return c.class
	}
	// A judge sees through joins (errors.Is and As do), so it only judges a chain with
	// no join below; otherwise the walk goes down to the join.
	if judge != nil && !joinBelow(err) {
		if c := judge(err); c != "" {
			return c
		}
	}
	if inner := errors.Unwrap(err); inner != nil {
		return classify(inner, judge)
	}
	return Transient
}

// joinBelow reports whether err's chain of single wraps reaches a join before a mark.
func joinBelow(err error) bool {
	for err != nil {
		switch err.(type) {
		case *classified:
			return false
		case interface{ Unwrap() []error }:
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}

var classRank = map[Class]int{Waiting: 1, Transient: 2, Stalled: 3}

func worstClass(errs []error, judge func(error) Class) Class {
	var worst Class
	for _, e := range errs {
		if c := classify(e, judge); classRank[c] > classRank[worst] {
			worst = c
		}
	}
	if worst == "" {
		return Transient
	}
	return worst
}
