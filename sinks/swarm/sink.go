package swarm

import (
	"strings"
	"sync"

	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

var (
	_ reconcile.Sink         = (*Sink)(nil)
	_ reconcile.StatusReader = (*Sink)(nil)
)

// Sink reads and writes Swarm objects through the Docker Engine API. It is safe for
// concurrent use, though reconcile calls it from one goroutine.
type Sink struct {
	cli      client.APIClient
	instance string

	mu    sync.Mutex
	nodes []Node
	// ports are the published ports of every service the last Observe listed, by name.
	ports map[string][]Port
	// onWarning receives the Engine's warnings about a write (OnWarning).
	onWarning func(key resource.Key, warning string)
	// netNames remembers network names found by inspecting IDs the network list does not
	// show (the swarm-side IDs of predefined networks such as "host"). IDs never change
	// meaning, so the cache keeps later Observes at their constant request count.
	netNames map[string]string
}

// New returns a Sink on cli for the capstan installation instance (the value of
// dev.capstan.managed-by it stamps on what it creates and requires on what it deletes).
// Give cli API version negotiation (client.WithAPIVersionNegotiation): the sink uses
// nothing newer than API 1.41.
func New(cli client.APIClient, instance string) *Sink {
	if instance == "" {
		instance = resource.DefaultInstance
	}
	return &Sink{cli: cli, instance: instance, netNames: map[string]string{}}
}

// OnWarning sets where the warnings that come back with a service write go (the Docker
// client's "image … could not be accessed on a registry to record its digest", for
// one): they do not fail the write, but a user should see them. Call it before Apply.
func (s *Sink) OnWarning(f func(key resource.Key, warning string)) { s.onWarning = f }

func (s *Sink) warn(key resource.Key, warnings []string) {
	if s.onWarning == nil {
		return
	}
	for _, w := range warnings {
		// The client wraps its warnings over several lines.
		w = strings.Join(strings.Fields(w), " ")
		if strings.Contains(w, "could not be accessed on a registry") {
			w += " (the stack's resolveImage: never skips the registry)"
		}
		s.onWarning(key, w)
	}
}

// Name is the Key.Sink of every resource the sink handles.
func (s *Sink) Name() string { return resource.SinkSwarm }

// Node is one Swarm node as the last Observe saw it. Strings are Swarm's own values:
// Role "manager"|"worker", Availability "active"|"pause"|"drain", State
// "unknown"|"down"|"ready"|"disconnected".
type Node struct {
	ID           string
	Hostname     string
	Role         string
	Availability string
	State        string
	// Addr is the address the node is reachable at (Status.Addr).
	Addr string
	// Labels are the node's own labels (docker node update --label-add), e.g.
	// dev.capstan.ecs-instance-id.
	Labels map[string]string
}

// Nodes returns the nodes read by the last successful Observe (nil before the first one),
// sorted by hostname then ID.
func (s *Sink) Nodes() []Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Node, len(s.nodes))
	for i, n := range s.nodes {
		n.Labels = cloneMap(n.Labels)
		out[i] = n
	}
	return out
}

// Port is a port Swarm published for a service (its Endpoint, not its spec: for a
// port published without a number, the one Swarm picked). Protocol is "tcp", "udp" or
// "sctp", PublishMode "ingress" or "host".
type Port struct {
	Target, Published     uint32
	Protocol, PublishMode string
}

// PublishedPorts returns the ports Swarm published for the named services, as the last
// successful Observe listed them (no request of its own): the SLB stage needs them to
// point VServer groups at, and the service list Observe read already holds them. A
// service the last Observe did not see, or that publishes nothing, is absent.
func (s *Sink) PublishedPorts(names ...string) map[string][]Port {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]Port, len(names))
	for _, name := range names {
		if ps, ok := s.ports[name]; ok {
			out[name] = append([]Port(nil), ps...)
		}
	}
	return out
}

func cloneMap(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
