#!/usr/bin/env bash
# The main job on the embedded default: SQLite inventory, the local RabbitMQ, the internal
# CA and the `local` driver. Imports a small demo inventory, runs `certfleet up` until every
# certificate is issued, then shows the inventory and checks the files with openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh >/dev/null
cargo build --release --locked -p certfleet-cli -p certfleet-scheduler -p certfleet-worker
bin=$PWD/target/release

demo=${DEMO_DIR:-$PWD/.certfleet/demo}
rm -rf "$demo" && mkdir -p "$demo/certs"
cp examples/routes.toml "$demo/routes.toml"
cd "$demo"
# A vhost of its own so the demo never meets other certfleet queues on this broker.
rabbitmqctl -q add_vhost certfleet-demo 2>/dev/null || true
rabbitmqctl -q set_permissions -p certfleet-demo guest '.*' '.*' '.*'
cat > certfleet.toml <<TOML
amqp_url = "amqp://guest:guest@127.0.0.1:5672/certfleet-demo"
scan_interval = "2s"
amqp_management_url = "http://127.0.0.1:15672"
TOML
python3 - "$demo" > assets.json <<'PY'
import json, sys
d = sys.argv[1]
print(json.dumps([{
    "system_name": f"web-{i:02d}",
    "common_name": f"web-{i:02d}.demo.test",
    "subject_alternative_name": [f"web-{i:02d}.demo.test", f"www-{i:02d}.demo.test"],
    "certificate_authority": "internal",
    "host_platform": "local",
    "data_center": "demo",
    "settings": {"cert_path": f"{d}/certs/web-{i:02d}.crt", "key_path": f"{d}/certs/web-{i:02d}.key"},
} for i in range(10)], indent=1))
PY
"$bin/certfleet" assets import assets.json
# A dashboard login (the password is generated and shown once, here).
"$bin/certfleet" users create demo-admin --role admin --generate-password > admin.txt
"$bin/certfleet" up --concurrency 8 2> up.log &
up=$!
trap 'kill $up 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  [ "$("$bin/certfleet" assets list --due --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ] && break
  sleep 1
done
kill -TERM $up; wait $up || true
echo
"$bin/certfleet" assets list
echo
for c in certs/*.crt; do openssl verify -CAfile certfleet-ca/root/ca.crt "$c"; done
echo
openssl x509 -in certs/web-00.crt -noout -subject -issuer -dates -ext subjectAltName
echo
echo "demo files: $demo (log: $demo/up.log)"
echo
echo "The dashboard: run  (cd $demo && $bin/certfleet up)  and open http://127.0.0.1:8080/"
echo "  log in as demo-admin, $(grep 'password' admin.txt)"
