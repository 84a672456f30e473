//go:build e2e

package e2e

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/internal/dockertest"
)

// unownedService creates <stack>_extra by hand: in the stack's namespace (docker stack
// services lists it) but without capstan's managed-by label. It is removed with the
// stack at teardown.
func (s *suite) unownedService(t testing.TB) swarm.Service {
	t.Helper()
	replicas := uint64(1)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{
			Name:   s.stack + "_extra",
			Labels: map[string]string{"com.docker.stack.namespace": s.stack},
		},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
			Image: dockertest.ImageRef,
			Env:   []string{"MESSAGE=not capstan's"},
		}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
	resp, err := s.cli.ServiceCreate(ctx(t), spec, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("create an unowned service: %v", err)
	}
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx(t), resp.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// unownedListener creates a TCP listener on the route's load balancer through the SLB
// API, as someone working in the console would: no capstan marker in its description.
// It returns the listener's port.
func (s *suite) unownedListener(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	cfg := sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(false).WithTimeout(10 * time.Second)
	c, err := slb.NewClientWithOptions(lbRegion, cfg, credentials.NewStaticAKCredentialsProvider(slbKeyID, slbKeySecret))
	if err != nil {
		t.Fatal(err)
	}
	c.Domain = s.emu.Endpoint()
	req := slb.CreateCreateLoadBalancerTCPListenerRequest()
	req.LoadBalancerId = lbID
	req.ListenerPort = requests.NewInteger(port)
	req.BackendServerPort = requests.NewInteger(s.publishedPort)
	req.Bandwidth = requests.NewInteger(-1)
	req.Description = "made by hand in the console"
	if _, err := c.CreateLoadBalancerTCPListener(req); err != nil {
		t.Fatalf("create an unowned listener: %v", err)
	}
	return port
}

// networks lists the stack's networks by name.
func (s *suite) networks(t testing.TB) []string {
	t.Helper()
	list, err := s.cli.NetworkList(ctx(t), network.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+s.stack)),
	})
	if err != nil {
		t.Fatalf("list networks: %v", err)
	}
	var out []string
	for _, n := range list {
		out = append(out, n.Name)
	}
	return out
}

// envDuration reads a duration from the environment, def when unset.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}
