//go:build e2e

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The SLB account and load balancer of examples/wordpress/route.yaml, served by the
// emulator.
const (
	slbKeyID     = "AKIDcapstane2e"
	slbKeySecret = "capstan-e2e-secret"
	lbID         = "lb-demo0000000000000001"
	lbRegion     = "cn-hangzhou"
	// instanceLabel marks a swarm node as the ECS instance an SLB backend names.
	instanceLabel = "dev.capstan.ecs-instance-id"
	// Stand-ins for the example's wordpress:4.5.3 and mysql:5.7.13 (the test image under
	// names of its own, so an image a user or `make demo` tagged is never replaced).
	wordpressImage = "capstan-e2e/wordpress:4.5.3"
	mysqlImage     = "capstan-e2e/mysql:5.7.13"
)

func TestMain(m *testing.M) {
	// The Git server runs the git binary: keep the machine's configuration out of it.
	os.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	// gitkit logs every request through the standard logger.
	log.SetOutput(io.Discard)
	code := m.Run()
	if the.s != nil {
		if err := the.s.teardown(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e teardown: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// suite is what every scenario shares: one swarm stack driven by one `capstan run`.
type suite struct {
	root  string // the module's root directory
	tmp   string
	bin   string // the capstan binary under test
	cli   *client.Client
	stack string // stack name, also capstan's --instance

	emu *slbemu.Server
	git *gitServer
	// repo is the developer's checkout that commits and pushes.
	repo *workRepo
	// dmn is the running `capstan run`.
	dmn   *daemonProc
	notes *notifications
	// docker relays capstan run's Docker requests and records them (nil when the engine
	// is not on a Unix socket).
	docker *dockerProxy

	listenerPort  int // the SLB listener port of the route (8080 unless taken)
	publishedPort int // wordpress's host-mode published port
	nodeID        string
	instanceID    string // the node's ECS instance id label
	webhookSecret string
	interval      time.Duration // capstan run's poll interval: CAPSTAN_E2E_INTERVAL, 2s by default

	cleanups []func() error
}

var the struct {
	once sync.Once
	s    *suite
	err  error
}

// setup returns the shared suite, building it on first use. A test that cannot reach
// the engine skips (or fails under CAPSTAN_REQUIRE_DOCKER=1) before anything is built.
func setup(t testing.TB) *suite {
	t.Helper()
	dockertest.Client(t)
	the.once.Do(func() {
		s := &suite{}
		the.s = s // teardown removes whatever a failed setup made
		the.err = errors.New("setup did not finish")
		the.err = s.build(t)
	})
	if the.err != nil {
		t.Fatalf("e2e setup: %v", the.err)
	}
	return the.s
}

func (s *suite) build(t testing.TB) error {
	var err error
	if s.root, err = filepath.Abs(".."); err != nil {
		return err
	}
	if s.tmp, err = os.MkdirTemp("", "capstan-e2e-"); err != nil {
		return err
	}
	s.cleanups = append(s.cleanups, func() error { return os.RemoveAll(s.tmp) })
	s.stack = dockertest.UniqueName(t, "wp-e2e")
	dockertest.TagAs(t, wordpressImage, mysqlImage)
	if s.cli, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err != nil {
		return err
	}

	start := time.Now()
	s.bin = filepath.Join(s.tmp, "capstan")
	build := exec.Command("go", "build", "-o", s.bin, "./cmd/capstan")
	build.Dir = s.root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/capstan: %w\n%s", err, out)
	}
	t.Logf("built capstan in %s", time.Since(start).Round(time.Millisecond))

	if s.listenerPort, err = pickListenerPort(); err != nil {
		return err
	}
	if s.publishedPort, err = s.pickPublishedPort(); err != nil {
		return err
	}
	if err := s.labelNode(t); err != nil {
		return err
	}

	s.emu = slbemu.New(slbemu.Config{
		Credentials:   []slbemu.Credential{{AccessKeyID: slbKeyID, AccessKeySecret: slbKeySecret}},
		LoadBalancers: []slbemu.LoadBalancer{{ID: lbID, Region: lbRegion}},
		Forward:       true,
		// The route checks every 2 s with thresholds of 3; the emulator checks faster so
		// a new backend serves sooner. The thresholds still apply.
		HealthCheckInterval: 300 * time.Millisecond,
		HealthCheckTimeout:  time.Second,
	})
	if err := s.emu.Start("127.0.0.1:0"); err != nil {
		return fmt.Errorf("SLB emulator: %w", err)
	}
	s.cleanups = append(s.cleanups, s.emu.Close)

	if s.git, err = newGitServer(filepath.Join(s.tmp, "git")); err != nil {
		return err
	}
	s.cleanups = append(s.cleanups, func() error { s.git.close(); return nil })
	if s.repo, err = newWorkRepo(filepath.Join(s.tmp, "checkout"), s.git.directURL()); err != nil {
		return err
	}
	if _, err := s.repo.commit("wordpress, as in examples/wordpress", s.files(baseline())); err != nil {
		return err
	}

	if s.notes, err = newNotifications(); err != nil {
		return err
	}
	s.cleanups = append(s.cleanups, func() error { s.notes.close(); return nil })
	if s.docker, err = newDockerProxy(); err != nil {
		return err
	}
	if s.docker != nil {
		s.cleanups = append(s.cleanups, s.docker.close)
	}
	s.webhookSecret = "e2e-webhook-" + s.stack
	s.interval = envDuration(t, "CAPSTAN_E2E_INTERVAL", 2*time.Second)
	if s.dmn, err = s.startDaemon(); err != nil {
		return err
	}
	t.Logf("stack %s: git %s, SLB emulator %s, listener 127.0.0.1:%d, wordpress published on host port %d, daemon %s",
		s.stack, s.git.url(), s.emu.URL(), s.listenerPort, s.publishedPort, s.dmn.url)
	return nil
}

// teardown stops the daemon and removes everything the suite made, newest first.
func (s *suite) teardown() error {
	var errs []error
	if s.dmn != nil {
		errs = append(errs, s.dmn.stop())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if s.cli != nil && s.stack != "" {
		errs = append(errs, dockertest.RemoveStack(ctx, s.cli, s.stack))
		// The lease capstan run keeps for --instance.
		if err := s.cli.ConfigRemove(ctx, "capstan-lease-"+s.stack); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove lease: %w", err))
		}
	}
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, s.cleanups[i]())
	}
	if s.cli != nil {
		_ = s.cli.Close()
	}
	return errors.Join(errs...)
}

