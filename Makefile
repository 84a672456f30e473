# capstan — the two commands that matter: `make demo` and `make test`.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 3s

.PHONY: all build test unit fuzz vet bench demo image clean test-cluster demo-cluster e2e

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/capstan ./cmd/capstan

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

# Each fuzz target runs briefly on its seed corpus plus FUZZTIME of new inputs.
fuzz:
	@for t in $$($(GO) test -list '^Fuzz' ./manifests/ | grep '^Fuzz'); do \
		echo "fuzz $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./manifests/ || exit 1; \
	done

test: vet unit fuzz

# The three-node swarm tests (e2e/cluster): three dockerd in network namespaces, root only.
test-cluster:
	CAPSTAN_CLUSTER=1 $(GO) test -count=1 -timeout 15m -v ./e2e/cluster/...

# The end-to-end scenarios (e2e/): capstan run against this engine's swarm, a Git server and
# the SLB emulator on 127.0.0.1. Benchmarks: docs/benchmarks.md, "End to end".
e2e:
	$(GO) vet -tags e2e ./e2e/
	$(GO) test -tags e2e -count=1 ./e2e/ -v -timeout 20m

# Benchmarks that need no cluster; the engine ones (cmd/capstan, e2e) say their own commands
# in docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./manifests/ ./reconcile/ ./source/ ./sinks/slb/

demo: build
	./hack/demo.sh

# The examples on a three-node swarm on this machine (root); `hack/cluster.sh down` removes it.
demo-cluster: build
	hack/cluster.sh up
	$(BIN)/capstan apply --docker-host unix:///run/docker-n1.sock --source examples

# The capstan:dev image (Dockerfile): the static binary built here, the host's CA bundle,
# FROM scratch, so no registry is needed.
IMAGE     ?= capstan:dev
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
image:
	rm -rf $(BIN)/image && mkdir -p $(BIN)/image/tmp && chmod 1777 $(BIN)/image/tmp
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/image/capstan ./cmd/capstan
	cp $(CA_BUNDLE) $(BIN)/image/ca-certificates.crt
	docker build -t $(IMAGE) -f Dockerfile $(BIN)/image

clean:
	rm -rf $(BIN)
