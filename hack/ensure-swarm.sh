#!/usr/bin/env bash
# Make sure a Docker Engine in swarm mode answers on the local socket: install Debian's
# docker.io when dockerd is missing, start dockerd when it is not running, and run
# `docker swarm init` when the engine is not a swarm manager. Says what it does.
set -euo pipefail

say() { printf '[capstan] %s\n' "$*"; }

if ! command -v dockerd >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		say "no Docker Engine here; install one (Debian: apt-get install docker.io) and retry"
		exit 1
	fi
	say "installing Debian's docker.io"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq docker.io >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		say "the Docker Engine is not running; start it (systemctl start docker) and retry"
		exit 1
	fi
	say "starting dockerd (log: /tmp/capstan-dockerd.log)"
	(dockerd >/tmp/capstan-dockerd.log 2>&1 &)
	for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
	docker info >/dev/null 2>&1 || { say "dockerd did not start:"; tail -20 /tmp/capstan-dockerd.log; exit 1; }
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" != "active" ]; then
	say "this engine is not in a swarm: running 'docker swarm init' (single node, advertising 127.0.0.1)"
	docker swarm init --advertise-addr 127.0.0.1 >/dev/null
	# The default ingress network is a /24. Engine 20.10 leaks ingress addresses when
	# services publishing ports are created and removed quickly (as tests do), and after a
	# few hundred the allocator answers "could not find an available IP" and tasks stay
	# New. A fresh swarm has no services yet, so give ingress a /16 now.
	say "recreating the ingress network as a /16 (the default /24 runs out under test churn)"
	echo y | docker network rm ingress >/dev/null
	for _ in $(seq 1 20); do docker network inspect ingress >/dev/null 2>&1 || break; sleep 0.5; done
	docker network create --driver overlay --ingress --subnet 10.0.0.0/16 --gateway 10.0.0.1 ingress >/dev/null
elif [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != "true" ]; then
	say "this engine is a swarm worker; capstan needs a manager"
	exit 1
fi
