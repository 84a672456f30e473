package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/resource"
)

const (
	// Bridge joins the nodes' namespaces on the host.
	Bridge = "capbr0"
	// BridgeAddr is the host's address on Bridge; the nodes are 10.99.0.11–13.
	BridgeAddr = "10.99.0.1"
	subnet     = "10.99.0.0/24"
	// stateDir holds the engines' logs and configuration files.
	stateDir = "/run/capstan-cluster"
	// swarmPort is the port the manager listens on for joins and Raft.
	swarmPort = "2377"
	// addrPool is where the nodes' swarm allocates overlay subnets. Swarm's default,
	// 10.0.0.0/8, would include the bridge's own 10.99.0.0/24.
	addrPool = "10.100.0.0/16"
	// heartbeat is the swarm dispatcher's heartbeat period: a stopped engine is marked
	// down after about three of them (the default 5s makes that 15s).
	heartbeat = 2 * time.Second
)

// Node is one node of the cluster.
type Node struct {
	// Name is n1, n2 or n3.
	Name string
	// Role is "manager" (n1) or "worker".
	Role string
	// Addr is the node's address on the bridge (10.99.0.1N): its swarm address and
	// where its tasks' host-mode ports listen.
	Addr string
	// Host is the Docker address of the node's engine (unix:///run/docker-nN.sock).
	Host string
	// ID is the swarm node ID.
	ID string
	// InstanceID is the value of the node's dev.capstan.ecs-instance-id label
	// (i-capstan-nodeN).
	InstanceID string
}

// layout is the cluster every Up builds; ID is filled in once the swarm exists.
var layout = []Node{
	{Name: "n1", Role: "manager", Addr: "10.99.0.11", Host: "unix:///run/docker-n1.sock", InstanceID: "i-capstan-node1"},
	{Name: "n2", Role: "worker", Addr: "10.99.0.12", Host: "unix:///run/docker-n2.sock", InstanceID: "i-capstan-node2"},
	{Name: "n3", Role: "worker", Addr: "10.99.0.13", Host: "unix:///run/docker-n3.sock", InstanceID: "i-capstan-node3"},
}

func (n Node) netns() string      { return "capstan-" + n.Name }
func (n Node) netnsPath() string  { return "/run/netns/" + n.netns() }
func (n Node) veth() string       { return "capv-" + n.Name }
func (n Node) dataRoot() string   { return "/var/lib/docker-" + n.Name }
func (n Node) execRoot() string   { return "/run/docker-" + n.Name }
func (n Node) pidFile() string    { return "/run/docker-" + n.Name + ".pid" }
func (n Node) socket() string     { return "/run/docker-" + n.Name + ".sock" }
func (n Node) logFile() string    { return filepath.Join(stateDir, n.Name+".log") }
func (n Node) configFile() string { return filepath.Join(stateDir, n.Name+".json") }

// Options configure Up.
type Options struct {
	// Images are copied from the host engine into every node, e.g. capstan-testapp:dev.
	Images []string
	// HostDocker is the address of the engine that holds Images (default: $DOCKER_HOST,
	// then the local socket). It is only read from.
	HostDocker string
	// Fresh removes a cluster that is already up and builds a new one.
	Fresh bool
	// Logf receives progress lines (nil: none).
	Logf func(format string, args ...any)
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Cluster is a running three-node swarm.
type Cluster struct {
	// Nodes are n1 (the manager), n2 and n3 (workers), in that order.
	Nodes []Node
	logf  func(format string, args ...any)
}

// Manager returns n1.
func (c *Cluster) Manager() Node { return c.Nodes[0] }

// Workers returns n2 and n3.
func (c *Cluster) Workers() []Node { return append([]Node(nil), c.Nodes[1:]...) }

// Node returns the node named name (n1, n2, n3) or the node whose ID is name.
func (c *Cluster) Node(name string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == name || n.ID == name {
			return n, true
		}
	}
	return Node{}, false
}

