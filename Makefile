# buildd-agent — see README.md.
GO        ?= go
BIN       := bin/buildd-agent
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/buildd-agent/buildd-agent/agent.Version=$(VERSION)
CONFIG    ?=
STATICCHECK := $(shell command -v staticcheck 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/staticcheck)
# The whole suite, root and LXD tests included; CI sets BUILDD_AGENT_REQUIRE_ROOT=1
# so that those fail instead of skipping.
TESTFLAGS ?= -count=1 -timeout 45m

.PHONY: all build run setup test unit bench lint fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/buildd-agent

# Install what is needed (LXD, ...) and run the agent on the embedded default
# config (or CONFIG=FILE).
run: build
	bash tests/setup.sh
	$(BIN) run $(if $(CONFIG),--config $(CONFIG))

setup:
	bash tests/setup.sh --fixtures

# The whole test suite against real components: installs and starts them first.
test: setup lint
	BUILDD_AGENT_REQUIRE_ROOT=$${BUILDD_AGENT_REQUIRE_ROOT:-1} $(GO) test $(TESTFLAGS) ./...

# Unit tests only (no root, no LXD): what a laptop can run.
unit:
	$(GO) test -count=1 -short ./...

bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 30m ./... | tee bench.txt

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Short fuzzing of every parser, FUZZTIME each (the corpus in testdata/fuzz is
# replayed by every `go test`). New finds land in the package's testdata/fuzz.
FUZZTIME ?= 20s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

clean:
	rm -rf bin bench.txt
