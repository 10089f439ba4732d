# slirp: user-mode networking for rootless containers.
#
#   make deps     install the Debian packages the demo and the tests use (root)
#   make build    build bin/slirp, bin/slirpctl, bin/slirprun and bin/slirp4netns
#   make release  static, stripped binaries stamped with VERSION and COMMIT in
#                 RELEASEDIR (default _output/release)
#   make demo     run the demo: a namespace reaches a host service through slirp
#   make test     gofmt, go vet and every test with -race (namespace tests need root)
#   make fuzz     run every fuzz target for FUZZTIME each
#   make fuzz-smoke  run every fuzz target briefly (FUZZSMOKETIME each), for CI
#   make man      write the man pages (docs/man/*.1.md) to _output/man
#   make install  install the binaries, a slirp4netns link, man pages and shell
#                 completions under PREFIX (default /usr/local)

GO       ?= go
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
FUZZTIME ?= 30s
FUZZSMOKETIME ?= 5s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/slirp-dev/slirp/internal/buildinfo.version=$(VERSION) \
            -X github.com/slirp-dev/slirp/internal/buildinfo.commit=$(COMMIT)
RELEASEDIR ?= _output/release

# Debian packages: iproute2/util-linux/iputils-ping for the namespace tests,
# uidmap and busybox-static for the launcher, slirp4netns, passt and iperf3
# for side-by-side comparisons, ncat and socat for the demo.
DEBIAN_PACKAGES := gcc libc6-dev iproute2 util-linux iputils-ping uidmap busybox-static zsh groff-base man-db \
                   slirp4netns passt iperf3 ncat socat jq tcpdump ca-certificates \
                   podman runc conmon catatonit rootlesskit

.PHONY: all build release deps demo test vet fmt-check fuzz fuzz-smoke install clean

all: build

# slirp is linked statically against libc when the C toolchain can (Debian's
# libc6-dev has libc.a; Fedora needs glibc-static), as make release links
# it: it needs no particular glibc at run time, and one copy of the daemon
# runs per container: without a dynamic loader and a shared libc to map,
# its namespace helper is 0.3 MiB smaller in RSS and the daemon up to
# 1.3 MiB (docs/architecture.md). netgo and osusergo keep
# glibc's NSS, which cannot work statically, out of it. SLIRP_STATIC= (empty)
# builds it dynamically.
SLIRP_STATIC ?= $(shell printf 'int main(void){return 0;}\n' | $${CC:-gcc} -x c -static -o /dev/null - >/dev/null 2>&1 && echo yes)
STATIC_TAGS  := netgo,osusergo
STATIC_LINK  := -linkmode external -extldflags -static

build:
	mkdir -p bin
	CGO_ENABLED=1 $(GO) build $(if $(SLIRP_STATIC),-tags $(STATIC_TAGS) -ldflags '$(STATIC_LINK) $(LDFLAGS)',-ldflags '$(LDFLAGS)') \
	  -o bin/ ./cmd/slirp
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/slirpctl ./cmd/slirprun
	ln -sf slirp bin/slirp4netns

# make release: binaries that run on any Linux of the same architecture,
# with no shared library. slirpctl and slirprun are pure Go
# (CGO_ENABLED=0). slirp needs cgo (its C constructors join the target's
# namespaces before the Go runtime starts threads, and serve the tap
# helper's sockets in about 1 MiB), so it is linked statically against libc
# instead; netgo and osusergo keep glibc's NSS, which cannot work
# statically, out of it.
release:
	mkdir -p $(RELEASEDIR)
	CGO_ENABLED=1 $(GO) build -trimpath -tags $(STATIC_TAGS) \
	  -ldflags '-s -w $(STATIC_LINK) $(LDFLAGS)' \
	  -o $(RELEASEDIR)/slirp ./cmd/slirp
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' \
	  -o $(RELEASEDIR)/ ./cmd/slirpctl ./cmd/slirprun
	ln -sf slirp $(RELEASEDIR)/slirp4netns

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

