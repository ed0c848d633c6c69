#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672, guest/guest) and PostgreSQL (127.0.0.1:5432) run,
# installing them from Debian's packages if they are missing. Idempotent; needs root.
# Prints the PostgreSQL URL the tests should use as TEST_POSTGRES_URL=... on stdout.
set -euo pipefail

log() { echo "services: $*" >&2; }

missing=()
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql postgresql-client)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# RabbitMQ
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  log "starting RabbitMQ"
  rabbitmq-server -detached >&2 || true
fi
for _ in $(seq 1 60); do
  rabbitmqctl -q await_startup >/dev/null 2>&1 && break
  sleep 1
done
rabbitmqctl -q await_startup >/dev/null 2>&1 || { log "RabbitMQ did not start"; exit 1; }
# The management API (unacked counts and rates for `certfleet queues`, the API, the dashboard).
if ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
  log "enabling rabbitmq_management"
  rabbitmq-plugins enable rabbitmq_management >&2
fi
for _ in $(seq 1 30); do
  curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null && break
  sleep 1
done

# PostgreSQL
version=$(ls /etc/postgresql | sort -V | tail -n1)
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL did not start"; exit 1; }

# Trust auth on this machine kind; a fresh Debian install wants a password instead.
if psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  echo "TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432"
else
  log "setting a password for the postgres role (fresh install uses password auth on TCP)"
  su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'certfleet-test'\"" >&2
  echo "TEST_POSTGRES_URL=postgres://postgres:certfleet-test@127.0.0.1:5432"
fi
