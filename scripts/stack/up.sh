#!/usr/bin/env bash
# Start certfleet's real test peers in STATE_DIR, all on 127.0.0.1 only:
#   named (BIND9)   RFC 2136 target: zones certfleet.test + acme-delegate.test,
#                   TSIG hmac-sha256 + hmac-sha512 keys, recursion for
#                   127.0.0.1 only over a local root zone (nothing leaves the box)
#   pebble          ACME test CA (and a second, EAB-required instance)
#   sshd            the "device" certfleet deploys to (root, public key only)
#   nginx           TLS endpoint whose cert/key files tests rotate + reload
#   haproxy         TLS endpoint with an admin socket (hot cert swap)
#
# Usage: scripts/stack/up.sh STATE_DIR
# Writes STATE_DIR/stack.env (KEY=value lines, values never contain spaces or
# quotes, so they can be `source`d or split at the first '='). Stop with
# scripts/stack/down.sh STATE_DIR; smoke-test with scripts/stack/check.sh.
#
# Every run produces a fresh stack: any instances still running from STATE_DIR
# are stopped first, then configs, keys, certs and zones are regenerated and
# new free ports are chosen. Logs, configs and pid files stay in STATE_DIR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[up] %s\n' "$*" >&2; }
die() { printf '[up] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
[[ $(id -u) -eq 0 ]] || die "must run as root (sshd logs in as root; named/sshd need it)"
for bin in named named-checkconf pebble /usr/sbin/sshd ssh-keygen nginx haproxy openssl python3 curl dig ss; do
    command -v "$bin" >/dev/null || die "$bin not found - run scripts/stack/install.sh first"
done

# --- state dir ---------------------------------------------------------------
mkdir -p "$1"
STATE=$(cd "$1" && pwd -P)
# The path ends up unquoted in nginx/haproxy/named configs and in stack.env.
[[ $STATE =~ ^[A-Za-z0-9._/-]+$ ]] || die "STATE_DIR must match [A-Za-z0-9._/-]+ (got '$STATE')"
# Refuse to take over a non-empty directory we did not create: we rewrite its
# service subdirectories.
MARKER="$STATE/.certfleet-stack"
if [[ ! -e $MARKER ]] && [[ -n $(ls -A "$STATE") ]]; then
    die "$STATE is not empty and was not created by up.sh (no .certfleet-stack marker)"
fi
touch "$MARKER"

# Stop leftovers from an earlier up.sh on the same dir (idempotent re-run).
"$HERE/down.sh" "$STATE" >/dev/null 2>&1 || true

# On any failure: stop whatever this run already started, so a failed up.sh
# leaves no stray daemons behind.
ok=0
cleanup() {
    if (( ! ok )); then
        log "start-up failed; stopping what was started (logs kept in $STATE)"
        "$HERE/down.sh" "$STATE" >&2 || true
    fi
}
trap cleanup EXIT
# Say which command failed (set -e alone exits silently).
trap 'log "command failed (line $LINENO): $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM HUP

t_start=$SECONDS
for d in named pebble pebble-eab ssh nginx haproxy; do
    rm -rf "${STATE:?}/$d"
    mkdir -p "$STATE/$d"
done
rm -f "$STATE/stack.env" "$STATE/stack.env.tmp" "$STATE/pebble-ca.pem" "$STATE/pebble-ca.srl" \
      "$STATE/client_ed25519" "$STATE/client_ed25519.pub"

# --- helpers -------------------------------------------------------------------
# Print the last lines of the given logs and fail.
fail_with_logs() {
    local msg=$1; shift
    printf '[up] ERROR: %s\n' "$msg" >&2
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf -- '----- tail of %s -----\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
    exit 1
}

# pid_alive PIDFILE: the pid file exists and its process is running (a
# zombie counts as dead: PID 1 may be slow to reap our daemonized processes).
pid_alive() {
    local pid st
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# wait_until NAME PIDFILE TIMEOUT_S LOGS... -- CMD...
# Poll CMD every 0.1 s until it succeeds. Fails early (with log tails) when the
# daemon's pid file points at a dead process, and after TIMEOUT_S seconds.
wait_until() {
    local name=$1 pidfile=$2 timeout=$3; shift 3
    local logs=()
    while [[ $1 != -- ]]; do logs+=("$1"); shift; done
    shift
    local deadline=$((SECONDS + timeout)) seen_pid=0
    until "$@" >/dev/null 2>&1; do
        if pid_alive "$pidfile"; then
            seen_pid=1
        elif (( seen_pid )) || [[ -s $pidfile ]]; then
            fail_with_logs "$name exited during start-up" "${logs[@]}"
        fi
        (( SECONDS < deadline )) || fail_with_logs "$name not ready after ${timeout}s ($*)" "${logs[@]}"
        sleep 0.1
    done
    pid_alive "$pidfile" || fail_with_logs "$name: no live process in $pidfile" "${logs[@]}"
}

tcp_listening() { ss -Htln "src 127.0.0.1:$1" | grep -q .; }
udp_listening() { ss -Huln "src 127.0.0.1:$1" | grep -q .; }

# Pick N distinct ports that are free on 127.0.0.1 for both TCP and UDP.
# Drawn at random from 20000-31999: below Linux's ephemeral range
# (32768-60999), so an outgoing connection cannot grab one before the daemon
# binds it, and random so that parallel stacks rarely race for the same port.
# All sockets are held until the whole set is chosen, so no duplicates.
pick_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1]); rng = random.SystemRandom(); held = []; ports = []
for _ in range(20000):
    if len(ports) == n:
        break
    p = rng.randrange(20000, 32000)
    if p in ports:
        continue
    socks = []
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind); socks.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        for s in socks:
            s.close()
        continue
    held += socks; ports.append(p)
