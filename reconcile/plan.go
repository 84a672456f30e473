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
	// Detach, on the Replace of a network, lists the live services attached to it. Swarm
	// cannot remove a network in use, so apply detaches them before removing it; each of
	// them also has a later change in the plan that attaches it to the new network.
	Detach []resource.Key
	// QueryRegistry, on the Create, Update or Replace of a service, asks the sink to have
	// the registry resolve the image to a digest and pin it, per the stack's
	// resolveImage: always; on a create or an image change for "changed"; never for
	// "never". Pinning makes every node run the same image, as docker stack deploy does.
	QueryRegistry bool
}

// Plan is a value: building it performs no I/O. Changes are in apply order (see
// BuildPlan). Changes holds no NoOp except for drift that is only reported (the stack's
// selfHeal is off): such a change has Reason Drift and its Diff, and is never applied.
type Plan struct {
	Revision string
	Changes  []Change
	// Drift lists objects whose live state departs from the last applied spec, whether
	// or not the plan reverts them (selfHeal).
	Drift    []resource.Key
	Warnings []string
	// StackOrder lists the desired stacks so that every stack comes after the stacks it
	// depends on (spec.dependsOn); service changes are in this order.
	StackOrder []string
	// StackDeps maps a desired stack to the stacks it depends on directly, for apply to
	// wait on (ApplyOptions.StackDeps).
	StackDeps map[string][]string
}

// Options steer BuildPlan.
type Options struct {
	// Instance is this installation's managed-by value (--instance); "" means
	// resource.DefaultInstance. Only objects labelled with it are updated or deleted.
	Instance string
	// AllowMassDelete lifts the prune guard (--allow-mass-delete).
	AllowMassDelete bool
	// Adopt takes over live objects that collide with desired ones but belong to no
	// capstan instance or to another one (--adopt).
	Adopt bool
	// Revision is the source revision the plan is built from (<ref>@sha1:<hex>).
	Revision string
}

// Summary counts what a plan does, the way Terraform does: a Replace is one to add and
// one to destroy; NoOp changes (report-only drift) count nowhere.
type Summary struct {
	Add     int `json:"add"`
	Change  int `json:"change"`
	Destroy int `json:"destroy"`
}

// Summary counts the plan's changes.
func (p Plan) Summary() Summary {
	var s Summary
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			s.Add++
		case Update, Scale:
			s.Change++
		case Replace:
			s.Add++
			s.Destroy++
		case Delete:
			s.Destroy++
		}
	}
	return s
}

// HasChanges reports whether applying the plan would write anything (the condition for
// `diff --detailed-exitcode` to exit 2).
func (p Plan) HasChanges() bool { return p.Summary() != Summary{} }
