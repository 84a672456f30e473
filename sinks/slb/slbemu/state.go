package slbemu

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Listener statuses.
const (
	StatusStopped     = "stopped"
	StatusStarting    = "starting"
	StatusRunning     = "running"
	StatusConfiguring = "configuring"
	StatusStopping    = "stopping"
)

// Tag is a key/value tag on a load balancer, listener or VServer group.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Backend is a member of a server group. Port is 0 in the default server group (the
// listener's BackendServerPort applies there).
type Backend struct {
	ServerID    string `json:"serverId"`
	Port        int    `json:"port,omitempty"`
	Weight      int    `json:"weight"`
	Type        string `json:"type"`
	ServerIP    string `json:"serverIp,omitempty"`
	Description string `json:"description,omitempty"`
}

func (b Backend) key() string { return backendKey(b.ServerID, b.Port, b.Type, b.ServerIP) }

type lbState struct {
	cfg       LoadBalancer
	created   time.Time
	listeners map[listenerKey]*listenerState
	backends  []Backend   // the default server group
	pending   *transition // backend changes pending: BackendServer.configuring
}

type listenerKey struct {
	port     int
	protocol string
}

type listenerState struct {
	lb       string
	port     int
	protocol string // http | https | tcp | udp
	attrs    map[string]string
	tags     []Tag
	status   string
	trans    *transition
}

// transition is a status on its way to another; it settles once both the delay and the
// number of further calls have passed.
type transition struct {
	to       string
	until    time.Time
	afterSeq uint64
	calls    int
}

type vgroupState struct {
	id, name, lb string
	created      time.Time
	tags         []Tag
	backends     []Backend
}

// serving reports whether traffic flows: running, being reconfigured while running, or
// still draining while stopping.
func (l *listenerState) serving() bool {
	switch l.status {
	case StatusRunning, StatusStopping:
		return true
	case StatusConfiguring:
		return l.trans != nil && l.trans.to == StatusRunning
	}
	return false
}

func (s *Server) settledLocked(t *transition) bool {
	return s.seq > t.afterSeq+uint64(t.calls) && !s.cfg.Now().Before(t.until)
}

// settleLocked finishes every transition whose time has come.
func (s *Server) settleLocked() {
	for _, lb := range s.lbs {
		for _, l := range lb.listeners {
			if l.trans != nil && s.settledLocked(l.trans) {
				s.log.Debug("listener settled", "lb", l.lb, "port", l.port, "protocol", l.protocol, "status", l.trans.to)
				l.status, l.trans = l.trans.to, nil
			}
		}
		if lb.pending != nil && s.settledLocked(lb.pending) {
			lb.pending = nil
		}
	}
}

// transitionLocked moves a listener to status on its way to "to" (immediately to "to"
// when no delay or call count is configured).
func (s *Server) transitionLocked(l *listenerState, status, to string) {
	if s.cfg.TransitionDelay == 0 && s.cfg.TransitionCalls == 0 {
		l.status, l.trans = to, nil
		return
	}
	l.status = status
	l.trans = s.newTransitionLocked(to)
}

func (s *Server) newTransitionLocked(to string) *transition {
	t := &transition{to: to, until: s.cfg.Now().Add(s.cfg.TransitionDelay), afterSeq: s.seq, calls: s.cfg.TransitionCalls}
	if s.cfg.TransitionDelay > 0 && !s.closed {
		// A timer settles the transition even when no call comes, so forwarding starts
		// and stops on time.
		s.timers = append(s.timers, time.AfterFunc(s.cfg.TransitionDelay+time.Millisecond, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.closed {
				s.settleLocked()
				s.syncForwardersLocked()
			}
		}))
	}
	return t
}

// backendChangeLocked opens the LB's pending window after a backend change.
func (s *Server) backendChangeLocked(lb *lbState) {
	if s.cfg.BackendPendingCalls > 0 {
		lb.pending = &transition{afterSeq: s.seq, calls: s.cfg.BackendPendingCalls}
	}
}

func (s *Server) backendCountLocked(lbID string) int {
	n := len(s.lbs[lbID].backends)
	for _, g := range s.vgroups {
		if g.lb == lbID {
			n += len(g.backends)
		}
	}
	return n
}

func (s *Server) sortedListenersLocked(lb *lbState) []*listenerState {
	ls := slices.Collect(maps.Values(lb.listeners))
	slices.SortFunc(ls, func(a, b *listenerState) int {
		return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.protocol, b.protocol))
	})
	return ls
}

func (s *Server) sortedLBsLocked() []*lbState {
	out := make([]*lbState, 0, len(s.lbs))
	for _, id := range s.lbOrder {
		out = append(out, s.lbs[id])
	}
	return out
}

func (s *Server) sortedGroupsLocked(lbID string) []*vgroupState {
	var out []*vgroupState
	for _, g := range s.vgroups {
		if lbID == "" || g.lb == lbID {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *vgroupState) int {
		return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.id, b.id))
	})
	return out
}

// State is a read-only copy of everything the emulator holds, for assertions.
type State struct {
	LoadBalancers []LoadBalancerState `json:"loadBalancers"`
	VServerGroups []VServerGroupState `json:"vServerGroups"`
}

// LoadBalancerState is one load balancer with its listeners and default server group.
type LoadBalancerState struct {
	ID        string          `json:"id"`
	Region    string          `json:"region"`
	Address   string          `json:"address"`
	Listeners []ListenerState `json:"listeners"`
	Backends  []Backend       `json:"backends"`
}

// ListenerState is one listener. Attributes holds every attribute as last set (API
// parameter names, defaults filled in at creation).
type ListenerState struct {
	Port       int               `json:"port"`
	Protocol   string            `json:"protocol"`
	Status     string            `json:"status"`
	Attributes map[string]string `json:"attributes"`
	Tags       []Tag             `json:"tags,omitempty"`
}

// VServerGroupState is one VServer group and its members.
type VServerGroupState struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	LoadBalancerID string    `json:"loadBalancerId"`
	Backends       []Backend `json:"backends"`
}

// Snapshot returns a copy of the current state (transitions settled as of now).
func (s *Server) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	s.syncForwardersLocked()
	st := State{LoadBalancers: []LoadBalancerState{}, VServerGroups: []VServerGroupState{}}
	for _, lb := range s.sortedLBsLocked() {
		ls := LoadBalancerState{ID: lb.cfg.ID, Region: lb.cfg.Region, Address: lb.cfg.Address,
			Listeners: []ListenerState{}, Backends: slices.Clone(lb.backends)}
		if ls.Backends == nil {
			ls.Backends = []Backend{}
		}
		for _, l := range s.sortedListenersLocked(lb) {
			ls.Listeners = append(ls.Listeners, ListenerState{Port: l.port, Protocol: l.protocol, Status: l.status,
				Attributes: maps.Clone(l.attrs), Tags: slices.Clone(l.tags)})
		}
		st.LoadBalancers = append(st.LoadBalancers, ls)
	}
	for _, g := range s.sortedGroupsLocked("") {
		b := slices.Clone(g.backends)
		if b == nil {
			b = []Backend{}
		}
		st.VServerGroups = append(st.VServerGroups, VServerGroupState{ID: g.id, Name: g.name, LoadBalancerID: g.lb, Backends: b})
	}
	return st
}
