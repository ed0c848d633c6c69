#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this one machine, for trying fail-over by hand:
#
#   scripts/cluster.sh start    # nodes cf-cluster-1..3@localhost on 127.0.0.1:5681..5683
#   scripts/cluster.sh status   # members, running nodes, and the quorum queues' leaders
#   scripts/cluster.sh stop     # stops the three nodes (data stays for the next start)
#   scripts/cluster.sh clean    # stops them and deletes their data
#
# Debian's rabbitmq-server, run as root with the machine's Erlang cookie
# (/var/lib/rabbitmq/.erlang.cookie), each node with its own node name, AMQP and
# distribution ports, config, data and log directories under CLUSTER_DIR
# (default /var/tmp/certfleet-cluster). The machine's own node on 5672 is never touched.
# Ports: AMQP CLUSTER_PORT+0..2 (default 5681), distribution CLUSTER_DIST_PORT+0..2
# (default 25681); keep them away from 25672 and 35672-35682 (the CLI tools' own range).
#
# Point certfleet at all three: amqp_url = "amqp://guest:guest@127.0.0.1:5681/%2f,amqp://..."
# (printed by `start` and written to CLUSTER_DIR/cluster.env as CERTFLEET_AMQP_URL).
set -euo pipefail

DIR=${CLUSTER_DIR:-/var/tmp/certfleet-cluster}
PORT=${CLUSTER_PORT:-5681}
DIST=${CLUSTER_DIST_PORT:-25681}
N=3
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
export HOME=/var/lib/rabbitmq   # the machine's Erlang cookie

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
node() { echo "cf-cluster-$1@localhost"; }
ctl() { local i=$1; shift; "$CTL" -q -n "$(node "$i")" "$@"; }

running() { ctl "$1" status >/dev/null 2>&1; }

start_node() {
  local i=$1 d="$DIR/node$1" port=$((PORT + $1 - 1)) dist=$((DIST + $1 - 1))
  mkdir -p "$d"
  if running "$i"; then log "$(node "$i") already runs"; return; fi
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$port
loopback_users = none
log.console = false
EOF
  : >"$d/rabbitmq-env.conf"
  echo '[].' >"$d/enabled_plugins"
  log "starting $(node "$i") on 127.0.0.1:$port (distribution $dist)"
  RABBITMQ_NODENAME=$(node "$i") RABBITMQ_DIST_PORT=$dist \
  RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" RABBITMQ_MNESIA_BASE="$d/mnesia" \
  RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/pid" ERL_EPMD_ADDRESS=127.0.0.1 \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    setsid "$SERVER" >"$d/server.out" 2>&1 </dev/null &
}

await_node() {
  for _ in $(seq 1 120); do
    ctl "$1" await_startup --timeout 30 >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "$(node "$1") did not start; see $DIR/node$1/server.out and $DIR/node$1/log"
}

urls() {
  local out=() i
  for i in $(seq 1 $N); do out+=("amqp://guest:guest@127.0.0.1:$((PORT + i - 1))/%2f"); done
  (IFS=,; echo "${out[*]}")
}

cmd_start() {
  command -v "$SERVER" >/dev/null || die "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
  [[ -r $HOME/.erlang.cookie ]] || die "no Erlang cookie at $HOME/.erlang.cookie"
  # All three boot at once; then each node not yet a member joins the first (a node
  # restarted later rejoins by itself: membership is kept in its data directory).
  for i in $(seq 1 $N); do start_node "$i"; done
  for i in $(seq 1 $N); do await_node "$i"; done
  for i in $(seq 2 $N); do
    if ! ctl 1 cluster_status --formatter json 2>/dev/null | grep -q "\"$(node "$i")\""; then
      log "joining $(node "$i") to $(node 1)"
      { ctl "$i" stop_app && ctl "$i" reset && ctl "$i" join_cluster "$(node 1)" && ctl "$i" start_app; } \
        >>"$DIR/join.log" 2>&1 || die "joining $(node "$i") failed; see $DIR/join.log"
    fi
  done
  echo "CERTFLEET_AMQP_URL=$(urls)" >"$DIR/cluster.env"
  log "cluster up: $(urls)"
  echo "CERTFLEET_AMQP_URL=$(urls)"
}

cmd_status() {
  local i up=0
  for i in $(seq 1 $N); do
    if running "$i"; then up=$((up + 1)); echo "$(node "$i"): running on 127.0.0.1:$((PORT + i - 1))"
    else echo "$(node "$i"): down"; fi
  done
  for i in $(seq 1 $N); do
    if running "$i"; then
      ctl "$i" cluster_status | sed -n '/Running Nodes/,/Versions/p' | grep -v Versions
      echo "Quorum queues (vhost /): name, leader, members"
      ctl "$i" list_queues -p / name type leader members 2>/dev/null | awk '$2 == "quorum"' || true
      break
    fi
  done
  ((up == N))
}

cmd_stop() {
  local i pid
  for i in $(seq 1 $N); do
    if running "$i"; then log "stopping $(node "$i")"; ctl "$i" stop >/dev/null 2>&1 || true; fi
    pid=$(cat "$DIR/node$i/pid" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
    rm -f "$DIR/node$i/pid"
  done
}

case ${1:-} in
  start) cmd_start ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  clean) cmd_stop; rm -rf "$DIR" ;;
  *) echo "usage: $0 start|status|stop|clean" >&2; exit 2 ;;
esac