if len(ports) != n:
    sys.exit("could not find %d free ports" % n)
print(" ".join(map(str, ports)))
PY
}

# Start a foreground program in the background, detached from our session and
# with stdio on a log file (if it kept our stdout, a caller capturing up.sh's
# output would wait forever). The pid file is written by the process itself
# right before exec, so it is always the daemon's real pid.
spawn() {
    local pidfile=$1 logfile=$2; shift 2
    # shellcheck disable=SC2016  # $$ and $@ expand in the inner bash
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
}

# Self-signed EC P-256 cert for a TLS endpoint (nginx, haproxy).
self_signed() { # CERT KEY CN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$2" -out "$1" -days 30 -subj "/CN=$3" \
        -addext "subjectAltName=DNS:localhost,DNS:$3,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "keyUsage=critical,digitalSignature" \
        -addext "extendedKeyUsage=serverAuth" 2>/dev/null
    chmod 600 "$2"
}

# --- ports and secrets ---------------------------------------------------------
# Stacks started at once (tests run in parallel) would race between choosing a free port
# and binding it: one stack at a time chooses its ports and starts its daemons, under a
# lock held on fd 9 until the last daemon listens. Daemons never inherit fd 9 (9>&-), or
# they would keep the lock after this script exits.
exec 9>/tmp/certfleet-stack-ports.lock
flock -w 300 9 || die "another stack held the port lock for 300s"
read -r NAMED_PORT PEBBLE_PORT PEBBLE_MGMT_PORT PEBBLE_HTTP_PORT PEBBLE_TLS_PORT \
        PEBBLE_EAB_PORT PEBBLE_EAB_MGMT_PORT PEBBLE_EAB_HTTP_PORT PEBBLE_EAB_TLS_PORT \
        SSH_PORT NGINX_TLS_PORT HAPROXY_TLS_PORT HAPROXY_API_PORT < <(pick_ports 13)
[[ -n ${HAPROXY_API_PORT:-} ]] || die "port selection failed"

ZONE=certfleet.test
DELEGATE_ZONE=acme-delegate.test
TSIG_KEY_NAME=certfleet-key
TSIG_SECRET=$(openssl rand 32 | base64 -w0)          # hmac-sha256: 32-byte key
TSIG512_KEY_NAME=certfleet-key-512
TSIG512_SECRET=$(openssl rand 64 | base64 -w0)       # hmac-sha512: 64-byte key
PEBBLE_EAB_KID=kid-1
# Pebble wants the EAB MAC key base64url-encoded without padding (48 bytes ->
# 64 chars, no '=' anyway).
PEBBLE_EAB_HMAC=$(openssl rand 48 | base64 -w0 | tr '+/' '-_' | tr -d '=')

