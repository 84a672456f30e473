# capstan — the two commands that matter: `make demo` and `make test`.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 3s

.PHONY: all build test unit fuzz vet bench demo clean

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

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./manifests/

demo: build
	./hack/demo.sh

clean:
	rm -rf $(BIN)
