#!/usr/bin/env bash
# Baseline of the SSH rotation benchmark: the rotations done the way a per-device task does
# them (Ottr runs one container per device, 50 in parallel): per device, one `ssh` making the
# key and CSR on the device with openssl, `openssl x509 -req` signing it locally with the
# same internal CA, and one `ssh` installing the chain (previous pair kept) and running the
# reload command. 50 devices at a time (`xargs -P`).
#
# Usage: bench/ssh-baseline.sh STACK_ENV DEVICES_DIR N PARALLEL CA_CERT CA_KEY
# DEVICES_DIR/dev-<i>/ must exist for i in 1..N. Prints:
#   baseline n=<N> parallel=<P> ok=<ok> secs=<wall> per_sec=<rate> client_cpu_secs=<user+sys> cpu_ms_per_rotation=<..>
# client CPU is the user+system time of every process this script starts (ssh, openssl,
# shells), read by GNU time from the kernel's accounting of reaped children; the sshd side
# is not counted, exactly as the worker's own CPU excludes sshd.
set -euo pipefail
[[ $# -eq 6 ]] || { echo "usage: $0 STACK_ENV DEVICES_DIR N PARALLEL CA_CERT CA_KEY" >&2; exit 2; }
env_file=$1 devices=$2 n=$3 parallel=$4 ca_cert=$5 ca_key=$6
# shellcheck disable=SC1090
source "$env_file"
work=$(mktemp -d /tmp/cf-ssh-baseline.XXXXXX)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT

rotate_one() {
    local i=$1
    local dir="$devices/dev-$i" name="dev-$i.bench.test"
    local ssh=(ssh -q -i "$SSH_KEY" -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes
               -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" "$SSH_USER@$SSH_HOST")
    "${ssh[@]}" "umask 077 && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout '$dir/key.new' -subj '/CN=$name' -addext 'subjectAltName=DNS:$name' 2>/dev/null" \
        >"$work/$i.csr" || return 1
    openssl x509 -req -in "$work/$i.csr" -CA "$ca_cert" -CAkey "$ca_key" -CAcreateserial \
        -CAserial "$work/$i.srl" -days 4 -copy_extensions copy -out "$work/$i.crt" 2>/dev/null || return 1
    cat "$work/$i.crt" "$ca_cert" | "${ssh[@]}" "set -e; cd '$dir'; cat > cert.new; \
        [ -e cert.pem ] && cp cert.pem cert.pem.prev && cp key.pem key.pem.prev; \
        mv key.new key.pem; mv cert.new cert.pem; touch reloaded" || return 1
}
export -f rotate_one
export devices work SSH_KEY SSH_PORT SSH_KNOWN_HOSTS SSH_USER SSH_HOST ca_cert ca_key

seq 1 "$n" >"$work/ids"
/usr/bin/time -f "%e %U %S" -o "$work/time" \
    xargs -P "$parallel" -I{} bash -c 'if rotate_one "$1"; then echo ok; else echo failed; fi' _ {} \
    <"$work/ids" >"$work/results"
read -r wall user sys <"$work/time"
ok=$(grep -c '^ok$' "$work/results" || true)
python3 - "$n" "$parallel" "$ok" "$wall" "$user" "$sys" <<'PY'
import sys
n, p, ok, wall, user, sys_ = sys.argv[1:]
n, ok, wall, cpu = int(n), int(ok), float(wall), float(user) + float(sys_)
print(f"baseline n={n} parallel={p} ok={ok} secs={wall:.2f} per_sec={ok / wall:.1f} "
      f"client_cpu_secs={cpu:.2f} cpu_ms_per_rotation={cpu * 1000 / max(ok, 1):.1f}")
PY