# --- BIND9 -----------------------------------------------------------------------
N="$STATE/named"
# SOA minimum (negative-caching TTL) of 1 s and short TTLs: tests add and
# remove TXT records constantly and must never see a stale answer.
cat >"$N/root.zone" <<EOF
\$TTL 60
; Local root zone: named answers for "." itself, so recursion never needs the
; real root servers and no query ever leaves the machine.
.            IN SOA ns.root-servers.test. hostmaster.certfleet.test. 1 3600 600 86400 1
.            IN NS  ns.root-servers.test.
ns.root-servers.test. IN A 127.0.0.1
EOF
cat >"$N/$ZONE.zone" <<EOF
\$TTL 60
@            IN SOA ns.$ZONE. hostmaster.$ZONE. 1 3600 600 86400 1
@            IN NS  ns.$ZONE.
@            IN A   127.0.0.1
ns           IN A   127.0.0.1
*            IN A   127.0.0.1
delegated    IN A   127.0.0.1
delegated2   IN A   127.0.0.1
; CNAME delegation of the DNS-01 challenge into the delegate zone (what
; acme-dns style setups do): updates go to $DELEGATE_ZONE, Pebble follows the
; CNAME through recursion.
_acme-challenge.delegated  IN CNAME delegated.$ZONE.$DELEGATE_ZONE.
_acme-challenge.delegated2 IN CNAME delegated2.$ZONE.$DELEGATE_ZONE.
EOF
cat >"$N/$DELEGATE_ZONE.zone" <<EOF
\$TTL 60
@            IN SOA ns.$DELEGATE_ZONE. hostmaster.$DELEGATE_ZONE. 1 3600 600 86400 1
@            IN NS  ns.$DELEGATE_ZONE.
ns           IN A   127.0.0.1
EOF

cat >"$N/named.conf" <<EOF
// Generated by certfleet scripts/stack/up.sh
options {
    directory "$N";
    pid-file "$N/named.pid";
    session-keyfile "$N/session.key";
    managed-keys-directory "$N";
    dump-file "$N/cache_dump.db";
    statistics-file "$N/named.stats";
    listen-on port $NAMED_PORT { 127.0.0.1; };   // UDP and TCP
    listen-on-v6 { none; };
    // Even outgoing sockets stay on loopback (none are needed: see root zone).
    query-source address 127.0.0.1;
    notify-source 127.0.0.1;
    transfer-source 127.0.0.1;
    allow-query { 127.0.0.1; };
    // Recursion only so that a CNAME from $ZONE into $DELEGATE_ZONE is
    // followed for Pebble's resolver; only for loopback clients.
    recursion yes;
    allow-recursion { 127.0.0.1; };
    allow-query-cache { 127.0.0.1; };
    allow-transfer { none; };
    notify no;
    dnssec-validation no;     // the local root is unsigned
    max-cache-ttl 1;          // never serve a stale recursive answer
    max-ncache-ttl 1;
    minimal-responses no;
};
// No rndc channel: the default one would bind 127.0.0.1:953 and clash
// between stacks.
controls { };

key "$TSIG_KEY_NAME" { algorithm hmac-sha256; secret "$TSIG_SECRET"; };
key "$TSIG512_KEY_NAME" { algorithm hmac-sha512; secret "$TSIG512_SECRET"; };

logging {
    channel main { file "$N/named.log" versions 2 size 20m; severity info; print-time yes; print-category yes; print-severity yes; };
    category default { main; };
    category update { main; };
    category update-security { main; };
    category security { main; };
    category lame-servers { null; };
};

zone "." { type primary; file "$N/root.zone"; };
zone "$ZONE" {
    type primary; file "$N/$ZONE.zone";
    allow-update { key "$TSIG_KEY_NAME"; key "$TSIG512_KEY_NAME"; };
};
zone "$DELEGATE_ZONE" {
    type primary; file "$N/$DELEGATE_ZONE.zone";
    allow-update { key "$TSIG_KEY_NAME"; key "$TSIG512_KEY_NAME"; };
};
EOF
chmod 600 "$N/named.conf"   # holds the TSIG secrets

