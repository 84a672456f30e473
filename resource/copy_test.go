package resource

import (
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"
)

func TestDeepCopyIsIndependent(t *testing.T) {
	replicas := uint64(2)
	orig := Resource{Key: ServiceKey("s_web"), Service: &swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "s_web", Labels: map[string]string{"a": "1"}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Env: []string{"X=1"}},
			Networks: []swarm.NetworkAttachmentConfig{{Target: "net", Aliases: []string{"web"}}}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}}
	c := DeepCopy(orig)
	if diff := cmp.Diff(orig, c); diff != "" {
		t.Fatalf("copy differs (-orig +copy):\n%s", diff)
	}
	c.Service.Labels["a"] = "2"
	c.Service.TaskTemplate.ContainerSpec.Env[0] = "X=2"
	c.Service.TaskTemplate.Networks[0].Aliases[0] = "other"
	*c.Service.Mode.Replicated.Replicas = 5
	if orig.Service.Labels["a"] != "1" || orig.Service.TaskTemplate.ContainerSpec.Env[0] != "X=1" ||
		orig.Service.TaskTemplate.Networks[0].Aliases[0] != "web" || *orig.Service.Mode.Replicated.Replicas != 2 {
		t.Errorf("editing the copy changed the original: %+v", orig.Service)
	}
	var nilSpec Resource
	if got := DeepCopy(nilSpec); got.Service != nil || got.Network != nil {
		t.Errorf("copy of an empty resource has specs: %+v", got)
	}
}
