#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and starts what the tests need if it is
# missing (RabbitMQ, PostgreSQL), builds the binaries, and runs every test against them.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "export $(scripts/services.sh)"
cargo build --workspace --bins --tests --locked
cargo test --workspace --locked "$@"
