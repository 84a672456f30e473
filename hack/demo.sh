#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults. Makes the local engine a single-node
# swarm if it is not one, builds the small local image the examples run on, then shows
# capstan planning and applying examples/ and a second run that changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
capstan=bin/capstan
src=${CAPSTAN_DEMO_SOURCE:-examples}

hack/ensure-swarm.sh
say "building the local stand-in image for the examples"
hack/images.sh

say "capstan validate --path $src"
$capstan validate --path "$src"

say "capstan diff --source $src   (what would change)"
$capstan diff --source "$src" || true

say "capstan apply --source $src"
$capstan apply --source "$src"

say "docker stack ls / services"
docker stack ls
for s in $(docker stack ls --format '{{.Name}}'); do docker stack services "$s"; done

say "capstan diff --source $src --detailed-exitcode   (a second run: nothing to do)"
$capstan diff --source "$src" --detailed-exitcode && echo "exit 0: live state matches the source"

cat <<'NEXT'

Try: edit examples/wordpress/docker-compose.yml (say, add `scale: 3` to wordpress) and run
  bin/capstan diff --source examples
  bin/capstan apply --source examples
Remove the demo stacks with: docker stack rm wordpress shop shop-db
NEXT
