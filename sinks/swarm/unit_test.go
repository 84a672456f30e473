package swarm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

func u64(v uint64) *uint64 { return &v }

func TestTaskStatus(t *testing.T) {
	current := swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "app:2"}, Runtime: "container",
		Placement: &swarm.Placement{Constraints: []string{"node.role==manager"}}}
	old := swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "app:1"}}
	// A task as Swarm returns it: no Runtime, and an older placement it still satisfies.
	task := func(spec swarm.TaskSpec, desired, state swarm.TaskState, node string) swarm.Task {
		spec.Runtime = ""
		if spec.Placement != nil {
			spec.Placement = &swarm.Placement{}
		}
		return swarm.Task{Spec: spec, DesiredState: desired, Status: swarm.TaskStatus{State: state}, NodeID: node}
	}
	jobTask := func(iteration uint64, state swarm.TaskState, node string) swarm.Task {
		tk := task(current, swarm.TaskStateComplete, state, node)
		tk.JobIteration = &swarm.Version{Index: iteration}
		return tk
	}
	const (
		run  = swarm.TaskStateRunning
		shut = swarm.TaskStateShutdown
		done = swarm.TaskStateComplete
	)
	service := func(mode swarm.ServiceMode, update *swarm.UpdateStatus) swarm.Service {
		return swarm.Service{Spec: swarm.ServiceSpec{TaskTemplate: current, Mode: mode}, UpdateStatus: update}
	}
	replicated := func(n *uint64) swarm.ServiceMode {
		return swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: n}}
	}

	tests := []struct {
		name  string
		svc   swarm.Service
		tasks []swarm.Task
		want  resource.ServiceStatus
	}{
		{"replicated converged", service(replicated(u64(2)), nil),
			[]swarm.Task{task(current, run, run, "a"), task(current, run, run, "a"), task(old, shut, shut, "a")},
			resource.ServiceStatus{RunningTasks: 2, DesiredTasks: 2}},
		{"replicated mid-rollout: old-spec tasks do not count", service(replicated(u64(2)),
			&swarm.UpdateStatus{State: swarm.UpdateStateUpdating, Message: "update in progress"}),
			[]swarm.Task{task(current, run, run, "a"), task(old, run, run, "a"), task(current, run, swarm.TaskStatePreparing, "a")},
			resource.ServiceStatus{RunningTasks: 1, DesiredTasks: 2, UpdateState: "updating", UpdateMessage: "update in progress"}},
		{"replicated, replicas unset means 1", service(replicated(nil), nil),
			[]swarm.Task{task(current, run, run, "a")},
			resource.ServiceStatus{RunningTasks: 1, DesiredTasks: 1}},
		{"replicated, shutting down does not count", service(replicated(u64(1)), nil),
			[]swarm.Task{task(current, shut, run, "a")},
			resource.ServiceStatus{RunningTasks: 0, DesiredTasks: 1}},
		{"scaled to zero", service(replicated(u64(0)), nil), nil, resource.ServiceStatus{}},
		{"rolled back", service(replicated(u64(1)), &swarm.UpdateStatus{State: swarm.UpdateStateRollbackCompleted, Message: "rollback completed"}),
			[]swarm.Task{task(current, run, run, "a")},
			resource.ServiceStatus{RunningTasks: 1, DesiredTasks: 1, UpdateState: "rollback_completed", UpdateMessage: "rollback completed"}},
		{"global", service(swarm.ServiceMode{Global: &swarm.GlobalService{}}, nil),
			[]swarm.Task{task(current, run, run, "a"), task(current, run, swarm.TaskStateStarting, "b"), task(old, run, run, "c"), task(old, shut, shut, "d")},
			resource.ServiceStatus{RunningTasks: 1, DesiredTasks: 3}},
		{"replicated job counts completions of the current iteration", swarm.Service{
			Spec:      swarm.ServiceSpec{TaskTemplate: current, Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: u64(2), TotalCompletions: u64(3)}}},
			JobStatus: &swarm.JobStatus{JobIteration: swarm.Version{Index: 7}}},
			[]swarm.Task{jobTask(7, done, "a"), jobTask(7, done, "a"), jobTask(7, run, "a"), jobTask(5, done, "a")},
			resource.ServiceStatus{RunningTasks: 2, DesiredTasks: 3}},
		{"global job", swarm.Service{
			Spec:      swarm.ServiceSpec{TaskTemplate: current, Mode: swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}},
			JobStatus: &swarm.JobStatus{JobIteration: swarm.Version{Index: 2}}},
			[]swarm.Task{jobTask(2, done, "a"), jobTask(2, run, "b"), jobTask(1, done, "c")},
			resource.ServiceStatus{RunningTasks: 1, DesiredTasks: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, TaskStatus(tt.svc, tt.tasks)); diff != "" {
				t.Errorf("TaskStatus (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLiveNetwork(t *testing.T) {
	n := network.Summary{
		Name: "st_net", ID: "abc", Scope: "swarm", Driver: "overlay", EnableIPv6: true, Attachable: true,
		IPAM:    network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.0.9.0/24", Gateway: "10.0.9.1"}}},
		Options: map[string]string{vxlanOption: "4101", "encrypted": ""},
		Labels:  map[string]string{resource.LabelNamespace: "st"},
	}
	yes := true
	want := resource.Resource{
		Key: resource.NetworkKey("st_net"), Stack: "st", ID: "abc",
		Network: &network.CreateOptions{
			Driver: "overlay", Scope: "swarm", EnableIPv6: &yes, Attachable: true,
			IPAM:    &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.0.9.0/24", Gateway: "10.0.9.1"}}},
			Options: map[string]string{"encrypted": ""},
			Labels:  map[string]string{resource.LabelNamespace: "st"},
		},
	}
	if diff := cmp.Diff(want, liveNetwork(n)); diff != "" {
		t.Errorf("liveNetwork (-want +got):\n%s", diff)
	}
	n.Options = map[string]string{vxlanOption: "4101"}
	if got := liveNetwork(n).Network.Options; got != nil {
		t.Errorf("options holding only the VXLAN ID became %v, want nil", got)
	}
}

func TestIsSwarmNetwork(t *testing.T) {
	tests := []struct {
		n    network.Summary
		want bool
	}{
		{network.Summary{Name: "st_net", Scope: "swarm"}, true},
		{network.Summary{Name: "ingress", Scope: "swarm", Ingress: true}, false},
		{network.Summary{Name: "my-ingress", Scope: "swarm", Ingress: true}, false},
		{network.Summary{Name: "bridge", Scope: "local"}, false},
		{network.Summary{Name: "host", Scope: "local"}, false},
	}
	for _, tt := range tests {
		if got := isSwarmNetwork(tt.n); got != tt.want {
			t.Errorf("isSwarmNetwork(%s, %s) = %t, want %t", tt.n.Name, tt.n.Scope, got, tt.want)
		}
	}
}

func TestNamedNetworks(t *testing.T) {
	names := map[string]string{"id1": "st_front", "id2": "host"}
	in := []swarm.NetworkAttachmentConfig{{Target: "id1", Aliases: []string{"web"}}, {Target: "id2"}, {Target: "unknown"}}
	want := []swarm.NetworkAttachmentConfig{{Target: "st_front", Aliases: []string{"web"}}, {Target: "host"}, {Target: "unknown"}}
	if diff := cmp.Diff(want, namedNetworks(in, names)); diff != "" {
		t.Errorf("namedNetworks (-want +got):\n%s", diff)
	}
	if in[0].Target != "id1" {
		t.Error("namedNetworks modified its input")
	}
	if namedNetworks(nil, names) != nil {
		t.Error("nil attachments should stay nil")
	}
}

func TestWithoutNetwork(t *testing.T) {
	spec := swarm.ServiceSpec{
		TaskTemplate: swarm.TaskSpec{Networks: []swarm.NetworkAttachmentConfig{{Target: "id-a"}, {Target: "id-b"}}},
		Networks:     []swarm.NetworkAttachmentConfig{{Target: "id-c"}},
	}
	got, ok := withoutNetwork(spec, "id-a", "st_a")
	want := []swarm.NetworkAttachmentConfig{{Target: "id-b"}, {Target: "id-c"}}
	if !ok || got.Networks != nil {
		t.Fatalf("withoutNetwork: ok=%t, Spec.Networks=%v", ok, got.Networks)
	}
	if diff := cmp.Diff(want, got.TaskTemplate.Networks); diff != "" {
		t.Errorf("TaskTemplate.Networks (-want +got):\n%s", diff)
	}
	if _, ok := withoutNetwork(spec, "id-x", "st_x"); ok {
		t.Error("withoutNetwork found a network the service does not use")
	}
}

// TestApplyRefusesBeforeWriting covers changes the sink must reject without a single
// request: a nil client would panic on the first one.
func TestApplyRefusesBeforeWriting(t *testing.T) {
	s := New(nil, "mine")
	owned := func(owner string) *resource.Resource {
		labels := map[string]string{}
		if owner != "" {
			labels[resource.LabelManagedBy] = owner
		}
		return &resource.Resource{Key: resource.SecretKey("st_s"), ID: "x",
			Secret: &swarm.SecretSpec{Annotations: swarm.Annotations{Name: "st_s", Labels: labels}}}
	}
	svc := &resource.Resource{Key: resource.ServiceKey("st_web"), Service: &swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "st_other"}}}
	tests := []struct {
		name string
		c    reconcile.Change
		want string
	}{
		{"not a swarm key", reconcile.Change{Action: reconcile.Create, Key: resource.Key{Sink: "slb", Kind: "listener", Name: "x"}}, "not a swarm key"},
		{"create without After", reconcile.Change{Action: reconcile.Create, Key: resource.SecretKey("st_s")}, "Change.After is nil"},
		{"delete unmanaged", reconcile.Change{Action: reconcile.Delete, Key: resource.SecretKey("st_s"), Before: owned("")}, "not managed by capstan"},
		{"delete another instance's", reconcile.Change{Action: reconcile.Delete, Key: resource.SecretKey("st_s"), Before: owned("theirs")}, `instance "theirs"`},
		{"delete without Before", reconcile.Change{Action: reconcile.Delete, Key: resource.SecretKey("st_s")}, "Change.Before is nil"},
		{"spec name differs from key", reconcile.Change{Action: reconcile.Create, Key: resource.ServiceKey("st_web"), After: svc}, `named "st_other"`},
		{"update a network", reconcile.Change{Action: reconcile.Update, Key: resource.NetworkKey("st_n"),
			Before: &resource.Resource{ID: "n1", Network: &network.CreateOptions{}}, After: &resource.Resource{Network: &network.CreateOptions{}}}, "Replace"},
		{"desired labelled for another instance", reconcile.Change{Action: reconcile.Create, Key: resource.SecretKey("st_s"), After: owned("theirs")}, `this is capstan instance "mine"`},
		{"config content change", reconcile.Change{Action: reconcile.Update, Key: resource.ConfigKey("st_c"),
			Before: &resource.Resource{ID: "c1", Config: &swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "st_c"}, Data: []byte("a")}},
			After:  &resource.Resource{Config: &swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "st_c"}, Data: []byte("b")}}}, "rotate"},
		{"unknown action", reconcile.Change{Action: '?', Key: resource.SecretKey("st_s")}, "unknown action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Apply(context.Background(), tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %v, want an error containing %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.c.Key.String()) {
				t.Errorf("error %q does not name the key %s", err, tt.c.Key)
			}
		})
	}
	if err := s.Apply(context.Background(), reconcile.Change{Action: reconcile.NoOp, Key: resource.SecretKey("st_s")}); err != nil {
		t.Errorf("NoOp: %v", err)
	}
}

