#!/usr/bin/env bash
# Start or remove capstan's three-node test swarm: three dockerd in their own network
# namespaces on one bridge (capbr0, 10.99.0.11-13), one manager and two workers, each
# labelled dev.capstan.ecs-instance-id=i-capstan-nodeN, with the examples' images built
# inside every node. The implementation is the Go package e2e/cluster, which the cluster
# tests use too.
#
#   hack/cluster.sh up [-fresh]   start it (reusing a healthy one; -fresh rebuilds it)
#   hack/cluster.sh down          remove it, and whatever a crashed run left
#
# Needs root, iproute2, nsenter and dockerd. The host's own Docker Engine, if any, is not
# used (only one iptables rule in its DOCKER-USER chain lets the nodes talk).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
up)
	shift
	go run ./e2e/cluster/cmd/cluster up "$@"
	# No registry: build the stand-in image in each node (hack/images.sh honours DOCKER_HOST).
	for n in 1 2 3; do
		DOCKER_HOST=unix:///run/docker-n$n.sock hack/images.sh >/dev/null
	done
	cat <<'NEXT'

The swarm is up. Talk to its manager with
  export DOCKER_HOST=unix:///run/docker-n1.sock   (or: bin/capstan --docker-host unix:///run/docker-n1.sock ...)
  docker node ls
Publish ports with mode: host (there is no routing mesh): a task on node N answers at
10.99.0.1N:PORT. Remove everything with: hack/cluster.sh down
NEXT
	;;
down)
	go run ./e2e/cluster/cmd/cluster down
	;;
*)
	echo "usage: $0 up [-fresh] | down" >&2
	exit 2
	;;
esac
