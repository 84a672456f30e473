#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults. Makes the local engine a single-node
# swarm if it is not one, builds the small local image the examples run on, then shows
# capstan planning and applying examples/ and a second run that changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
capstan=bin/capstan
src=${CAPSTAN_DEMO_SOURCE:-examples}
emu_addr=127.0.0.1:9810
emu_pid=/tmp/capstan-demo-slbemu.pid

hack/ensure-swarm.sh
say "building the local stand-in image for the examples"
hack/images.sh

# The SLB emulator stands in for Alibaba Cloud: the unmodified SDK talks to it, and with
# --forward each running listener really listens on 127.0.0.1. It keeps running after
# the demo so that a second `make demo` sees the listeners it made (and changes nothing).
if ! curl -fsS -o /dev/null "http://$emu_addr/_emu/state" 2>/dev/null; then
	say "starting the SLB emulator on $emu_addr (log: /tmp/capstan-demo-slbemu.log)"
	CGO_ENABLED=0 go build -trimpath -o bin/slbemu ./cmd/slbemu
	nohup bin/slbemu --listen "$emu_addr" --access-key-id AKIDdemo --access-key-secret demo-secret \
		--load-balancer lb-demo0000000000000001@cn-hangzhou --forward \
		>/tmp/capstan-demo-slbemu.log 2>&1 &
	echo $! >"$emu_pid"
	for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://$emu_addr/_emu/state" 2>/dev/null && break; sleep 0.1; done
fi
export ALIBABA_CLOUD_ACCESS_KEY_ID=AKIDdemo ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret
slb=(--slb-endpoint "http://$emu_addr")

# SLB backends are Swarm nodes, found by their ECS instance id label.
node=$(docker node ls -q --filter role=manager | head -1)
if [ -z "$(docker node inspect "$node" --format '{{index .Spec.Labels "dev.capstan.ecs-instance-id"}}')" ]; then
	say "labelling this swarm node as ECS instance i-demo-node1 (an SLB backend)"
	docker node update --label-add dev.capstan.ecs-instance-id=i-demo-node1 "$node" >/dev/null
fi

say "capstan validate --path $src"
$capstan validate --path "$src"

say "capstan diff --source $src   (what would change)"
$capstan diff --source "$src" "${slb[@]}" || true

say "capstan apply --source $src"
$capstan apply --source "$src" "${slb[@]}"

say "docker stack ls / services"
docker stack ls
for s in $(docker stack ls --format '{{.Name}}'); do docker stack services "$s"; done

say "the emulated SLB: listeners and their backends"
curl -fsS "http://$emu_addr/_emu/state" | python3 -c '
import json, sys
state = json.load(sys.stdin)
groups = {g["id"]: g for g in state.get("vServerGroups") or []}
for lb in state["loadBalancers"]:
    for l in lb.get("listeners") or []:
        a = l.get("attributes", {})
        g = groups.get(a.get("VServerGroupId"), {})
        members = ", ".join("%s:%d" % (b["serverId"], b["port"]) for b in g.get("backends", []))
        print("%s %s/%d %s -> %s [%s]" % (lb["id"], l["protocol"], l["port"], l["status"], g.get("name", "?"), members))
'
if curl -fs -m 5 -o /dev/null http://127.0.0.1:8080/license.txt; then
	echo "GET http://127.0.0.1:8080/license.txt through the emulated SLB: answered by wordpress"
else
	echo "GET http://127.0.0.1:8080/license.txt through the emulated SLB: no answer."
	echo "  The example publishes wordpress in ingress mode; where the kernel lacks IPVS"
	echo "  (the routing mesh), the published port does not forward, so the SLB health"
	echo "  check marks the backend abnormal. With mode: host ports traffic flows."
fi

say "capstan diff --source $src --detailed-exitcode   (a second run: nothing to do)"
$capstan diff --source "$src" "${slb[@]}" --detailed-exitcode && echo "exit 0: live state matches the source"

cat <<'NEXT'

Try: edit examples/wordpress/docker-compose.yml (say, add `scale: 3` to wordpress) and run
  export ALIBABA_CLOUD_ACCESS_KEY_ID=AKIDdemo ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret
  bin/capstan diff --source examples --slb-endpoint http://127.0.0.1:9810
  bin/capstan apply --source examples --slb-endpoint http://127.0.0.1:9810
Remove the demo stacks with: docker stack rm wordpress shop shop-db
Stop the SLB emulator with:   kill "$(cat /tmp/capstan-demo-slbemu.pid)"
NEXT
