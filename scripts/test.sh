#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and starts what the tests need if it is
# missing (RabbitMQ, PostgreSQL; the test peers BIND9, Pebble, sshd, nginx and HAProxy from
# Debian's packages, which tests start on 127.0.0.1 themselves), builds the binaries, and
# runs every test against them.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "export $(scripts/services.sh)"
scripts/stack/install.sh >&2
cargo build --workspace --bins --tests --locked
cargo test --workspace --locked "$@"
# The API fuzzed from its own OpenAPI document against a live server, as each role.
scripts/schemathesis.sh
# A short smoke of the cargo-fuzz targets (fuzz/), in CI only (.ci/run sets the flag).
if [ "${CERTFLEET_FUZZ_SMOKE:-0}" = 1 ]; then
    scripts/fuzz.sh "${CERTFLEET_FUZZ_SECONDS:-5}"
fi
