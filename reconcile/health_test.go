package reconcile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capstan-dev/capstan/resource"
)

func TestServiceHealth(t *testing.T) {
	tests := []struct {
		fixture  string
		want     Health // while apply may still wait
		timedOut Health // once the convergence wait timed out
	}{
		{"converged", Healthy, Healthy},
		{"never-updated", Healthy, Healthy},
		{"scaled-to-zero", Healthy, Healthy},
		{"starting", Progressing, Degraded},
		{"crash-looping", Progressing, Degraded},
		{"stopping-extra-tasks", Progressing, Degraded},
		{"updating", Progressing, Degraded},
		{"rollback-started", Progressing, Degraded},
		{"rollback-completed", Degraded, Degraded},
		{"paused", Degraded, Degraded},
		{"rollback-paused", Degraded, Degraded},
		{"unknown", Unknown, Unknown},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "health", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Errorf("%d fixtures in testdata/health, %d table entries: give every fixture an expectation", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "health", tt.fixture+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var st *resource.ServiceStatus
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&st); err != nil {
				t.Fatalf("fixture: %v", err)
			}
			if got := ServiceHealth(st); got != tt.want {
				t.Errorf("ServiceHealth = %s, want %s", got, tt.want)
			}
			if got := ServiceHealthAfterWait(st, false); got != tt.want {
				t.Errorf("ServiceHealthAfterWait(not timed out) = %s, want %s", got, tt.want)
			}
			if got := ServiceHealthAfterWait(st, true); got != tt.timedOut {
				t.Errorf("ServiceHealthAfterWait(timed out) = %s, want %s", got, tt.timedOut)
			}
		})
	}
}

func TestWorst(t *testing.T) {
	tests := []struct {
		in   []Health
		want Health
	}{
		{nil, Healthy},
		{[]Health{Healthy, Healthy}, Healthy},
		{[]Health{Healthy, Progressing}, Progressing},
		{[]Health{Progressing, Unknown, Healthy}, Unknown},
		{[]Health{Unknown, Degraded, Progressing}, Degraded},
	}
	for _, tt := range tests {
		if got := Worst(tt.in...); got != tt.want {
			t.Errorf("Worst(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
