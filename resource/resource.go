package resource

import (
	"fmt"
	"sort"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// Labels capstan reads and writes. They go on service, network, secret and config labels,
// never on container labels: changing those would restart tasks.
const (
	// LabelNamespace is docker stack's own label, kept so `docker stack ls/ps` keep working.
	LabelNamespace = "com.docker.stack.namespace"
	// LabelImage holds the image as written in the source, as docker stack deploy does.
	LabelImage = "com.docker.stack.image"
	// LabelManagedBy names the capstan instance that owns the object.
	LabelManagedBy = "dev.capstan.managed-by"
	// LabelSpecHash is the hash of the normalized desired spec capstan last applied.
	LabelSpecHash = "dev.capstan.spec-hash"
	// LabelRevision is the source revision (<ref>@sha1:<hex>) that last changed the object.
	LabelRevision = "dev.capstan.revision"
	// LabelECSInstanceID maps a Swarm node to its ECS instance, for SLB backends.
	LabelECSInstanceID = "dev.capstan.ecs-instance-id"
)

// DefaultInstance is the managed-by value when --instance is not given.
const DefaultInstance = "capstan"

// Resolve-image policies, as docker stack deploy's --resolve-image.
const (
	ResolveNever   = "never"
	ResolveChanged = "changed"
	ResolveAlways  = "always"
)

// Stack is one Swarm stack's settings from its Stack document (or the defaults for a bare
// NAME.dab or stacks/NAME/ directory).
type Stack struct {
	Name         string
	Source       string // the file that declared it, relative to the source root
	Prune        bool
	SelfHeal     bool
	DependsOn    []string
	ResolveImage string
}

// Resource is one object, desired or live. Exactly one of the spec pointers is set, the
// one matching Key.Kind.
type Resource struct {
	Key Key
	// Stack is the stack that owns the object ("" for objects outside any stack).
	Stack string
	// Source is "file" or "file:line" of the declaration (desired side only).
	Source string
	// External marks a referenced object the source does not manage: it must exist, and
	// capstan never creates, changes or deletes it.
	External bool

	Service *swarm.ServiceSpec
	Network *network.CreateOptions
	Secret  *swarm.SecretSpec
	Config  *swarm.ConfigSpec
	Route   *Route
	// SLB objects a Route expands to (see sinks/slb).
	SLBListener  *SLBListener
	VServerGroup *VServerGroup

	// Live side only.
	ID      string
	Version uint64
	// ManagedBy is the owning capstan instance of a live object on a sink without labels
	// (SLB: parsed from the listener Description / VServer group name marker
	// capstan/<instance>/<route>). Swarm objects carry LabelManagedBy instead.
	ManagedBy string
	// Status of a live service; nil when unknown.
	Status *ServiceStatus
}

// ServiceStatus is what the live side knows about a service's tasks and rollout.
type ServiceStatus struct {
	RunningTasks uint64
	DesiredTasks uint64
	// UpdateState is Swarm's UpdateStatus.State ("" when there was no update).
	UpdateState   string
	UpdateMessage string
}

// Labels returns the object-level labels of whichever spec is set.
func (r *Resource) Labels() map[string]string {
	switch {
	case r.Service != nil:
		return r.Service.Labels
	case r.Network != nil:
		return r.Network.Labels
	case r.Secret != nil:
		return r.Secret.Labels
	case r.Config != nil:
		return r.Config.Labels
	}
	return nil
}

// Owner is the managed-by label of the object (ManagedBy on sinks without labels), ""
// when capstan does not manage it. SLB objects without ManagedBy are judged by the
// marker in their Description or group name (SLBMarker).
func (r *Resource) Owner() string {
	if o := r.Labels()[LabelManagedBy]; o != "" {
		return o
	}
	if r.ManagedBy != "" {
		return r.ManagedBy
	}
	var marker string
	switch {
	case r.SLBListener != nil:
		marker = r.SLBListener.Description
	case r.VServerGroup != nil:
		marker = r.VServerGroup.Name
	}
	instance, _, _ := ParseSLBMarker(marker)
	return instance
}

// Set is a collection of resources keyed by Key, plus the stacks they belong to.
type Set struct {
	Stacks    map[string]Stack
	Resources map[Key]Resource
}

// NewSet returns an empty Set.
func NewSet() *Set {
	return &Set{Stacks: map[string]Stack{}, Resources: map[Key]Resource{}}
}

// Add inserts r; a second resource with the same Key is an error.
func (s *Set) Add(r Resource) error {
	if prev, ok := s.Resources[r.Key]; ok {
		return fmt.Errorf("%s is declared twice (first in %s)", r.Key, prev.Source)
	}
	s.Resources[r.Key] = r
	return nil
}

// Get returns the resource with Key k.
func (s *Set) Get(k Key) (Resource, bool) {
	r, ok := s.Resources[k]
	return r, ok
}

// Keys returns every key in the set, sorted.
func (s *Set) Keys() []Key {
	keys := make([]Key, 0, len(s.Resources))
	for k := range s.Resources {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return keys
}

// StackNames returns the stack names, sorted.
func (s *Set) StackNames() []string {
	names := make([]string, 0, len(s.Stacks))
	for n := range s.Stacks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Len is the number of resources.
func (s *Set) Len() int { return len(s.Resources) }
