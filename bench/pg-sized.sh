#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster sized for a 1,000,000-asset inventory
# (shared_buffers 2 GB; the stock server's 128 MB does not hold the assets table and its
# indexes) on 127.0.0.1:${PG_SIZED_PORT:-5433}, and prints the URL to pass to the benches:
#   TEST_POSTGRES_URL=$(bench/pg-sized.sh) certfleet-bench scan --backend postgres ...
# Stop it with: bench/pg-sized.sh stop
set -euo pipefail
port=${PG_SIZED_PORT:-5433}
dir=${PG_SIZED_DIR:-/var/tmp/certfleet-pg-sized}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sh -c "$*"; fi; }
if [ "${1:-}" = stop ]; then
  as_pg "$bin/pg_ctl -D $dir/data -m fast stop" >&2
  rm -rf "$dir"
  exit 0
fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_pg "$bin/initdb -D $dir/data -U postgres --auth=trust -E UTF8 --no-sync" >/dev/null
fi
if ! as_pg "$bin/pg_ctl -D $dir/data status" >/dev/null 2>&1; then
  as_pg "$bin/pg_ctl -D $dir/data -l $dir/log -w start -o \"-p $port -k $dir -c listen_addresses=127.0.0.1 -c shared_buffers=2GB\"" >&2
fi
echo "postgres://postgres@127.0.0.1:$port"
