package reconcile

import (
	"fmt"

	"github.com/capstan-dev/capstan/resource"
)

// Health is the state of a live service's tasks and rollout.
type Health string

// Health values, from best to worst.
const (
	// Healthy: every desired task runs and no rollout is under way or failed.
	Healthy Health = "Healthy"
	// Progressing: tasks are starting or a rollout is under way.
	Progressing Health = "Progressing"
	// Degraded: Swarm rolled an update back or paused it, or the service did not
	// converge in time.
	Degraded Health = "Degraded"
	// Unknown: nothing is known about the service's tasks.
	Unknown Health = "Unknown"
)

// healthOrder ranks Health values for Worst: Unknown sits between Progressing and
// Degraded, since not knowing is worse than waiting but better than failing.
var healthOrder = map[Health]int{Healthy: 0, Progressing: 1, Unknown: 2, Degraded: 3}

// Worst returns the worst of hs (Healthy when hs is empty): the health of a stack is
// the worst health of its services.
func Worst(hs ...Health) Health {
	worst := Healthy
	for _, h := range hs {
		if healthOrder[h] > healthOrder[worst] {
			worst = h
		}
	}
	return worst
}

// Swarm's UpdateStatus.State values.
const (
	updateUpdating          = "updating"
	updatePaused            = "paused"
	updateRollbackStarted   = "rollback_started"
	updateRollbackPaused    = "rollback_paused"
	updateRollbackCompleted = "rollback_completed"
)

// ServiceHealth is the health of a service from its task counts and update state:
// nil is Unknown; a rolled-back or paused update is Degraded; an update under way, or
// fewer (or more, while old tasks stop) running tasks than desired, is Progressing;
// otherwise Healthy.
func ServiceHealth(s *resource.ServiceStatus) Health {
	return serviceHealth(s, false)
}

// ServiceHealthAfterWait is ServiceHealth once apply has stopped waiting for the
// service to converge: when the wait timed out, what would be Progressing is Degraded.
func ServiceHealthAfterWait(s *resource.ServiceStatus, timedOut bool) Health {
	return serviceHealth(s, timedOut)
}

func serviceHealth(s *resource.ServiceStatus, timedOut bool) Health {
	if s == nil {
		return Unknown
	}
	progressing := Progressing
	if timedOut {
		progressing = Degraded
	}
	switch s.UpdateState {
	case updateRollbackCompleted, updatePaused, updateRollbackPaused:
		return Degraded
	case updateUpdating, updateRollbackStarted:
		return progressing
	}
	if s.RunningTasks != s.DesiredTasks {
		return progressing
	}
	return Healthy
}

// DescribeTasks says how a service's tasks stand, for people: "N of M tasks running",
// then ", update STATE (MESSAGE)" when Swarm reports an update.
func DescribeTasks(s *resource.ServiceStatus) string {
	if s == nil {
		return "no task counts from Swarm"
	}
	out := fmt.Sprintf("%d of %d tasks running", s.RunningTasks, s.DesiredTasks)
	if s.UpdateState != "" {
		out += ", update " + s.UpdateState
		if s.UpdateMessage != "" {
			out += " (" + s.UpdateMessage + ")"
		}
	}
	return out
}
