package cluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// EnvCluster, set to "1", lets tests start the cluster (make test-cluster does). Without
// it they skip: the cluster needs root, takes half a minute to build, and plain `go test
// ./...` should not start three engines behind a developer's back.
const EnvCluster = "CAPSTAN_CLUSTER"

// requireDockerEnv is dockertest.RequireDockerEnv: under it a cluster that cannot run is
// a failure, not a skip, so CI never passes by skipping.
const requireDockerEnv = "CAPSTAN_REQUIRE_DOCKER"

// Require skips tb unless CAPSTAN_CLUSTER=1 and this machine can run the cluster; when
// CAPSTAN_CLUSTER=1 and CAPSTAN_REQUIRE_DOCKER=1 and it cannot, tb fails instead.
func Require(tb testing.TB) {
	tb.Helper()
	if os.Getenv(EnvCluster) != "1" {
		tb.Skipf("skipping: three-node cluster tests run with %s=1 (make test-cluster); they need root, iproute2, nsenter and dockerd", EnvCluster)
	}
	if err := Check(); err != nil {
		if os.Getenv(requireDockerEnv) == "1" {
			tb.Fatalf("%v (%s=1 makes this a failure)", err, requireDockerEnv)
		}
		tb.Skipf("skipping: %v (set %s=1 to fail instead)", err, requireDockerEnv)
	}
}

var shared struct {
	mu      sync.Mutex
	cluster *Cluster
	err     error
	started bool
}

// Shared returns the cluster the tests of one package share, starting it on first use
// with the given images loaded (later calls load nothing new: pass the same images
// everywhere). Call Require first, and end TestMain with Main so the cluster is removed.
func Shared(tb testing.TB, images ...string) *Cluster {
	tb.Helper()
	Require(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		shared.cluster, shared.err = Up(ctx, Options{Images: images, Fresh: true, Logf: tb.Logf})
		if shared.err == nil {
			tb.Logf("cluster up in %s", time.Since(start).Round(time.Second))
		}
	}
	if shared.err != nil {
		tb.Fatalf("start the three-node cluster: %v", shared.err)
	}
	return shared.cluster
}

// Main runs the package's tests and then removes the cluster if a test started it:
//
//	func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	started := shared.started
	shared.mu.Unlock()
	if started {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := Down(ctx, nil); err != nil {
			fmt.Fprintf(os.Stderr, "remove the three-node cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}