# Debian's AppArmor profile for named would deny every path in STATE_DIR.
if grep -Eqs '^(named|/usr/sbin/named) \(enforce\)' /sys/kernel/security/apparmor/profiles; then
    die "AppArmor profile 'named' is enforcing and forbids $N; run scripts/stack/install.sh (it disables that profile)"
fi
# named reports config errors to syslog once daemonized; check first so the
# error is printed here instead.
named-checkconf -z "$N/named.conf" >"$N/checkconf.log" 2>&1 \
    || fail_with_logs "named.conf does not check" "$N/checkconf.log"
# -4: IPv4 only. No -u: runs as root, so it can write journals in $N.
named -4 -c "$N/named.conf" </dev/null >>"$N/named.stderr" 2>&1 9>&- \
    || fail_with_logs "named failed to start" "$N/named.stderr" "$N/named.log"
dns_ready() {
    udp_listening "$NAMED_PORT" && tcp_listening "$NAMED_PORT" \
    && [[ -n $(dig +short +time=1 +tries=1 @127.0.0.1 -p "$NAMED_PORT" SOA "$ZONE") ]] \
    && [[ -n $(dig +short +tcp +time=1 +tries=1 @127.0.0.1 -p "$NAMED_PORT" SOA "$DELEGATE_ZONE") ]]
}
wait_until named "$N/named.pid" 20 "$N/named.stderr" "$N/named.log" -- dns_ready
log "named up on 127.0.0.1:$NAMED_PORT (udp+tcp) [$((SECONDS - t_start))s]"

# --- Pebble --------------------------------------------------------------------
# Debian's pebble package strips test/certs/, so make a tiny CA and a
# localhost cert for Pebble's own HTTPS listeners. Clients trust pebble-ca.pem.
P="$STATE/pebble"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$P/ca.key" -out "$STATE/pebble-ca.pem" -days 30 \
    -subj "/CN=certfleet test Pebble listener CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$P/key.pem" -out "$P/cert.csr" -subj "/CN=localhost" 2>/dev/null
openssl x509 -req -in "$P/cert.csr" -CA "$STATE/pebble-ca.pem" -CAkey "$P/ca.key" \
    -CAcreateserial -CAserial "$P/ca.srl" -out "$P/cert.pem" -days 30 -extfile <(cat <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:pebble,IP:127.0.0.1
EOF
) 2>/dev/null
chmod 600 "$P/ca.key" "$P/key.pem"
# EAB instance uses the same listener cert.
cp "$P/cert.pem" "$P/key.pem" "$STATE/pebble-eab/"

write_pebble_config() { # FILE PORT MGMT HTTP TLS EAB(true|false)
    local eab_keys="" dir
    dir=$(dirname "$1")
    [[ $6 == true ]] && eab_keys=",
    \"externalAccountMACKeys\": { \"$PEBBLE_EAB_KID\": \"$PEBBLE_EAB_HMAC\" }"
    cat >"$1" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$2",
    "managementListenAddress": "127.0.0.1:$3",
    "certificate": "$dir/cert.pem",
    "privateKey": "$dir/key.pem",
    "httpPort": $4,
    "tlsPort": $5,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": $6$eab_keys
  }
}
EOF
}
write_pebble_config "$P/pebble-config.json" "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" \
    "$PEBBLE_HTTP_PORT" "$PEBBLE_TLS_PORT" false
write_pebble_config "$STATE/pebble-eab/pebble-config.json" "$PEBBLE_EAB_PORT" "$PEBBLE_EAB_MGMT_PORT" \
    "$PEBBLE_EAB_HTTP_PORT" "$PEBBLE_EAB_TLS_PORT" true

