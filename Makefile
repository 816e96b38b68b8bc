# clusterchat. `make run` starts one node on the embedded SQLite store; `make test` runs every test
# against real services it starts itself (see integration/run.sh).
CARGO ?= cargo

.PHONY: run run-cluster build test fmt lint clean

run:
	$(CARGO) run --release --bin chatserver -- $(ARGS)

# Three nodes behind nginx with private MariaDB and Redis; Ctrl-C stops everything.
run-cluster:
	bash integration/run-cluster.sh

build:
	$(CARGO) build --release --bins

test:
	bash integration/run.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Measures release nodes with chat-bench; rewrites docs/BENCHMARKS.md and docs/latency-vs-rate.svg.
.PHONY: bench
bench:
	bash bench/run.sh
