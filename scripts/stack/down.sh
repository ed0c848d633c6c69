#!/usr/bin/env bash
# Stop every test peer that scripts/stack/up.sh started in STATE_DIR.
#
# Usage: scripts/stack/down.sh STATE_DIR
#
# Idempotent: missing pid files or already-dead processes are fine. A pid is
# only signalled if it still belongs to the expected program (pids get
# recycled). As a safety net, any process whose command line names one of
# STATE_DIR's config files is stopped too (e.g. a daemon that died before
# writing its pid file, or a pid file removed by hand). STATE_DIR itself (logs,
# configs, stack.env) is left in place.
set -euo pipefail

log() { printf '[down] %s\n' "$*" >&2; }
die() { printf '[down] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
if [[ ! -d $1 ]]; then
    log "$1 does not exist; nothing to stop"
    exit 0
fi
STATE=$(cd "$1" && pwd -P)

# alive PID: running and not a zombie. Our daemons are reparented to PID 1,
# and a PID 1 that reaps lazily (seen in containers: ~2 s) leaves them as
# zombies for which `kill -0` still succeeds.
alive() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# stop_pid NAME PID: TERM, wait up to 10 s, then KILL.
stop_pid() {
    local name=$1 pid=$2
    alive "$pid" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        alive "$pid" || return 0
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# stop_pidfile NAME PIDFILE COMM
stop_pidfile() {
    local name=$1 pidfile=$2 comm=$3 pid kids
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]; then
        # Children first matter for sshd: open sessions are children of the
        # listener and would outlive it.
        kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' || true)
        stop_pid "$name" "$pid"
        for k in $kids; do
            [[ $(cat "/proc/$k/comm" 2>/dev/null) == "$comm" ]] && stop_pid "$name child" "$k"
        done
    fi
    rm -f "$pidfile"
}

stop_pidfile haproxy    "$STATE/haproxy/haproxy.pid"       haproxy
stop_pidfile nginx      "$STATE/nginx/nginx.pid"           nginx
stop_pidfile sshd       "$STATE/ssh/sshd.pid"              sshd
stop_pidfile pebble-eab "$STATE/pebble-eab/pebble.pid"     pebble
stop_pidfile pebble     "$STATE/pebble/pebble.pid"         pebble
stop_pidfile named      "$STATE/named/named.pid"           named

# Safety net: processes started with one of our config files as an argument.
configs=("$STATE/haproxy/haproxy.cfg" "$STATE/nginx/nginx.conf" "$STATE/ssh/sshd_config"
         "$STATE/pebble-eab/pebble-config.json" "$STATE/pebble/pebble-config.json"
         "$STATE/named/named.conf")
for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [[ $pid == "$$" ]] && continue
    args=$(tr '\0' '\n' 2>/dev/null <"$proc/cmdline") || continue
    for c in "${configs[@]}"; do
        if grep -qxF -- "$c" <<<"$args"; then
            stop_pid "stray $(cat "$proc/comm" 2>/dev/null || echo '?')" "$pid"
            break
        fi
    done
done

rm -f "$STATE/haproxy/admin.sock"
log "stopped (state kept in $STATE)"
