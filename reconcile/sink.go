package reconcile

import (
	"context"

	"github.com/capstan-dev/capstan/resource"
)

// Sink is one place capstan reconciles: Swarm, SLB. Implementations are sibling packages
// under sinks/; SDK types never leave them.
type Sink interface {
	// Name is the Key.Sink value of every resource this sink handles ("swarm", "slb").
	Name() string
	// Observe reads the live state: every object this sink could manage, owned or not,
	// so that name collisions with unowned objects are visible. Owned objects carry
	// LabelManagedBy.
	Observe(ctx context.Context) (*resource.Set, error)
	// Apply carries out one change. Only Apply writes.
	Apply(ctx context.Context, c Change) error
}
