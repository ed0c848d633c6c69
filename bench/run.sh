#!/usr/bin/env bash
# Runs every benchmark with release binaries and prints one summary line each.
# Needs RabbitMQ and PostgreSQL (scripts/services.sh) and wrk. Takes about 60 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "export $(scripts/services.sh)"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk; } >&2
cargo build --release --locked --workspace --bins >&2
b=${CARGO_TARGET_DIR:-target}/release/certfleet-bench
$b idle-rss
$b baseline --messages 100000
$b scan --backend sqlite --rows 1000000 --due 1000 --runs 3 --full
$b scan --backend postgres --rows 1000000 --due 1000 --runs 3 --full
# The same on a server whose buffer cache holds the inventory (BENCHMARKS.md, the claim).
TEST_POSTGRES_URL=$(bench/pg-sized.sh) $b scan --backend postgres --rows 1000000 --due 1000 --runs 5
bench/pg-sized.sh stop
$b scan --backend postgres --rows 10000000 --due 10000 --runs 3
$b import --backend postgres --rows 1000000 --runs 3
$b import --backend sqlite --rows 1000000 --runs 3
$b search --backend sqlite --rows 1000000 --clients 32 --secs 15 --runs 3
$b search --backend postgres --rows 1000000 --clients 32 --secs 15 --runs 3
$b scale --assets 2000 --workers 1,2,4 --concurrency 50 --sleep-secs 1 --runs 3
$b e2e --assets 10000 --workers 2 --concurrency 64 --runs 3
$b observability --assets 10000 --workers 2 --concurrency 64 --runs 3
$b dashboard --backend sqlite --rows 1000000 --loads 100
$b dashboard --backend postgres --rows 1000000 --loads 100
# Against the peer stack (scripts/stack/install.sh --peers for certbot and lego):
scripts/stack/install.sh --peers >&2
$b ssh --devices 500 --concurrency 50,200,500 --runs 1
$b acme --certs 200 --concurrency 50 --peer-certs 40