# Deterministic Pebble: no random validation sleep, no random badNonce, and no
# reuse of valid authorizations (every order validates afresh).
# `-strict=false` must be spelled with '=': Go's flag package treats a bare
# boolean flag followed by "false" as the end of the flags and silently drops
# everything after it.
start_pebble() { # DIR
    (
        cd "$1"
        export PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0
        spawn "$1/pebble.pid" "$1/pebble.log" \
            pebble -config "$1/pebble-config.json" -dnsserver "127.0.0.1:$NAMED_PORT" -strict=false
    )
}
start_pebble "$P"
start_pebble "$STATE/pebble-eab"
pebble_ready() { # PORT MGMT_PORT
    curl -sf --max-time 2 --cacert "$STATE/pebble-ca.pem" "https://127.0.0.1:$1/dir" | grep -q newOrder \
    && curl -sf --max-time 2 --cacert "$STATE/pebble-ca.pem" "https://127.0.0.1:$2/roots/0" | grep -q 'BEGIN CERTIFICATE'
}
wait_until pebble "$P/pebble.pid" 30 "$P/pebble.log" -- pebble_ready "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT"
wait_until pebble-eab "$STATE/pebble-eab/pebble.pid" 30 "$STATE/pebble-eab/pebble.log" -- \
    pebble_ready "$PEBBLE_EAB_PORT" "$PEBBLE_EAB_MGMT_PORT"
log "pebble up on 127.0.0.1:$PEBBLE_PORT (mgmt $PEBBLE_MGMT_PORT), EAB instance on $PEBBLE_EAB_PORT (mgmt $PEBBLE_EAB_MGMT_PORT) [$((SECONDS - t_start))s]"

# --- sshd ----------------------------------------------------------------------
S="$STATE/ssh"
mkdir -p "$S/home"   # the device user's clean HOME (see SetEnv below)
ssh-keygen -q -t ed25519 -N '' -C "certfleet-test-host" -f "$S/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C "certfleet-test-client" -f "$STATE/client_ed25519"
cp "$STATE/client_ed25519.pub" "$S/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$S/ssh_host_ed25519_key.pub")" >"$S/known_hosts"
# Without UsePAM, OpenSSH refuses even public-key logins to an account whose
# password field is locked ('!...'). Debian images usually have root:* (not
# locked); if root is locked, fall back to PAM (which skips that check).
use_pam=no
if [[ $(getent shadow root | cut -d: -f2) == '!'* ]]; then use_pam=yes; fi
cat >"$S/sshd_config" <<EOF
# Generated by certfleet scripts/stack/up.sh
Port $SSH_PORT
ListenAddress 127.0.0.1
AddressFamily inet
HostKey $S/ssh_host_ed25519_key
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
# STATE_DIR may live under a group/world-writable /tmp.
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitEmptyPasswords no
UsePAM $use_pam
PermitRootLogin prohibit-password
# The concurrency benchmark opens hundreds of sessions at once.
MaxStartups 1000:30:1000
MaxSessions 1000
UseDNS no
PrintMotd no
X11Forwarding no
# The haproxy driver reaches HAProxy's admin unix socket through a
# direct-streamlocal channel; OpenSSH grants those only when local forwarding
# is allowed (AllowStreamLocalForwarding, default yes, is not enough alone).
AllowTcpForwarding local
LogLevel INFO
# The device is a clean host: its shell must not run this machine's root dotfiles (here
# ~/.bashrc runs \`pyenv init\`, which costs seconds per command; bash reads .bashrc even
# for commands run through sshd). HOME points at an empty home of the stack's own.
SetEnv HOME=$S/home
# sftp-server lives in openssh-sftp-server, only a Recommends of
# openssh-server (not installed with --no-install-recommends); scp in
# OpenSSH >= 9 uses SFTP too. internal-sftp needs no extra binary.
Subsystem sftp internal-sftp
EOF
# Privilege-separation directory; normally created by the systemd unit.
mkdir -p /run/sshd && chmod 0755 /run/sshd
/usr/sbin/sshd -t -f "$S/sshd_config" >"$S/sshd-check.log" 2>&1 \
    || fail_with_logs "sshd_config does not check" "$S/sshd-check.log"
# -E: log to a file (there may be no syslog daemon). sshd must be started with
# an absolute path (it re-execs itself).
/usr/sbin/sshd -f "$S/sshd_config" -E "$S/sshd.log" </dev/null >>"$S/sshd.stderr" 2>&1 9>&- \
    || fail_with_logs "sshd failed to start" "$S/sshd.stderr" "$S/sshd.log"
wait_until sshd "$S/sshd.pid" 15 "$S/sshd.stderr" "$S/sshd.log" -- tcp_listening "$SSH_PORT"
log "sshd up on 127.0.0.1:$SSH_PORT [$((SECONDS - t_start))s]"