// BackendAddresses maps each node's ECS instance ID to its address, as the SLB
// emulator's Config.BackendAddresses wants it.
func (c *Cluster) BackendAddresses() map[string]string {
	m := map[string]string{}
	for _, n := range c.Nodes {
		m[n.InstanceID] = n.Addr
	}
	return m
}

// Client returns a Docker client for node n's engine, with API version negotiation.
// The caller closes it.
func (c *Cluster) Client(n Node) (*client.Client, error) { return nodeClient(n) }

func nodeClient(n Node) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.WithHost(n.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", n.Name, err)
	}
	return cli, nil
}

// StopEngine stops node name's dockerd (SIGTERM, as a shutdown would), leaving its
// namespace and data in place: to the swarm the node goes down. StartEngine brings it
// back.
func (c *Cluster) StopEngine(ctx context.Context, name string) error {
	n, ok := c.Node(name)
	if !ok {
		return fmt.Errorf("no node %q", name)
	}
	return stopEngine(ctx, n)
}

// StartEngine starts node name's dockerd again after StopEngine and waits until it
// answers; the node rejoins the swarm by itself.
func (c *Cluster) StartEngine(ctx context.Context, name string) error {
	n, ok := c.Node(name)
	if !ok {
		return fmt.Errorf("no node %q", name)
	}
	if alive(enginePID(n)) {
		return nil
	}
	return startEngine(ctx, n)
}

// Check reports why this machine cannot run the cluster: not root, or a tool missing.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("the three-node cluster needs root (network namespaces, a bridge, three dockerd)")
	}
	var missing []string
	for _, tool := range []string{"ip", "nsenter", "dockerd"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the three-node cluster needs %v on PATH (Debian: apt-get install iproute2 util-linux docker.io)", missing)
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("no network namespaces here: %w", err)
	}
	return nil
}

