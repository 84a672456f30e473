package reconcile

import (
	"github.com/capstan-dev/capstan/resource"
)

// Action is what a Change does. Its value is the glyph shown in rendered plans.
type Action rune

// Actions, in the glyphs of the text renderer.
const (
	NoOp    Action = '.'
	Create  Action = '+'
	Update  Action = '~'
	Scale   Action = '^'
	Replace Action = '±'
	Delete  Action = '-'
)

// String names the action in lower case ("create", "update", ...), as JSON output uses.
func (a Action) String() string {
	switch a {
	case NoOp:
		return "no-op"
	case Create:
		return "create"
	case Update:
		return "update"
	case Scale:
		return "scale"
	case Replace:
		return "replace"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// Reason explains a Change to the reader. It is for display only: apply never decides
// anything from it.
type Reason string

// Reasons.
const (
	NotInCluster    Reason = "NotInCluster"    // desired, not live: create
	SourceChanged   Reason = "SourceChanged"   // desired spec differs from the last applied one
	Drift           Reason = "Drift"           // source unchanged, live edited by hand
	ReplicasChanged Reason = "ReplicasChanged" // only the replica count differs
	ImmutableField  Reason = "ImmutableField"  // Swarm cannot change it in place
	NotInSource     Reason = "NotInSource"     // owned and live, no longer desired: delete
	Rotated         Reason = "Rotated"         // an immutable secret/config replaced by a new version
)

// FieldDiff is one field that differs, by its path in the spec ("TaskTemplate.ContainerSpec.Env").
// Values are rendered for display and already masked when secret.
type FieldDiff struct {
	Path   string `json:"path"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// Change is one planned action on one object.
//
//	Action   Before  After
//	NoOp     live    desired
//	Create   nil     desired
//	Update   live    desired
//	Scale    live    desired (only replicas differ)
//	Replace  live    desired (deleted, then created)
//	Delete   live    nil
type Change struct {
	Action Action
	Key    resource.Key
	Before *resource.Resource
	After  *resource.Resource
	Reason Reason
	Diff   []FieldDiff
}

// Plan is a value: building it performs no I/O. Changes are in apply order.
type Plan struct {
	Revision string
	Changes  []Change
	// Drift lists objects whose live state departs from the last applied spec, whether
	// or not the plan reverts them (selfHeal).
	Drift    []resource.Key
	Warnings []string
}
