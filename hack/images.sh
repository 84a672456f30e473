#!/usr/bin/env bash
# Build the small local image that stands in for every image the examples name (no
# registry is needed: it is FROM scratch around a static Go binary), and tag it with
# those names unless an image of that name already exists.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$work/testapp" ./internal/testapp
cat >"$work/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY testapp /testapp
ENTRYPOINT ["/testapp"]
DOCKERFILE
docker build -q -t capstan-testapp:dev "$work" >/dev/null 2>&1 || docker build -t capstan-testapp:dev "$work"

# Every image an example names that the engine does not have yet.
for img in $(grep -rhoE '^\s*(image|"Image"):\s*"?[^"[:space:]]+' examples | sed -E 's/.*(image|"Image"):\s*"?//' | sort -u); do
	case "$img" in *'$'*) continue ;; esac
	if ! docker image inspect "$img" >/dev/null 2>&1; then
		docker tag capstan-testapp:dev "$img"
		printf '[capstan] tagged the local test image as %s\n' "$img"
	fi
done
