package main

import (
	"bytes"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/resource"
)

func TestWarnUnhealthy(t *testing.T) {
	svc := func(name string, st *resource.ServiceStatus) resource.Resource {
		return resource.Resource{Key: resource.ServiceKey(name), Service: &swarm.ServiceSpec{}, Status: st}
	}
	for _, tc := range []struct {
		name   string
		status *resource.ServiceStatus
		want   string
	}{
		{"healthy", &resource.ServiceStatus{RunningTasks: 2, DesiredTasks: 2}, ""},
		{"tasks gave up", &resource.ServiceStatus{RunningTasks: 0, DesiredTasks: 2},
			"warning: service web_front is Progressing: 0 of 2 tasks running; see docker service ps web_front\n"},
		{"rolled back", &resource.ServiceStatus{RunningTasks: 2, DesiredTasks: 2, UpdateState: "rollback_completed", UpdateMessage: "update rolled back"},
			"warning: service web_front is Degraded: 2 of 2 tasks running, update rollback_completed (update rolled back); see docker service ps web_front\n"},
		{"no status", nil, "warning: service web_front is Unknown: no task counts from Swarm; see docker service ps web_front\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desired, live := resource.NewSet(), resource.NewSet()
			desired.Resources[resource.ServiceKey("web_front")] = svc("web_front", nil)
			live.Resources[resource.ServiceKey("web_front")] = svc("web_front", tc.status)
			// Not desired, so not capstan's business here; not live, so not created yet.
			live.Resources[resource.ServiceKey("other_db")] = svc("other_db", &resource.ServiceStatus{DesiredTasks: 1})
			desired.Resources[resource.ServiceKey("web_new")] = svc("web_new", nil)
			var out bytes.Buffer
			warnUnhealthy(&out, desired, live)
			if out.String() != tc.want {
				t.Errorf("warnUnhealthy printed %q, want %q", out.String(), tc.want)
			}
		})
	}
}
