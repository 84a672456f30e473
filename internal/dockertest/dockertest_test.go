package dockertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/go-connections/nat"
	"github.com/google/go-cmp/cmp"
)

func TestTrimVersion(t *testing.T) {
	tests := map[string]string{
		"/v1.41/services":            "/services",
		"/v1.41/services/abc/update": "/services/abc/update",
		"/_ping":                     "/_ping",
		"/v1.41":                     "/v1.41",
		"/volumes":                   "/volumes",
		"/vx/services":               "/vx/services",
	}
	for in, want := range tests {
		if got := trimVersion(in); got != want {
			t.Errorf("trimVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCounter(t *testing.T) {
	var c Counter
	for _, call := range []Call{{"HEAD", "/_ping"}, {"GET", "/services"}, {"POST", "/services/a/update"}, {"POST", "/services/b/update"}, {"DELETE", "/networks/x"}} {
		c.add(call)
	}
	if got := []int{c.Total(), c.Reads(), c.Writes(), c.Count("POST", "/services/*/update")}; !cmp.Equal(got, []int{5, 2, 3, 2}) {
		t.Errorf("Total, Reads, Writes, Count = %v, want [5 2 3 2]", got)
	}
	want := "DELETE /networks/x ×1\nGET /services ×1\nHEAD /_ping ×1\nPOST /services/a/update ×1\nPOST /services/b/update ×1"
	if diff := cmp.Diff(want, c.Summary()); diff != "" {
		t.Errorf("Summary (-want +got):\n%s", diff)
	}
	c.Reset()
	if c.Total() != 0 {
		t.Errorf("after Reset, Total = %d", c.Total())
	}
}

func TestClientCountsRequests(t *testing.T) {
	cli, counter := Client(t)
	ctx := t.Context()
	if _, err := cli.ServiceList(ctx, swarm.ServiceListOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []Call{{"HEAD", "/_ping"}, {"GET", "/services"}}
	if diff := cmp.Diff(want, counter.Calls()); diff != "" {
		t.Fatalf("calls of a fresh client's first request (-want +got):\n%s", diff)
	}
	stack := UniqueName(t, "dt")
	Cleanup(t, cli, stack)
	counter.Reset()
	if _, err := cli.NetworkCreate(ctx, stack+"_n", network.CreateOptions{Driver: "overlay", Labels: map[string]string{labelNamespace: stack}}); err != nil {
		t.Fatal(err)
	}
	if counter.Reads() != 0 || counter.Writes() != 1 || counter.Count("POST", "/networks/create") != 1 {
		t.Errorf("after one NetworkCreate: reads %d writes %d:\n%s", counter.Reads(), counter.Writes(), counter.Summary())
	}
}

func TestUniqueName(t *testing.T) {
	a, b := UniqueName(t, "Stack"), UniqueName(t, "Stack")
	if a == b || !strings.HasPrefix(a, "stack-") || len(a) != len("stack-")+8 {
		t.Errorf("UniqueName gave %q and %q", a, b)
	}
}

// TestRemoveStack leaves nothing labelled with the stack behind, including a network a
// running task was attached to a moment before.
func TestRemoveStack(t *testing.T) {
	cli, _ := Client(t)
	img := Image(t)
	ctx := t.Context()
	stack := UniqueName(t, "dt")
	Cleanup(t, cli, stack) // in case the test fails half way
	labels := map[string]string{labelNamespace: stack}

	if _, err := cli.NetworkCreate(ctx, stack+"_net", network.CreateOptions{Driver: "overlay", Labels: labels}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: stack + "_s", Labels: labels}, Data: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: stack + "_c", Labels: labels}, Data: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	one := uint64(1)
	resp, err := cli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: stack + "_web", Labels: labels},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: img}, Networks: []swarm.NetworkAttachmentConfig{{Target: stack + "_net"}}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, cli, resp.ID)

	if err := RemoveStack(ctx, cli, stack); err != nil {
		t.Fatalf("RemoveStack: %v", err)
	}
	f := filters.NewArgs(filters.Arg("label", labelNamespace+"="+stack))
	services, _ := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	networks, _ := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	secrets, _ := cli.SecretList(ctx, swarm.SecretListOptions{Filters: f})
	configs, _ := cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: f})
	for _, n := range networks {
		t.Logf("left: %+v", n)
	}
	if n := len(services) + len(networks) + len(secrets) + len(configs); n != 0 {
		t.Errorf("left behind: %d services, %d networks, %d secrets, %d configs", len(services), len(networks), len(secrets), len(configs))
	}
}

func waitRunning(t *testing.T, cli interface {
	TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error)
}, serviceID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
		if err == nil {
			for _, task := range tasks {
				if task.Status.State == swarm.TaskStateRunning {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no task of service %s running: %v", serviceID, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestImage runs the test image as a plain container: it serves /license.txt with
// $MESSAGE, and FAIL_AFTER makes it exit with status 3.
func TestImage(t *testing.T) {
	cli, _ := Client(t)
	img := Image(t)
	ctx := t.Context()

	run := func(env []string, ports nat.PortMap) string {
		t.Helper()
		created, err := cli.ContainerCreate(ctx,
			&container.Config{Image: img, Env: env, ExposedPorts: nat.PortSet{"80/tcp": {}}},
			&container.HostConfig{PortBindings: ports}, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
		})
		if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		return created.ID
	}

	t.Run("serves license.txt", func(t *testing.T) {
		id := run([]string{"MESSAGE=from TestImage"}, nat.PortMap{"80/tcp": {{HostIP: "127.0.0.1"}}})
		inspect, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		bindings := inspect.NetworkSettings.Ports["80/tcp"]
		if len(bindings) == 0 {
			t.Fatalf("port 80 not published: %+v", inspect.NetworkSettings.Ports)
		}
		url := fmt.Sprintf("http://127.0.0.1:%s/license.txt", bindings[0].HostPort)
		body := poll(t, url)
		if !strings.Contains(body, "message: from TestImage") || !strings.Contains(body, "hostname: "+inspect.Config.Hostname) {
			t.Errorf("GET %s = %q", url, body)
		}
	})

	t.Run("FAIL_AFTER exits 3", func(t *testing.T) {
		id := run([]string{"FAIL_AFTER=0s"}, nil)
		waitC, errC := cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
		select {
		case res := <-waitC:
			if res.StatusCode != 3 {
				t.Errorf("exit status %d, want 3", res.StatusCode)
			}
		case err := <-errC:
			t.Fatal(err)
		}
	})
}

func poll(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s never answered 200: last error %v", url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestTagAs(t *testing.T) {
	cli, _ := Client(t)
	name := UniqueName(t, "capstan-tagtest") + ":1"
	TagAs(t, name)
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), name, image.RemoveOptions{}) })
	want, err := cli.ImageInspect(t.Context(), ImageRef)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cli.ImageInspect(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID {
		t.Errorf("%s is %s, want %s (the test image)", name, got.ID, want.ID)
	}
	TagAs(t, name) // again: already the test image, nothing to do
}
