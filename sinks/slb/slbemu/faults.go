package slbemu

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Fault makes matching calls fail or slow down. It is checked after authentication
// (a call with a bad signature is never faulted) and a faulted call changes nothing.
type Fault struct {
	// Action limits the fault to one action ("" = every action).
	Action string
	// Code is the error to answer: Throttling, Throttling.User, Throttling.Api (HTTP 400),
	// ServiceUnavailable (503), InternalError (500), SystemBusy, OperationBusy,
	// BackendServer.configuring, ServiceIsConfiguring, or any other code with HTTPStatus
	// (default 400). "" answers normally, after Latency.
	Code string
	// HTTPStatus and Message override the code's usual ones.
	HTTPStatus int
	Message    string
	// Latency is added before the call is answered (or failed).
	Latency time.Duration
	// Count limits the fault to the next Count matching calls it fires on (0 = until
	// cleared).
	Count int
	// Ratio is the share of matching calls it fires on, 0 < Ratio <= 1 (0 means 1). The
	// choice is deterministic: with 0.5 every second matching call, with 0.25 every
	// fourth.
	Ratio float64
}

type faultJSON struct {
	Action     string  `json:"action,omitempty"`
	Code       string  `json:"code,omitempty"`
	HTTPStatus int     `json:"httpStatus,omitempty"`
	Message    string  `json:"message,omitempty"`
	Latency    string  `json:"latency,omitempty"`
	Count      int     `json:"count,omitempty"`
	Ratio      float64 `json:"ratio,omitempty"`
}

// MarshalJSON writes Latency as a Go duration string ("50ms").
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Action: f.Action, Code: f.Code, HTTPStatus: f.HTTPStatus, Message: f.Message,
		Count: f.Count, Ratio: f.Ratio}
	if f.Latency != 0 {
		j.Latency = f.Latency.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the admin endpoint's form: {"action": "...", "code": "Throttling",
// "count": 3, "ratio": 0.5, "latency": "50ms", "httpStatus": 503, "message": "..."}.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Fault{Action: j.Action, Code: j.Code, HTTPStatus: j.HTTPStatus, Message: j.Message, Count: j.Count, Ratio: j.Ratio}
	if j.Latency != "" {
		d, err := time.ParseDuration(j.Latency)
		if err != nil {
			return fmt.Errorf("latency %q: %w", j.Latency, err)
		}
		f.Latency = d
	}
	return nil
}

func (f Fault) validate() error {
	switch {
	case f.Action != "" && actions[f.Action].fn == nil:
		return fmt.Errorf("fault action %q is not an action the emulator knows", f.Action)
	case f.Code == "" && f.Latency == 0:
		return fmt.Errorf("fault needs a code, a latency or both")
	case f.HTTPStatus != 0 && (f.HTTPStatus < 400 || f.HTTPStatus > 599):
		return fmt.Errorf("fault HTTP status %d: want 400..599", f.HTTPStatus)
	case f.Latency < 0 || f.Count < 0 || f.Ratio < 0 || f.Ratio > 1 || math.IsNaN(f.Ratio):
		return fmt.Errorf("fault latency and count must not be negative, ratio must be within 0..1")
	}
	return nil
}

// answer is the error the fault produces, nil for latency-only faults.
func (f Fault) answer() *apiError {
	if f.Code == "" {
		return nil
	}
	e, ok := knownFaults[f.Code]
	if !ok {
		e = apiError{status: http.StatusBadRequest, code: f.Code, message: "Injected fault."}
	}
	if f.HTTPStatus != 0 {
		e.status = f.HTTPStatus
	}
	if f.Message != "" {
		e.message = f.Message
	}
	return &e
}

type activeFault struct {
	Fault
	seen, fired int
}

type faultSet struct {
	mu     sync.Mutex
	faults []*activeFault
}

// pick advances every fault matching action and returns the total latency and the
// error of the first firing fault that has one.
func (fs *faultSet) pick(action string) (time.Duration, *apiError) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var latency time.Duration
	var answer *apiError
	fs.faults = slices.DeleteFunc(fs.faults, func(f *activeFault) bool {
		if f.Action != "" && f.Action != action {
			return false
		}
		f.seen++
		r := f.Ratio
		if r == 0 {
			r = 1
		}
		if math.Floor(float64(f.seen)*r) == math.Floor(float64(f.seen-1)*r) {
			return false
		}
		f.fired++
		latency += f.Latency
		if answer == nil {
			answer = f.answer()
		}
		return f.Count > 0 && f.fired >= f.Count
	})
	return latency, answer
}

// InjectFault adds a fault; faults are checked in the order added.
func (s *Server) InjectFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.faults = append(s.faults.faults, &activeFault{Fault: f})
	return nil
}

// Faults lists the faults still active.
func (s *Server) Faults() []Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := []Fault{}
	for _, f := range s.faults.faults {
		out = append(out, f.Fault)
	}
	return out
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.faults = nil
}
