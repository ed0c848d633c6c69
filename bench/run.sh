#!/usr/bin/env bash
# Runs every benchmark with release binaries and prints one summary line each.
# Needs RabbitMQ and PostgreSQL (scripts/services.sh). Takes about 25 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "export $(scripts/services.sh)"
cargo build --release --locked -p certfleet-bench -p certfleet-cli -p certfleet-scheduler -p certfleet-worker >&2
b=target/release/certfleet-bench
$b idle-rss
$b baseline --messages 100000
$b scan --backend sqlite --rows 1000000 --due-percent 10 --runs 3
$b scan --backend postgres --rows 1000000 --due-percent 10 --runs 3
$b e2e --assets 10000 --workers 2 --concurrency 64 --runs 3
$b dashboard --backend sqlite --rows 1000000 --loads 100
$b dashboard --backend postgres --rows 1000000 --loads 100
# Against the peer stack (scripts/stack/install.sh --peers for certbot and lego):
scripts/stack/install.sh --peers >&2
$b ssh --devices 500 --concurrency 50,200,500 --runs 1
$b acme --certs 200 --concurrency 50 --peer-certs 40
