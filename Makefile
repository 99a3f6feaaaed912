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

.PHONY: all build run setup test unit bench lint fuzz clean deb

all: build

# Pure Go (CGO_ENABLED=0), like the .deb: cgo would link libc in through
# net and os/user for nothing the agent needs (Go's own resolver and
# /etc/passwd reader serve it), at 1.7 MB of idle RSS (make bench).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/buildd-agent

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

# The Debian package, dist/buildd-agent_<version>_<arch>.deb, built with
# dpkg-deb from a staged tree (packaging/deb/build.sh says why not debhelper
# or nfpm). The version must start with a digit: the latest tag (v dropped),
# or 0.0 before any, then ~git<commit date>.<commit> for untagged commits.
DEB_ARCH    ?= $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)
DEB_VERSION ?= $(shell t=$$(git describe --tags --abbrev=0 2>/dev/null | sed 's/^v//'); \
	  d=$$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null); h=$$(git rev-parse --short HEAD 2>/dev/null); \
	  if [ -n "$$t" ] && [ "$$(git describe --tags 2>/dev/null)" = "v$$t" ]; then echo "$$t"; \
	  else echo "$${t:-0.0}~git$$d.$$h"; fi)
DEB_OUT     ?= dist
# -buildmode=pie: Debian builds executables as PIE (hardening), and a static
# PIE is what lintian expects of a Go binary outside a golang-go source build.
# -s -w: no symbol tables (lintian: unstripped-binary-or-object).

deb:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -buildmode=pie \
	  -ldflags '-s -w -X github.com/buildd-agent/buildd-agent/agent.Version=$(DEB_VERSION)' \
	  -o $(DEB_OUT)/stage-bin/buildd-agent ./cmd/buildd-agent
	sh packaging/deb/build.sh $(DEB_OUT)/stage-bin/buildd-agent '$(DEB_VERSION)' $(DEB_ARCH) $(DEB_OUT)
	rm -rf $(DEB_OUT)/stage-bin

clean:
	rm -rf bin bench.txt dist
