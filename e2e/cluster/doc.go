// Package cluster starts a real three-node Docker Swarm on one Linux machine for capstan's
// integration and end-to-end tests, and removes it again.
//
// The original deployment runs on three nodes, each an SLB backend server; a single-node
// swarm cannot show tasks spreading and being rescheduled, or a drained or lost node
// leaving the backend set. Each node here is its own dockerd in its own network namespace,
// joined to the others by a bridge on the host:
//
//	bridge capbr0          10.99.0.1/24 (the host's side)
//	n1  manager  netns capstan-n1  eth0 10.99.0.11  unix:///run/docker-n1.sock
//	n2  worker   netns capstan-n2  eth0 10.99.0.12  unix:///run/docker-n2.sock
//	n3  worker   netns capstan-n3  eth0 10.99.0.13  unix:///run/docker-n3.sock
//
// Every node carries the label dev.capstan.ecs-instance-id=i-capstan-nodeN, so capstan
// treats it as the ECS instance of that name; tests map those IDs back to 10.99.0.1N for
// the SLB emulator (Node.InstanceID, Node.Addr). No registry is reachable, so Up copies
// images from the host engine into every node (docker save | docker load).
//
// # What it touches on the host
//
// Only what it creates: the bridge, three namespaces and their veth pairs, the engines'
// data roots /var/lib/docker-nN, exec roots /run/docker-nN, their sockets and pid files,
// /run/capstan-cluster (engine logs and configs), and — when the host runs its own Docker
// Engine, whose FORWARD policy drops bridged traffic — one rule
// "-A DOCKER-USER -i capbr0 -o capbr0 -j ACCEPT". The host engine itself is only read
// from (ImageSave); its networks, containers and swarm are never touched.
//
// Engines run with nsenter --net (never ip netns exec, which remounts /sys and leaves
// dockerd without its devices cgroup), --bridge none and --iptables=false, so all their
// rules and bridges stay inside their namespaces. The routing mesh does not work here
// (no IPVS in the kernel): publish ports with mode: host; a task's port then listens at
// its node's own address, 10.99.0.1N:PORT, reachable from the host through the bridge.
//
// # Lifecycle
//
// Up is idempotent: a cluster that is already up and healthy is reused (images are
// loaded again, labels set again); anything else — leftovers of a crashed run, a half
// built cluster — is removed by Down first and built afresh. Down removes everything
// listed above whether or not the engines still run, killing any leftover process of an
// earlier run by its process ID (found through its network namespace or its own data
// paths, never by name) and unmounting what a killed engine left mounted.
//
// It needs root, iproute2 (ip), util-linux (nsenter) and dockerd. Tests opt in with
// CAPSTAN_CLUSTER=1 (make test-cluster); see Require.
package cluster