# --- nginx ---------------------------------------------------------------------
X="$STATE/nginx"
mkdir -p "$X/tmp"
self_signed "$X/cert.pem" "$X/key.pem" nginx.certfleet.test
cat >"$X/nginx.conf" <<EOF
# Generated by certfleet scripts/stack/up.sh
# Runs as root; 'user root' keeps the workers root too, so they can write the
# temp dirs below without any chown.
user root;
worker_processes 1;
daemon on;
pid $X/nginx.pid;
error_log $X/error.log info;
events { worker_connections 1024; }
http {
    access_log $X/access.log;
    # Own temp paths: the compiled-in ones live under /var/lib/nginx.
    client_body_temp_path $X/tmp/client_body;
    proxy_temp_path $X/tmp/proxy;
    fastcgi_temp_path $X/tmp/fastcgi;
    uwsgi_temp_path $X/tmp/uwsgi;
    scgi_temp_path $X/tmp/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        server_name localhost;
        # Stable paths: tests overwrite these files and run
        #   nginx -c $X/nginx.conf -s reload
        ssl_certificate $X/cert.pem;
        ssl_certificate_key $X/key.pem;
        location / { return 200 "ok\n"; }
    }
}
EOF
# -e: the error log used before the config is read (default /var/log/nginx).
nginx -t -q -c "$X/nginx.conf" -e "$X/error.log" >"$X/nginx-check.log" 2>&1 \
    || fail_with_logs "nginx.conf does not check" "$X/nginx-check.log" "$X/error.log"
nginx -c "$X/nginx.conf" -e "$X/error.log" </dev/null >>"$X/nginx.stderr" 2>&1 9>&- \
    || fail_with_logs "nginx failed to start" "$X/nginx.stderr" "$X/error.log"
wait_until nginx "$X/nginx.pid" 15 "$X/nginx.stderr" "$X/error.log" -- tcp_listening "$NGINX_TLS_PORT"
log "nginx up on 127.0.0.1:$NGINX_TLS_PORT [$((SECONDS - t_start))s]"

# --- HAProxy -------------------------------------------------------------------
H="$STATE/haproxy"
self_signed "$H/cert.pem" "$H/key.pem" haproxy.certfleet.test
# HAProxy's crt file is a bundle: certificate chain, then the key.
cat "$H/cert.pem" "$H/key.pem" >"$H/site.pem"
chmod 600 "$H/site.pem"
cat >"$H/haproxy.cfg" <<EOF
# Generated by certfleet scripts/stack/up.sh
global
    daemon
    pidfile $H/haproxy.pid
    # Admin sockets for runtime cert swaps:
    #   set ssl cert $H/site.pem <<\n<bundle>\n  then  commit ssl cert $H/site.pem
    stats socket $H/admin.sock mode 600 level admin
    stats socket ipv4@127.0.0.1:$HAPROXY_API_PORT level admin
    stats timeout 30s
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend fe_tls
    bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $H/site.pem
    http-request return status 200 content-type text/plain string ok
EOF
haproxy -c -q -f "$H/haproxy.cfg" >"$H/haproxy-check.log" 2>&1 \
    || fail_with_logs "haproxy.cfg does not check" "$H/haproxy-check.log"
haproxy -f "$H/haproxy.cfg" </dev/null >>"$H/haproxy.log" 2>&1 9>&- \
    || fail_with_logs "haproxy failed to start" "$H/haproxy.log"
haproxy_ready() { tcp_listening "$HAPROXY_TLS_PORT" && tcp_listening "$HAPROXY_API_PORT" && [[ -S $H/admin.sock ]]; }
wait_until haproxy "$H/haproxy.pid" 15 "$H/haproxy.log" -- haproxy_ready
log "haproxy up on 127.0.0.1:$HAPROXY_TLS_PORT (api $HAPROXY_API_PORT) [$((SECONDS - t_start))s]"
exec 9>&-   # every daemon listens: the next stack may choose its ports