// conflictClient answers every service update with swarmkit's version conflict: the real
// engine cannot be made to lose the same race twice on demand.
type conflictClient struct {
	client.APIClient // nil: any other call panics
	updates          []uint64
	inspects         int
}

var errOutOfSequence = errors.New("Error response from daemon: rpc error: code = Unknown desc = update out of sequence")

func (c *conflictClient) ServiceUpdate(_ context.Context, _ string, v swarm.Version, _ swarm.ServiceSpec, _ swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	c.updates = append(c.updates, v.Index)
	return swarm.ServiceUpdateResponse{}, errOutOfSequence
}

func (c *conflictClient) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	c.inspects++
	return swarm.Service{ID: id, Meta: swarm.Meta{Version: swarm.Version{Index: 42}}}, nil, nil
}

func TestUpdateRetriesOnlyOnce(t *testing.T) {
	fake := &conflictClient{}
	s := New(fake, "mine")
	spec := &swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "st_web"}, TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "app"}}}
	err := s.Apply(context.Background(), reconcile.Change{
		Action: reconcile.Update, Key: resource.ServiceKey("st_web"),
		Before: &resource.Resource{ID: "svc1", Version: 10, Service: spec},
		After:  &resource.Resource{Service: spec},
	})
	if err == nil || !errors.Is(err, errOutOfSequence) || !strings.Contains(err.Error(), "swarm/service/st_web") || !strings.Contains(err.Error(), "version 42") {
		t.Fatalf("Apply = %v, want the wrapped conflict naming the key and the re-read version", err)
	}
	if diff := cmp.Diff([]uint64{10, 42}, fake.updates); diff != "" || fake.inspects != 1 {
		t.Errorf("update versions (-want +got):\n%s\nre-reads: %d, want 1", diff, fake.inspects)
	}
}

func TestWarnOneLineWithAHint(t *testing.T) {
	s := New(nil, "")
	var got []string
	s.OnWarning(func(k resource.Key, w string) { got = append(got, k.Name+": "+w) })
	s.warn(resource.ServiceKey("web_app"), []string{
		"image app:1 could not be accessed on a registry to record\nits digest. Each node will access app:1 independently,\npossibly leading to different nodes running different\nversions of the image.\n",
		"something else",
	})
	want := []string{
		"web_app: image app:1 could not be accessed on a registry to record its digest. Each node will access app:1 independently, possibly leading to different nodes running different versions of the image. (the stack's resolveImage: never skips the registry)",
		"web_app: something else",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
