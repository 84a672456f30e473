package slbemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// serveAdmin is the test-only control API (no authentication; bind the emulator to
// 127.0.0.1):
//
//	GET    /_emu/calls    the call log (JSON array of Call)
//	DELETE /_emu/calls    empty it
//	GET    /_emu/faults   active faults
//	POST   /_emu/faults   add one fault object or an array of them
//	DELETE /_emu/faults   remove every fault
//	GET    /_emu/state    Snapshot()
//	POST   /_emu/health   {"serverId": "i-1", "port": 80, "status": "abnormal"} ("" clears)
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, format string, args ...any) {
		writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /_emu/calls":
		writeJSON(w, http.StatusOK, s.Calls())
	case "DELETE /_emu/calls":
		s.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	case "GET /_emu/faults":
		writeJSON(w, http.StatusOK, s.Faults())
	case "POST /_emu/faults":
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			fail(http.StatusBadRequest, "reading the body: %v", err)
			return
		}
		var faults []Fault
		if strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
			err = json.Unmarshal(body, &faults)
		} else {
			var f Fault
			err = json.Unmarshal(body, &f)
			faults = []Fault{f}
		}
		if err != nil {
			fail(http.StatusBadRequest, "fault JSON: %v", err)
			return
		}
		for _, f := range faults {
			if err := f.validate(); err != nil {
				fail(http.StatusBadRequest, "%v", err)
				return
			}
		}
		for _, f := range faults {
			_ = s.InjectFault(f)
		}
		writeJSON(w, http.StatusOK, s.Faults())
	case "DELETE /_emu/faults":
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case "GET /_emu/state":
		writeJSON(w, http.StatusOK, s.Snapshot())
	case "POST /_emu/health":
		var h struct {
			ServerID string `json:"serverId"`
			Port     int    `json:"port"`
			Status   string `json:"status"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&h); err != nil {
			fail(http.StatusBadRequest, "health JSON: %v", err)
			return
		}
		if h.ServerID == "" {
			fail(http.StatusBadRequest, "serverId is required")
			return
		}
		if err := s.SetHealthStatus(h.ServerID, h.Port, h.Status); err != nil {
			fail(http.StatusBadRequest, "%v", err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(http.StatusNotFound, "unknown admin endpoint %s %s; see the package documentation", r.Method, r.URL.Path)
	}
}