# --- nothing on a wildcard address -----------------------------------------------
# Every socket of every daemon we started must be bound to 127.0.0.1.
our_pids=()
for f in "$N/named.pid" "$P/pebble.pid" "$STATE/pebble-eab/pebble.pid" "$S/sshd.pid" "$X/nginx.pid" "$H/haproxy.pid"; do
    our_pids+=("$(<"$f")")
    # nginx workers hold the listening sockets too
    mapfile -t kids < <(ps -o pid= --ppid "$(<"$f")" | tr -d ' ')
    our_pids+=("${kids[@]}")
done
bad=""
for pid in "${our_pids[@]}"; do
    [[ -n $pid ]] || continue
    bad+=$(ss -Htulnp | grep -F "pid=$pid," | awk '$5 !~ /^127\.0\.0\.1:/' || true)
done
if [[ -n $bad ]]; then
    printf '%s\n' "$bad" >&2
    die "a test peer is listening on a non-loopback address"
fi

# --- stack.env -------------------------------------------------------------------
host_fp=$(ssh-keygen -lf "$S/ssh_host_ed25519_key.pub" | awk '{print $2}')
cat >"$STATE/stack.env.tmp" <<EOF
# Generated by certfleet scripts/stack/up.sh - KEY=value, values never contain
# spaces or quotes (source it, or split each line at the first '=').
STATE_DIR=$STATE
ZONE=$ZONE
DELEGATE_ZONE=$DELEGATE_ZONE
NAMED_HOST=127.0.0.1
NAMED_PORT=$NAMED_PORT
NAMED_CONF=$N/named.conf
TSIG_KEY_NAME=$TSIG_KEY_NAME
TSIG_ALGORITHM=hmac-sha256
TSIG_SECRET=$TSIG_SECRET
TSIG512_KEY_NAME=$TSIG512_KEY_NAME
TSIG512_ALGORITHM=hmac-sha512
TSIG512_SECRET=$TSIG512_SECRET
DELEGATED_NAME=delegated.$ZONE
DELEGATED_CHALLENGE_TARGET=delegated.$ZONE.$DELEGATE_ZONE
PEBBLE_DIRECTORY_URL=https://127.0.0.1:$PEBBLE_PORT/dir
PEBBLE_MGMT_URL=https://127.0.0.1:$PEBBLE_MGMT_PORT
PEBBLE_CA_BUNDLE=$STATE/pebble-ca.pem
PEBBLE_HTTP_PORT=$PEBBLE_HTTP_PORT
PEBBLE_TLS_PORT=$PEBBLE_TLS_PORT
PEBBLE_EAB_DIRECTORY_URL=https://127.0.0.1:$PEBBLE_EAB_PORT/dir
PEBBLE_EAB_MGMT_URL=https://127.0.0.1:$PEBBLE_EAB_MGMT_PORT
PEBBLE_EAB_KID=$PEBBLE_EAB_KID
PEBBLE_EAB_HMAC=$PEBBLE_EAB_HMAC
SSH_HOST=127.0.0.1
SSH_PORT=$SSH_PORT
SSH_USER=root
SSH_KEY=$STATE/client_ed25519
SSH_HOST_PUBKEY=$S/ssh_host_ed25519_key.pub
SSH_HOST_KEY_TYPE=ssh-ed25519
SSH_HOST_PUBKEY_B64=$(cut -d' ' -f2 "$S/ssh_host_ed25519_key.pub")
SSH_HOST_KEY_FINGERPRINT=$host_fp
SSH_KNOWN_HOSTS=$S/known_hosts
NGINX_TLS_PORT=$NGINX_TLS_PORT
NGINX_CERT=$X/cert.pem
NGINX_KEY=$X/key.pem
NGINX_CONF=$X/nginx.conf
NGINX_PID_FILE=$X/nginx.pid
HAPROXY_TLS_PORT=$HAPROXY_TLS_PORT
HAPROXY_SOCKET=$H/admin.sock
HAPROXY_API_PORT=$HAPROXY_API_PORT
HAPROXY_PEM=$H/site.pem
HAPROXY_CONF=$H/haproxy.cfg
EOF
chmod 600 "$STATE/stack.env.tmp"
mv "$STATE/stack.env.tmp" "$STATE/stack.env"   # appears only when complete

ok=1
log "stack up in $((SECONDS - t_start))s; env: $STATE/stack.env"