// labelNode makes this swarm node an SLB backend for the test: it keeps an ECS
// instance id label that is already there (make demo sets one) and otherwise adds one,
// removed again at teardown.
func (s *suite) labelNode(t testing.TB) error {
	ctx := context.Background()
	info, err := s.cli.Info(ctx)
	if err != nil {
		return fmt.Errorf("docker info: %w", err)
	}
	s.nodeID = info.Swarm.NodeID
	node, _, err := s.cli.NodeInspectWithRaw(ctx, s.nodeID)
	if err != nil {
		return fmt.Errorf("inspect node: %w", err)
	}
	if v := node.Spec.Labels[instanceLabel]; v != "" {
		s.instanceID = v
		return nil
	}
	s.instanceID = "i-" + s.stack
	if err := s.updateNodeLabel(ctx, s.instanceID); err != nil {
		return err
	}
	s.cleanups = append(s.cleanups, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return s.updateNodeLabel(ctx, "")
	})
	return nil
}

// updateNodeLabel sets (or, with "", removes) the instance label, retrying when another
// writer bumped the node's version in between.
func (s *suite) updateNodeLabel(ctx context.Context, value string) error {
	for attempt := 0; ; attempt++ {
		node, _, err := s.cli.NodeInspectWithRaw(ctx, s.nodeID)
		if err != nil {
			return fmt.Errorf("inspect node: %w", err)
		}
		spec := node.Spec
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		if value == "" {
			delete(spec.Labels, instanceLabel)
		} else {
			spec.Labels[instanceLabel] = value
		}
		err = s.cli.NodeUpdate(ctx, s.nodeID, node.Version, spec)
		if err == nil || attempt == 5 {
			if err != nil {
				return fmt.Errorf("label node %s: %w", s.nodeID, err)
			}
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pickListenerPort is 8080, the example's listener port, when 127.0.0.1:8080 is free;
// otherwise (make demo's emulator may hold it) a free port the kernel picks.
func pickListenerPort() (int, error) {
	if ln, err := net.Listen("tcp", "127.0.0.1:8080"); err == nil {
		ln.Close()
		return 8080, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a listener port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pickPublishedPort finds a port in Swarm's 30000–32767 range that no service publishes
// and nothing on this host listens on.
func (s *suite) pickPublishedPort() (int, error) {
	services, err := s.cli.ServiceList(context.Background(), swarm.ServiceListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list services: %w", err)
	}
	used := map[uint32]bool{}
	for _, svc := range services {
		for _, p := range svc.Endpoint.Ports {
			used[p.PublishedPort] = true
		}
		if svc.Spec.EndpointSpec != nil {
			for _, p := range svc.Spec.EndpointSpec.Ports {
				used[p.PublishedPort] = true
			}
		}
	}
	// Start somewhere that depends on the stack name, so parallel runs rarely collide.
	n, _ := strconv.ParseUint(s.stack[len(s.stack)-4:], 16, 32)
	for i := range 2768 {
		port := 30000 + (int(n)+i)%2768
		if used[uint32(port)] {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		return port, nil
	}
	return 0, errors.New("no free port in 30000-32767")
}

// services lists the stack's live services by their short name (wordpress, mysql).
func (s *suite) services(t testing.TB) map[string]swarm.Service {
	t.Helper()
	list, err := s.cli.ServiceList(context.Background(), swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+s.stack)),
	})
	if err != nil {
		t.Fatalf("list services: %v", err)
	}
	out := map[string]swarm.Service{}
	for _, svc := range list {
		out[strings.TrimPrefix(svc.Spec.Name, s.stack+"_")] = svc
	}
	return out
}

// runningTasks counts the service's tasks that run and are meant to.
func (s *suite) runningTasks(t testing.TB, service string) int {
	t.Helper()
	tasks, err := s.cli.TaskList(context.Background(), swarm.TaskListOptions{
		Filters: filters.NewArgs(filters.Arg("service", s.stack+"_"+service), filters.Arg("desired-state", "running")),
	})
	if err != nil {
		t.Fatalf("list tasks: %v", err)
	}
	n := 0
	for _, task := range tasks {
		if task.Status.State == swarm.TaskStateRunning {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or timeout passes; then the test fails with cond's
// last word and the end of the daemon's log. It is a deadline for something that must
// happen, never a measurement.
func (s *suite) waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last seen: %s\n--- capstan run log (end) ---\n%s", what, timeout, detail, s.dmn.logTail(40))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
