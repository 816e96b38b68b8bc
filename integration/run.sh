#!/usr/bin/env bash
# `make test`: installs what the tests need, starts private services on free loopback ports in a temp dir,
# runs every test (unit and integration) against them, and stops them, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
source integration/services.sh

command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (see README)" >&2; exit 1; }
command -v cc >/dev/null || services_apt_build_tools=1
if [ "${services_apt_build_tools:-0}" = 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential pkg-config >/dev/null
fi

services_install mariadb redis nginx chromium

work=$(mktemp -d /tmp/clusterchat-test.XXXXXX)
cleanup() {
    services_stop
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== building"
cargo build --all-targets --locked

MARIADB_NOSYNC=1 mariadb_start "$work"
export CLUSTERCHAT_TEST_MYSQL=$MARIADB_URL

echo "== tests"
# Integration tests mostly wait on sockets; more threads than cores keeps the run short.
cargo test --locked --all-targets --no-fail-fast -- --test-threads "${TEST_THREADS:-4}"

echo "== fuzz harnesses over their committed seeds (no fuzzing engine: make fuzz does that)"
cargo test --locked --manifest-path fuzz/Cargo.toml
