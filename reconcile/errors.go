package reconcile

import (
	"fmt"
	"strings"

	"github.com/capstan-dev/capstan/resource"
)

// Conflict is a desired object whose name is taken by a live object this capstan
// instance does not manage.
type Conflict struct {
	Key resource.Key
	// Owner is the live object's managed-by value; "" when no capstan instance manages it.
	Owner string
	// Source is where the desired object is declared.
	Source string
}

// ConflictError refuses a plan that would take over objects capstan does not own. Every
// conflicting key is listed; --adopt (Options.Adopt) takes them over.
type ConflictError struct {
	Instance  string
	Conflicts []Conflict
}

func (e *ConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d object(s) in the source already exist in the cluster but are not managed by capstan instance %q:", len(e.Conflicts), e.Instance)
	for _, c := range e.Conflicts {
		owner := "not managed by capstan"
		if c.Owner != "" {
			owner = fmt.Sprintf("managed by capstan instance %q", c.Owner)
		}
		fmt.Fprintf(&b, "\n  %s (%s", c.Key, owner)
		if c.Source != "" {
			fmt.Fprintf(&b, "; declared in %s", c.Source)
		}
		b.WriteString(")")
	}
	b.WriteString("\nrerun with --adopt to take them over, or rename them in the source")
	return b.String()
}

// MissingExternal is an object the source declares external that does not exist.
type MissingExternal struct {
	Key    resource.Key
	Source string
}

// MissingExternalError lists external networks, secrets and configs that must exist
// before the source can be applied. capstan never creates them.
type MissingExternalError struct {
	Missing []MissingExternal
}

func (e *MissingExternalError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d external object(s) do not exist in the swarm:", len(e.Missing))
	for _, m := range e.Missing {
		where := ""
		if m.Source != "" {
			where = m.Source + ": "
		}
		fmt.Fprintf(&b, "\n  %s%s %q is declared external but does not exist", where, m.Key.Kind, m.Key.Name)
		if m.Key.Kind == resource.KindNetwork {
			b.WriteString(" (or is not swarm-scoped)")
		}
	}
	b.WriteString("\ncreate them first (docker network create --driver overlay --scope swarm NAME, docker secret create, docker config create) or stop declaring them external")
	return b.String()
}

// MassDeleteError refuses a plan that deletes more than half of the services this
// instance owns: the usual cause is an empty or wrongly-pathed checkout, not intent.
type MassDeleteError struct {
	// Owned is how many live services this instance owns.
	Owned int
	// Deleting lists the services the plan deletes.
	Deleting []resource.Key
}

func (e *MassDeleteError) Error() string {
	return fmt.Sprintf("refusing to delete %d of the %d services this capstan instance manages (more than half): "+
		"check --source, --ref and --path point at the right manifests; if the deletion is intended, rerun with --allow-mass-delete",
		len(e.Deleting), e.Owned)
}

// CycleError reports stacks whose dependsOn form a cycle.
type CycleError struct {
	Cycle []string // a -> b -> ... -> a
}

func (e *CycleError) Error() string {
	return "stack dependencies form a cycle: " + strings.Join(e.Cycle, " -> ") + ": remove one of these dependsOn entries"
}
