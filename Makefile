# slirp: user-mode networking for rootless containers.
#
#   make deps     install the Debian packages the demo and the tests use (root)
#   make build    build bin/slirp, bin/slirpctl, bin/slirprun and bin/slirp4netns
#   make demo     run the demo: a namespace reaches a host service through slirp
#   make test     gofmt, go vet and every test with -race (namespace tests need root)
#   make fuzz     run every fuzz target for FUZZTIME each
#   make install  install the binaries under PREFIX (default /usr/local)

GO       ?= go
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
FUZZTIME ?= 30s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/slirp-dev/slirp/internal/cli.Version=$(VERSION) \
            -X github.com/slirp-dev/slirp/internal/cli.Commit=$(COMMIT)

# Debian packages: iproute2/util-linux/iputils-ping for the namespace tests,
# uidmap and busybox-static for the launcher, slirp4netns, passt and iperf3
# for side-by-side comparisons, ncat and socat for the demo.
DEBIAN_PACKAGES := iproute2 util-linux iputils-ping uidmap busybox-static \
                   slirp4netns passt iperf3 ncat socat jq tcpdump ca-certificates

.PHONY: all build deps demo test vet fmt-check fuzz install clean

all: build

build:
	mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...
	ln -sf slirp bin/slirp4netns

deps:
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES)
	# Debian ships /dev/net/tun as 0666 so unprivileged users can open taps;
	# the rootless tests need that.
	[ ! -e /dev/net/tun ] || chmod 0666 /dev/net/tun

demo: build
	./scripts/demo.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: fmt-check vet
	$(GO) test -race -timeout 25m ./...

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

install: build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 bin/slirp bin/slirpctl bin/slirprun $(DESTDIR)$(BINDIR)/
	ln -sf slirp $(DESTDIR)$(BINDIR)/slirp4netns

clean:
	rm -rf bin

# make bench: slirp against slirp4netns and pasta, side by side, in test-made
# namespaces (root; about 6 minutes). Installs iperf3, slirp4netns and passt
# when missing. The full run writes docs/benchmarks.md; with BENCHFLAGS (see
# go run ./bench -h) it only prints, unless BENCHFLAGS has -out. Never part
# of make test.
.PHONY: bench
bench:
	@missing=""; \
	command -v iperf3 >/dev/null 2>&1 || missing="$$missing iperf3"; \
	[ -x /usr/bin/slirp4netns ] || missing="$$missing slirp4netns"; \
	[ -x /usr/bin/pasta ] || missing="$$missing passt"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) run ./bench $(if $(BENCHFLAGS),,-out docs/benchmarks.md) $(BENCHFLAGS)
