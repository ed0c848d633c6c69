#!/usr/bin/env bash
# Issues N certificates through a running test stack (Pebble + BIND9, scripts/stack/up.sh)
# with certbot (--dns-rfc2136) and lego (rfc2136 provider), sequentially as a cron script
# would, and with `xargs -P 8`. Prints one line per run:
#   peer=<certbot|lego> mode=<seq|p8> n=<N> ok=<issued> failed=<failed> secs=<wall> per_min=<rate>
#
# Usage: bench/acme-peers.sh STACK_ENV N PREFIX [seq|p8|all] [certbot|lego|all]
# Names are <PREFIX>-<peer>-<mode>-<i>.<ZONE>, so runs never reuse an authorization.
# Both peers run with their waits tuned for a local DNS (certbot propagation 0 s; lego's
# propagation check off), as in ../shared/TEST-STACK-NOTES.md. Needs
# scripts/stack/install.sh --peers.
set -euo pipefail

[[ $# -ge 3 ]] || { echo "usage: $0 STACK_ENV N PREFIX [seq|p8|all] [certbot|lego|all]" >&2; exit 2; }
env_file=$1 n=$2 prefix=$3 modes=${4:-all} peers=${5:-all}
[[ $modes == all ]] && modes="seq p8"
[[ $peers == all ]] && peers="certbot lego"
# shellcheck disable=SC1090
source "$env_file"

work=$(mktemp -d /tmp/cf-acme-peers.XXXXXX)
trap 'rm -rf "$work"' EXIT

# certbot's RFC 2136 credentials (certbot insists on mode 0600).
creds=$work/rfc2136.ini
cat >"$creds" <<EOF
dns_rfc2136_server = $NAMED_HOST
dns_rfc2136_port = $NAMED_PORT
dns_rfc2136_name = $TSIG_KEY_NAME
dns_rfc2136_secret = $TSIG_SECRET
dns_rfc2136_algorithm = HMAC-SHA256
EOF
chmod 600 "$creds"

# One issuance; exit status tells success. $1 = peer, $2 = name, $3 = state dir.
issue_one() {
    local peer=$1 name=$2 dir=$3
    mkdir -p "$dir"
    case $peer in
        certbot)
            REQUESTS_CA_BUNDLE=$PEBBLE_CA_BUNDLE certbot certonly --non-interactive --agree-tos \
                -m bench@example.test --no-eff-email --server "$PEBBLE_DIRECTORY_URL" \
                --dns-rfc2136 --dns-rfc2136-credentials "$creds" --dns-rfc2136-propagation-seconds 0 \
                --config-dir "$dir/config" --work-dir "$dir/work" --logs-dir "$dir/logs" \
                --key-type ecdsa -d "$name" >"$dir/out.log" 2>&1
            ;;
        lego)
            LEGO_CA_CERTIFICATES=$PEBBLE_CA_BUNDLE \
            RFC2136_NAMESERVER="$NAMED_HOST:$NAMED_PORT" RFC2136_TSIG_KEY="$TSIG_KEY_NAME." \
            RFC2136_TSIG_SECRET="$TSIG_SECRET" RFC2136_TSIG_ALGORITHM="hmac-sha256." \
            RFC2136_POLLING_INTERVAL=0 RFC2136_PROPAGATION_TIMEOUT=30 \
                lego --server "$PEBBLE_DIRECTORY_URL" --email bench@example.test --accept-tos \
                --key-type ec256 --dns rfc2136 --dns.disable-cp \
                --dns.resolvers "$NAMED_HOST:$NAMED_PORT" --path "$dir" -d "$name" run \
                >"$dir/out.log" 2>&1
            ;;
    esac
}
export -f issue_one
export creds PEBBLE_CA_BUNDLE PEBBLE_DIRECTORY_URL NAMED_HOST NAMED_PORT TSIG_KEY_NAME TSIG_SECRET

for peer in $peers; do
    for mode in $modes; do
        names=$work/$peer-$mode.names
        for i in $(seq 1 "$n"); do echo "$prefix-$peer-$mode-$i.$ZONE"; done >"$names"
        results=$work/$peer-$mode.results
        : >"$results"
        start=$(date +%s.%N)
        case $mode in
            # A cron script: one state dir (one account), one name after the other.
            seq)
                while read -r name; do
                    if issue_one "$peer" "$name" "$work/$peer-seq"; then echo ok; else echo "failed $name"; fi
                done <"$names" >>"$results"
                ;;
            # Eight at once; certbot locks its config dir, so each name gets its own.
            p8)
                xargs -P 8 -I{} bash -c \
                    'if issue_one "$0" "$1" "$2/$1"; then echo ok; else echo "failed $1"; fi' \
                    "$peer" {} "$work/$peer-p8" <"$names" >>"$results"
                ;;
        esac
        end=$(date +%s.%N)
        ok=$(grep -c '^ok$' "$results" || true)
        failed=$(grep -c '^failed' "$results" || true)
        if (( failed > 0 )); then
            first=$(grep -m1 '^failed' "$results" | cut -d' ' -f2)
            dir=$work/$peer-$mode; [[ $mode == p8 ]] && dir=$dir/$first
            echo "first failure ($first):" >&2; tail -n 15 "$dir/out.log" >&2 || true
        fi
        python3 - "$peer" "$mode" "$n" "$ok" "$failed" "$start" "$end" <<'PY'
import sys
peer, mode, n, ok, failed, start, end = sys.argv[1:]
secs = float(end) - float(start)
print(f"peer={peer} mode={mode} n={n} ok={ok} failed={failed} secs={secs:.1f} per_min={int(ok) * 60 / secs:.1f}")
PY
    done
done
