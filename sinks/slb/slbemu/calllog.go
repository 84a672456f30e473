package slbemu

import (
	"slices"
	"sync"
	"time"
)

// Call is one API request as the emulator saw it.
type Call struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	// Params holds every request parameter except Signature.
	Params    map[string]string `json:"params"`
	RequestID string            `json:"requestId"`
	// HTTPStatus and Code are the answer; Code is "" on success.
	HTTPStatus int    `json:"httpStatus"`
	Code       string `json:"code,omitempty"`
	// Injected is set when a Fault produced the answer or added latency.
	Injected bool `json:"injected,omitempty"`
	// Write is set for actions that change state (everything but Describe*/List*),
	// whether or not they succeeded.
	Write bool `json:"write"`
}

type callLog struct {
	mu    sync.Mutex
	calls []Call
}

func (c *callLog) add(call Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
}

// Calls returns the call log, oldest first.
func (s *Server) Calls() []Call {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	return slices.Clone(s.calls.calls)
}

// ResetCalls empties the call log.
func (s *Server) ResetCalls() {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	s.calls.calls = nil
}

// CountCalls counts logged calls: of the given actions (none = all), and only writes
// when writesOnly is set.
func (s *Server) CountCalls(writesOnly bool, actions ...string) int {
	n := 0
	for _, c := range s.Calls() {
		if (!writesOnly || c.Write) && (len(actions) == 0 || slices.Contains(actions, c.Action)) {
			n++
		}
	}
	return n
}