// Up starts the cluster (see the package documentation) and returns it. It reuses a
// healthy cluster that is already up unless opts.Fresh; otherwise it removes whatever an
// earlier run left and builds a new one. On error, what it built is removed again.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	c := &Cluster{logf: opts.logf}
	reused := false
	if !opts.Fresh {
		if nodes, err := inspectRunning(ctx); err == nil {
			opts.logf("cluster: reusing the running cluster")
			c.Nodes, reused = nodes, true
		} else if exists() {
			opts.logf("cluster: removing what an earlier run left (%v)", err)
		}
	}
	if !reused {
		if err := Down(ctx, opts.Logf); err != nil {
			return nil, fmt.Errorf("remove the previous cluster: %w", err)
		}
		nodes, err := build(ctx, opts)
		if err != nil {
			if derr := Down(context.WithoutCancel(ctx), opts.Logf); derr != nil {
				err = errors.Join(err, fmt.Errorf("and removing it again: %w", derr))
			}
			return nil, err
		}
		c.Nodes = nodes
	}
	if err := allowForward(); err != nil {
		return nil, err
	}
	if err := c.prepareNodes(ctx); err != nil {
		return nil, err
	}
	if err := loadImages(ctx, c.Nodes, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// exists reports whether anything of a cluster is on the host.
func exists() bool {
	if linkExists(Bridge) {
		return true
	}
	for _, n := range layout {
		for _, p := range []string{n.netnsPath(), n.dataRoot(), n.execRoot(), n.pidFile(), n.socket()} {
			if _, err := os.Stat(p); err == nil {
				return true
			}
		}
	}
	return false
}

// build creates the network, starts the engines and forms the swarm.
func build(ctx context.Context, opts Options) ([]Node, error) {
	if err := checkSubnetFree(); err != nil {
		return nil, err
	}
	opts.logf("cluster: creating bridge %s and namespaces", Bridge)
	if err := createNetwork(); err != nil {
		return nil, err
	}
	if err := allowForward(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	opts.logf("cluster: starting three engines")
	nodes := append([]Node(nil), layout...)
	if err := forEach(nodes, func(n Node) error { return startEngine(ctx, n) }); err != nil {
		return nil, err
	}
	opts.logf("cluster: forming the swarm")
	if err := formSwarm(ctx, nodes); err != nil {
		return nil, err
	}
	for i := range nodes {
		id, err := swarmNodeID(ctx, nodes[i])
		if err != nil {
			return nil, err
		}
		nodes[i].ID = id
	}
	if err := waitReady(ctx, nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

// forEach runs f on every node at once and joins their errors.
func forEach(nodes []Node, f func(Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// engineConfig is the engine's daemon.json: empty, so the host's /etc/docker/daemon.json
// (data roots, hosts, registries of the host engine) never applies to a node.
const engineConfig = "{}\n"

func startEngine(ctx context.Context, n Node) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(n.configFile(), []byte(engineConfig), 0o644); err != nil {
		return err
	}
	logFile, err := os.OpenFile(n.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// nsenter --net changes only the network namespace (ip netns exec would also
	// remount /sys, and dockerd then finds no devices cgroup). Setsid detaches the engine
	// from the caller, so hack/cluster.sh can exit and leave it running.
	cmd := exec.Command("nsenter", "--net="+n.netnsPath(), "dockerd",
		"--config-file", n.configFile(),
		"--data-root", n.dataRoot(),
		"--exec-root", n.execRoot(),
		"--pidfile", n.pidFile(),
		"--host", n.Host,
		"--containerd-namespace", "capstan-"+n.Name,
		"--containerd-plugins-namespace", "capstan-"+n.Name+"-plugins",
		"--bridge", "none",
		"--iptables=false",
		"--ip-masq=false",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd for %s: %w", n.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps the engine whenever it stops

	cli, err := nodeClient(n)
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("dockerd for %s exited (%v); its log %s ends:\n%s", n.Name, werr, n.logFile(), tail(n.logFile(), 15))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd for %s does not answer at %s: %v; its log %s ends:\n%s", n.Name, n.Host, err, n.logFile(), tail(n.logFile(), 15))
		}
	}
}

// tail returns the last lines of a file, for error messages.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	b = bytes.TrimRight(b, "\n")
	for i, n := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			if n++; n == lines {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

func formSwarm(ctx context.Context, nodes []Node) error {
	mgr, err := nodeClient(nodes[0])
	if err != nil {
		return err
	}
	defer mgr.Close()
	retention := int64(2)
	_, err = mgr.SwarmInit(ctx, swarm.InitRequest{
		ListenAddr:      nodes[0].Addr + ":" + swarmPort,
		AdvertiseAddr:   nodes[0].Addr,
		DefaultAddrPool: []string{addrPool},
		SubnetSize:      24,
		Spec: swarm.Spec{
			Dispatcher:    swarm.DispatcherConfig{HeartbeatPeriod: heartbeat},
			Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &retention},
		},
	})
	if err != nil {
		return fmt.Errorf("swarm init on %s: %w", nodes[0].Name, err)
	}
	sw, err := mgr.SwarmInspect(ctx)
	if err != nil {
		return fmt.Errorf("swarm inspect on %s: %w", nodes[0].Name, err)
	}
	return forEach(nodes[1:], func(n Node) error {
		cli, err := nodeClient(n)
		if err != nil {
			return err
		}
		defer cli.Close()
		err = cli.SwarmJoin(ctx, swarm.JoinRequest{
			ListenAddr:    n.Addr + ":" + swarmPort,
			AdvertiseAddr: n.Addr,
			RemoteAddrs:   []string{nodes[0].Addr + ":" + swarmPort},
			JoinToken:     sw.JoinTokens.Worker,
		})
		if err != nil {
			return fmt.Errorf("swarm join of %s: %w (is traffic on %s allowed? see the DOCKER-USER rule)", n.Name, err, Bridge)
		}
		return nil
	})
}

func swarmNodeID(ctx context.Context, n Node) (string, error) {
	cli, err := nodeClient(n)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	info, err := cli.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("docker info on %s: %w", n.Name, err)
	}
	if info.Swarm.NodeID == "" {
		return "", fmt.Errorf("%s is not in a swarm (state %q)", n.Name, info.Swarm.LocalNodeState)
	}
	return info.Swarm.NodeID, nil
}

// waitReady waits until the manager sees every node ready.
func waitReady(ctx context.Context, nodes []Node) error {
	mgr, err := nodeClient(nodes[0])
	if err != nil {
		return err
	}
	defer mgr.Close()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		list, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
		state := map[string]swarm.NodeState{}
		for _, sn := range list {
			state[sn.ID] = sn.Status.State
		}
		ready := err == nil
		for _, n := range nodes {
			ready = ready && state[n.ID] == swarm.NodeStateReady
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("swarm nodes not ready (%v, last error %v): %w", state, err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// inspectRunning returns the nodes of a healthy running cluster, or why there is none.
func inspectRunning(ctx context.Context) ([]Node, error) {
	if !linkExists(Bridge) {
		return nil, errors.New("no bridge")
	}
	nodes := append([]Node(nil), layout...)
	for i, n := range nodes {
		if _, err := os.Stat(n.netnsPath()); err != nil {
			return nil, err
		}
		if !alive(enginePID(n)) {
			return nil, fmt.Errorf("engine of %s not running", n.Name)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err := swarmNodeID(cctx, n)
		cancel()
		if err != nil {
			return nil, err
		}
		nodes[i].ID = id
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := waitReady(cctx, nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

// prepareNodes gives every node its ECS label and makes it active, so a test that
// drained a node and crashed does not leave the next run with two nodes.
func (c *Cluster) prepareNodes(ctx context.Context) error {
	mgr, err := nodeClient(c.Manager())
	if err != nil {
		return err
	}
	defer mgr.Close()
	for _, n := range c.Nodes {
		sn, _, err := mgr.NodeInspectWithRaw(ctx, n.ID)
		if err != nil {
			return fmt.Errorf("inspect node %s: %w", n.Name, err)
		}
		spec := sn.Spec
		if spec.Labels[resource.LabelECSInstanceID] == n.InstanceID && spec.Availability == swarm.NodeAvailabilityActive {
			continue
		}
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[resource.LabelECSInstanceID] = n.InstanceID
		spec.Availability = swarm.NodeAvailabilityActive
		if err := mgr.NodeUpdate(ctx, n.ID, sn.Version, spec); err != nil {
			return fmt.Errorf("label node %s: %w", n.Name, err)
		}
	}
	return nil
}

// loadImages copies opts.Images from the host engine into every node.
func loadImages(ctx context.Context, nodes []Node, opts Options) error {
	if len(opts.Images) == 0 {
		return nil
	}
	copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.HostDocker != "" {
		copts = append(copts, client.WithHost(opts.HostDocker))
	}
	host, err := client.NewClientWithOpts(copts...)
	if err != nil {
		return fmt.Errorf("docker client for the host engine: %w", err)
	}
	defer host.Close()
	opts.logf("cluster: loading %v into every node", opts.Images)
	rc, err := host.ImageSave(ctx, opts.Images)
	if err != nil {
		return fmt.Errorf("save %v from the host engine: %w", opts.Images, err)
	}
	archive, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("save %v from the host engine: %w", opts.Images, err)
	}
	return forEach(nodes, func(n Node) error {
		cli, err := nodeClient(n)
		if err != nil {
			return err
		}
		defer cli.Close()
		resp, err := cli.ImageLoad(ctx, bytes.NewReader(archive), client.ImageLoadWithQuiet(true))
		if err != nil {
			return fmt.Errorf("load images into %s: %w", n.Name, err)
		}
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var msg struct {
				Error string `json:"error"`
			}
			if err := dec.Decode(&msg); err == io.EOF {
				return nil
			} else if err != nil {
				return fmt.Errorf("load images into %s: %w", n.Name, err)
			}
			if msg.Error != "" {
				return fmt.Errorf("load images into %s: %s", n.Name, msg.Error)
			}
		}
	})
}
