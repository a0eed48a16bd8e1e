# Fenceline. `make demo` and `make test` are the two entry points; each installs what it
# needs through scripts/deps.sh (idempotent, Debian packages, needs root).

GO      ?= go
BIN     := bin
GOFLAGS ?=

.PHONY: all deps build test test-short vet demo demo-cluster bench fuzz clean

all: build

deps:
	./scripts/deps.sh

build:
	$(GO) build $(GOFLAGS) -o $(BIN)/ ./agent/cmd/fenceline-agent ./aggregator/cmd/fenceline-aggregator ./aggregator/cmd/fencectl

vet:
	$(GO) vet ./...

# Every test: unit tests, real-kernel tests in network namespaces, real Mosquitto, real
# raft, and the end-to-end tests with the three binaries as processes.
test: deps vet
	$(GO) test -count=1 -timeout 40m ./...

test-short: vet
	$(GO) test -short -count=1 ./...

demo: deps build
	./scripts/demo.sh

# Three aggregator nodes on loopback with Mosquitto: join, forwarding, failover.
demo-cluster: deps build
	./scripts/demo-cluster.sh

# Benchmarks with a written method; see scripts/bench/README.md.
bench: deps build
	./scripts/bench/detect-latency.sh

# Each fuzz target for a bounded time (FUZZTIME, default 30s).
fuzz:
	./scripts/fuzz.sh

clean:
	rm -rf $(BIN) .demo
