#!/usr/bin/env bash
# Fuzzes the live API from its own /openapi.json with schemathesis, authenticated as each
# role (DEVELOPER, PRIVILEGED, ADMIN) and without credentials: no 5xx, every response
# conforms to the document (status codes, content types, schemas, headers), and requests
# that break the schema are refused. The one check left out is positive_data_acceptance:
# some rules cannot be written in a schema (a password that is not the username, a known
# issuer, a routable platform, a retry that names a filter), so a schema-valid body can
# rightly get 422. Starts certfleet-api on 127.0.0.1 with a private SQLite
# inventory and RabbitMQ vhost, and removes both at the end.
#
# Usage: scripts/schemathesis.sh [TARGET_DIR]   (binaries from TARGET_DIR/debug, default target)
# Needs: schemathesis in $CERTFLEET_VENV (default /var/tmp/certfleet-venv; scripts/stack/install.sh
# installs it), RabbitMQ on 127.0.0.1:5672 with rabbitmqctl.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-${CARGO_TARGET_DIR:-target}}
bin="$target/debug"
venv=${CERTFLEET_VENV:-/var/tmp/certfleet-venv}
st="$venv/bin/schemathesis"
[[ -x $st ]] || { echo "schemathesis missing in $venv: run scripts/stack/install.sh" >&2; exit 1; }

dir=$(mktemp -d /tmp/cf-schemathesis.XXXXXX)
reports=${ST_REPORTS:-$target/schemathesis}
mkdir -p "$reports"
vhost="certfleet-st-$(basename "$dir")"
api_pid=
cleanup() {
    [[ -n $api_pid ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
    rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
    cp "$dir"/st-*.txt "$dir/api.log" "$reports/" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
rabbitmqctl add_vhost "$vhost" >/dev/null
rabbitmqctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '[[route]]\nhost_platform = "local"\ndriver = "local"\n' > "$dir/routes.toml"
cat > "$dir/certfleet.toml" <<TOML
database_url = "sqlite://$dir/inventory.db?mode=rwc"
amqp_url = "amqp://guest:guest@127.0.0.1:5672/$vhost"
routes_file = "$dir/routes.toml"
[api]
listen = "127.0.0.1:$port"
[issuers.internal]
kind = "internal"
ca_dir = "$dir/ca"
TOML
cf() { "$bin/certfleet" --config "$dir/certfleet.toml" "$@"; }
pass='schemathesis password 1'
for role in developer privileged admin; do
    printf '%s' "$pass" | cf users create "st-$role" --role "$role" >/dev/null
done
"$bin/certfleet-api" --config "$dir/certfleet.toml" > "$dir/api.log" 2>&1 &
api_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

token() {
    curl -sf "$base/user/v1/authenticate" -H 'content-type: application/json' \
        -d "{\"username\":\"st-$1\",\"password\":\"$pass\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
total=0
# Hypothesis health checks judge the test-data generator (too slow, filtered too much), not
# the server; one failed a clean run (1,749 of 1,749 cases passed), so they are off. Every
# server check stays on.
status=0
for role in none developer privileged admin; do
    args=()
    if [[ $role != none ]]; then args=(--header "Authorization: Bearer $(token "$role")"); fi
    echo "== schemathesis as $role"
    out="$dir/st-$role.txt"
    if ! "$st" run "$base/openapi.json" "${args[@]}" --checks all --exclude-checks positive_data_acceptance --suppress-health-check all \
        --max-examples "${ST_EXAMPLES:-30}" --exclude-path /user/v1/authenticate --no-color > "$out" 2>&1; then
        status=1
    fi
    tail -25 "$out"
    n=$(grep -oE '[0-9]+ (generated|cases)' "$out" | head -1 | grep -oE '[0-9]+' || echo 0)
    total=$((total + n))
done
# Login is fuzzed last and on its own: failed logins throttle the fuzzed usernames only.
echo "== schemathesis on /user/v1/authenticate"
"$st" run "$base/openapi.json" --include-path /user/v1/authenticate --checks all \
    --exclude-checks positive_data_acceptance --suppress-health-check all \
    --max-examples "${ST_EXAMPLES:-30}" --no-color > "$dir/st-login.txt" 2>&1 || status=1
tail -25 "$dir/st-login.txt"
if grep -q ' 500 \|Server error' "$dir"/st-*.txt; then status=1; fi
grep -i 'internal error' "$dir/api.log" | head -5 || true
echo "schemathesis: about $total cases over 4 identities (plus login), exit $status"
exit $status