# fuzz-smoke finds the fuzz targets by reading the test files of every
# package of the module (no test binary is built just to list them), then
# fuzzes each for FUZZSMOKETIME: long enough to run the committed seed
# corpus and some thousands of mutations, short enough for every CI run.
# A run that ends with "context deadline exceeded" and wrote no failing
# input is go1.26's fuzzing coordinator tripping over its own -fuzztime
# deadline (golang/go#75804, fixed in go1.27), not a finding: it is
# reported and skipped.
fuzz-smoke:
	@$(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do \
	  for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$dir"/*_test.go 2>/dev/null); do \
	    echo "== $$pkg $$f"; \
	    if ! out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZSMOKETIME) "$$pkg" 2>&1); then \
	      echo "$$out"; \
	      if echo "$$out" | grep -q 'Failing input written to' || ! echo "$$out" | grep -q 'context deadline exceeded'; then exit 1; fi; \
	      echo "   (not a finding: golang/go#75804, the fuzzing coordinator's own deadline; no failing input)"; \
	    else echo "$$out" | tail -n 1; \
	    fi; \
	  done; \
	done

# make man: the man pages, from docs/man/*.1.md with go-md2man (pinned in
# tools/go.mod, a module of its own so the main go.mod stays clean), into
# MANOUT. They are build output, not committed.
MANOUT      ?= _output/man
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
# INSTALL_FROM is where install takes the binaries that build wrote.
INSTALL_FROM ?= bin
MANPAGES    := slirp.1 slirpctl.1 slirprun.1

.PHONY: man
man:
	mkdir -p $(MANOUT)
	for page in $(MANPAGES); do \
	  $(GO) -C tools tool go-md2man -in $(CURDIR)/docs/man/$$page.md -out $(abspath $(MANOUT))/$$page || exit 1; \
	done

# make install: the binaries, a slirp4netns link to slirp (so that podman,
# rootlesskit and docker find it by name), the man pages and the bash and
# zsh completions, under PREFIX (and DESTDIR, for packagers).
install: build man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -m 0755 $(INSTALL_FROM)/slirp $(INSTALL_FROM)/slirpctl $(INSTALL_FROM)/slirprun $(DESTDIR)$(BINDIR)/
	ln -sf slirp $(DESTDIR)$(BINDIR)/slirp4netns
	for page in $(MANPAGES); do install -m 0644 $(MANOUT)/$$page $(DESTDIR)$(MANDIR)/man1/ || exit 1; done
	ln -sf slirp.1 $(DESTDIR)$(MANDIR)/man1/slirp4netns.1
	install -m 0644 contrib/completion/bash/slirp contrib/completion/bash/slirpctl \
	  contrib/completion/bash/slirprun $(DESTDIR)$(BASHCOMPDIR)/
	ln -sf slirp $(DESTDIR)$(BASHCOMPDIR)/slirp4netns
	install -m 0644 contrib/completion/zsh/_slirp contrib/completion/zsh/_slirpctl \
	  contrib/completion/zsh/_slirprun $(DESTDIR)$(ZSHCOMPDIR)/

clean:
	rm -rf bin _output

# make bench: slirp against slirp4netns and pasta, side by side, in test-made
# namespaces (root; about 6 minutes). It measures bin/slirp as make build
# writes it. Installs iperf3, slirp4netns and passt when missing. The full
# run writes docs/benchmarks.md; with BENCHFLAGS (see go run ./bench -h) it
# only prints, unless BENCHFLAGS has -out. Never part of make test.
.PHONY: bench
bench: build
	@missing=""; \
	command -v iperf3 >/dev/null 2>&1 || missing="$$missing iperf3"; \
	[ -x /usr/bin/slirp4netns ] || missing="$$missing slirp4netns"; \
	[ -x /usr/bin/pasta ] || missing="$$missing passt"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) run ./bench -slirp bin/slirp $(if $(BENCHFLAGS),,-out docs/benchmarks.md) $(BENCHFLAGS)
