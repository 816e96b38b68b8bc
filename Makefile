# clusterchat. `make run` starts one node on the embedded SQLite store; `make test` runs every test
# against real services it starts itself (see integration/run.sh).
CARGO ?= cargo

.PHONY: run run-cluster build test fmt lint clean

# Builds the client too, so that ./target/release/chat is there to talk to the node. The web client, its
# WebSocket, health checks and metrics are on HTTP (HTTP=0.0.0.0:8080 to reach them from elsewhere).
HTTP ?= 127.0.0.1:8080
run:
	$(CARGO) build --release --bin chatserver --bin chat
	./target/release/chatserver --http $(HTTP) $(ARGS)

# Three nodes behind nginx with private MariaDB and Redis; Ctrl-C (or SIGINT/SIGTERM to make) stops
# everything. Keep the recipe one simple command: make then runs bash itself, with no /bin/sh -c in
# between that make's SIGTERM would kill, leaving the script behind (see integration/run-cluster.sh).
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

# Fuzzing (cargo-fuzz; docs/RELIABILITY.md). Runs each target for FUZZ_SECONDS, one after the other, from a
# scratch copy of its committed seeds (fuzz/seeds/TARGET) under fuzz/target, which git ignores; crashes go
# to fuzz/target/artifacts/TARGET/. The default needs no nightly: no sanitizer (the code is safe Rust).
# FUZZ_SANITIZER=address adds ASan through RUSTC_BOOTSTRAP=1 (its stale probe cache is removed first).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= frame_decoder websocket_decoder dispatch
FUZZ_SANITIZER ?= none
FUZZ_ARGS ?=

.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@if [ "$(FUZZ_SANITIZER)" != none ]; then rm -f fuzz/target/.rustc_info.json; fi
	@set -e; for t in $(FUZZ_TARGETS); do \
		rm -rf fuzz/target/corpus/$$t; mkdir -p fuzz/target/corpus/$$t fuzz/target/artifacts/$$t; \
		cp fuzz/seeds/$$t/* fuzz/target/corpus/$$t/; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s (sanitizer: $(FUZZ_SANITIZER))"; \
		$(if $(filter none,$(FUZZ_SANITIZER)),,RUSTC_BOOTSTRAP=1) $(CARGO) fuzz run -s $(FUZZ_SANITIZER) $$t \
			fuzz/target/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(CURDIR)/fuzz/target/artifacts/$$t/ -dict=$(CURDIR)/fuzz/dict/$$t.dict $(FUZZ_ARGS); \
	done
