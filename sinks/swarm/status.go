package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/resource"
)

// ServiceStatus reads how far the named service has converged, in two requests (the
// service, then its tasks). See TaskStatus for how tasks are counted.
func (s *Sink) ServiceStatus(ctx context.Context, name string) (resource.ServiceStatus, error) {
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return resource.ServiceStatus{}, fmt.Errorf("swarm: status of service %s: %w", name, err)
	}
	if svc.Spec.Name != name {
		// The Engine also resolves ID prefixes; a name must match exactly.
		return resource.ServiceStatus{}, fmt.Errorf("swarm: status of service %s: no such service (%q matched service %s)", name, name, svc.Spec.Name)
	}
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
	if err != nil {
		return resource.ServiceStatus{}, fmt.Errorf("swarm: tasks of service %s: %w", name, err)
	}
	return TaskStatus(svc, tasks), nil
}

// TaskStatus counts a service's tasks against what its spec asks for. It is pure, so the
// rules are tested from fixtures:
//
//   - replicated: desired is the replica count (unset means 1); running counts tasks that
//     should run, do run, and run the current task spec;
//   - global: desired is the number of nodes with a task that should run; running counts
//     those nodes whose task runs the current spec;
//   - replicated and global jobs: "running" counts completed tasks of the current job
//     iteration, desired is TotalCompletions (replicated) or the nodes with a task of
//     that iteration (global).
//
// A task runs the current spec when its spec equals the service's task template, ignoring
// Placement (Swarm leaves tasks that still satisfy new placement rules alone) and Runtime
// (filled into the service as "container", absent from tasks). That is Swarm's own test
// for a task needing replacement, so a rollout counts only tasks it has finished with.
func TaskStatus(svc swarm.Service, tasks []swarm.Task) resource.ServiceStatus {
	var st resource.ServiceStatus
	if svc.UpdateStatus != nil {
		st.UpdateState = string(svc.UpdateStatus.State)
		st.UpdateMessage = svc.UpdateStatus.Message
	}
	template := comparableTaskSpec(svc.Spec.TaskTemplate)
	current := func(t swarm.Task) bool { return bytes.Equal(template, comparableTaskSpec(t.Spec)) }
	running := func(t swarm.Task) bool {
		return t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning && current(t)
	}
	mode := svc.Spec.Mode
	switch {
	case mode.Replicated != nil:
		st.DesiredTasks = 1
		if mode.Replicated.Replicas != nil {
			st.DesiredTasks = *mode.Replicated.Replicas
		}
		for _, t := range tasks {
			if running(t) {
				st.RunningTasks++
			}
		}
	case mode.Global != nil:
		nodes := map[string]bool{}
		for _, t := range tasks {
			if t.DesiredState == swarm.TaskStateRunning {
				nodes[t.NodeID] = nodes[t.NodeID] || running(t)
			}
		}
		st.DesiredTasks = uint64(len(nodes))
		for _, ok := range nodes {
			if ok {
				st.RunningTasks++
			}
		}
	case mode.ReplicatedJob != nil || mode.GlobalJob != nil:
		iteration := svc.JobStatus != nil
		var index uint64
		if iteration {
			index = svc.JobStatus.JobIteration.Index
		}
		nodes := map[string]bool{}
		for _, t := range tasks {
			if iteration && (t.JobIteration == nil || t.JobIteration.Index != index) {
				continue
			}
			done := t.Status.State == swarm.TaskStateComplete
			nodes[t.NodeID] = nodes[t.NodeID] || done
			if done && mode.ReplicatedJob != nil {
				st.RunningTasks++
			}
		}
		if rj := mode.ReplicatedJob; rj != nil {
			st.DesiredTasks = 1
			switch {
			case rj.TotalCompletions != nil:
				st.DesiredTasks = *rj.TotalCompletions
			case rj.MaxConcurrent != nil:
				st.DesiredTasks = *rj.MaxConcurrent
			}
		} else {
			st.DesiredTasks = uint64(len(nodes))
			for _, done := range nodes {
				if done {
					st.RunningTasks++
				}
			}
		}
	}
	return st
}

// comparableTaskSpec is a task spec's wire form without the fields that legitimately
// differ between a service's template and its up-to-date tasks.
func comparableTaskSpec(spec swarm.TaskSpec) []byte {
	spec.Placement = nil
	spec.Runtime = ""
	b, _ := json.Marshal(spec) // a decoded API value always marshals
	return b
}
