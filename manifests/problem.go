package manifests

import (
	"fmt"
	"sort"
	"strings"
)

// Severity says whether a Problem stops the load.
type Severity string

// Severities.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Problem is one thing wrong with the source, located as precisely as is known.
type Problem struct {
	File     string   `json:"file"`           // relative to the source root, slash-separated
	Line     int      `json:"line,omitempty"` // 1-based; 0 when unknown
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// String renders "file:line: message" (the line omitted when unknown); warnings are
// prefixed "warning: ".
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Severity == Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in one load. As an error it means the source did not
// load completely and nothing may be planned from it.
type Problems []Problem

// Error lists every problem, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// HasErrors reports whether any problem is an error rather than a warning.
func (ps Problems) HasErrors() bool {
	for _, p := range ps {
		if p.Severity != Warning {
			return true
		}
	}
	return false
}

// Sort orders problems by file, line, then message, so output is stable.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Message < b.Message
	})
}
