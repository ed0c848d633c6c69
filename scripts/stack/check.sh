#!/usr/bin/env bash
# shellcheck disable=SC2153  # ZONE etc. come from the sourced stack.env
# Smoke-test the stack started by scripts/stack/up.sh: every peer answers the
# way certfleet's integration tests rely on.
#
# Usage: scripts/stack/check.sh [--no-acme] STATE_DIR
#   --no-acme   skip the end-to-end DNS-01 issuance with lego (it only runs
#               when lego is installed, i.e. after `install.sh --peers`)
#
# Runs every check, prints PASS/FAIL per check, exits 1 if any failed.
# Leaves the stack as it found it (test records are removed, a swapped
# HAProxy certificate is swapped back).
set -euo pipefail

run_acme=1
args=()
for a in "$@"; do
    case "$a" in
        --no-acme) run_acme=0 ;;
        *) args+=("$a") ;;
    esac
done
[[ ${#args[@]} -eq 1 ]] || { echo "usage: $0 [--no-acme] STATE_DIR" >&2; exit 2; }
ENV_FILE="${args[0]}/stack.env"
[[ -f $ENV_FILE ]] || { echo "[check] ERROR: $ENV_FILE missing - did up.sh succeed?" >&2; exit 1; }
# shellcheck disable=SC1090  # path known at run time
source "$ENV_FILE"
for k in STATE_DIR ZONE DELEGATE_ZONE NAMED_PORT TSIG_KEY_NAME TSIG_SECRET TSIG512_KEY_NAME TSIG512_SECRET \
         DELEGATED_NAME DELEGATED_CHALLENGE_TARGET PEBBLE_DIRECTORY_URL PEBBLE_MGMT_URL PEBBLE_CA_BUNDLE \
         PEBBLE_EAB_DIRECTORY_URL PEBBLE_EAB_MGMT_URL SSH_PORT SSH_USER SSH_KEY SSH_KNOWN_HOSTS \
         NGINX_TLS_PORT NGINX_CERT NGINX_CONF NGINX_PID_FILE HAPROXY_TLS_PORT HAPROXY_SOCKET \
         HAPROXY_API_PORT HAPROXY_PEM; do
    [[ -n ${!k:-} ]] || { echo "[check] ERROR: $k missing from $ENV_FILE" >&2; exit 1; }
done

WORK=$(mktemp -d "$STATE_DIR/check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

failures=0
# check NAME FUNCTION ARGS...: run one check in a subshell so a failure
# neither aborts the other checks nor leaks state. The subshell must not sit
# in an `||`/`if` context: bash would then silently ignore `set -e` inside it.
check() {
    local name=$1; shift
    local out rc
    set +e
    ( set -euo pipefail; "$@" ) >"$WORK/check.out" 2>&1
    rc=$?
    set -e
    out=$(<"$WORK/check.out")
    if (( rc == 0 )); then
        printf 'PASS  %s\n' "$name"
    else
        printf 'FAIL  %s\n' "$name"
        [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/      | /'
        failures=$((failures + 1))
    fi
}
# `cmd || bad "why"`: fail the current check (exits its subshell).
bad() { echo "$*" >&2; exit 1; }

# --- DNS -------------------------------------------------------------------------
# nsupdate -y takes "alg:name:secret"; the algorithm must be spelled exactly
# hmac-sha256 / hmac-sha512 (a wrong spelling can mean HMAC-MD5 -> BADKEY).
nsup() { # ALG KEYNAME SECRET, commands on stdin (server line is added)
    { echo "server 127.0.0.1 $NAMED_PORT"; cat; } | nsupdate -t 5 -y "$1:$2:$3"
}
# Authoritative answer straight from our named (never the system resolver).
txt() { dig +short +norecurse +time=2 +tries=1 @127.0.0.1 -p "$NAMED_PORT" TXT "$1" | tr -d '"'; }

dns_update_roundtrip() { # ALG KEYNAME SECRET ZONE
    local alg=$1 key=$2 secret=$3 zone=$4
    local name="_acme-challenge.check-$RANDOM.$zone." token="tok-$RANDOM-$$"
    nsup "$alg" "$key" "$secret" <<EOF || bad "nsupdate add failed"
zone $zone
update add $name 60 IN TXT "$token"
send
EOF
    [[ $(txt "$name") == "$token" ]] || bad "TXT $name not visible after add (got '$(txt "$name")')"
    # Also over TCP (the transport large updates and some clients use).
    dig +short +tcp +norecurse @127.0.0.1 -p "$NAMED_PORT" TXT "$name" | grep -q "$token" \
        || bad "TXT $name not visible over TCP"
    nsup "$alg" "$key" "$secret" <<EOF || bad "nsupdate delete failed"
zone $zone
update delete $name TXT
send
EOF
    [[ -z $(txt "$name") ]] || bad "TXT $name still present after delete"
}

dns_unsigned_refused() {
    local name="_acme-challenge.unsigned-$RANDOM.$ZONE."
    if { echo "server 127.0.0.1 $NAMED_PORT"; printf 'zone %s\nupdate add %s 60 IN TXT "x"\nsend\n' "$ZONE" "$name"; } \
        | nsupdate -t 5 >/dev/null 2>&1; then
        bad "an unsigned update was accepted"
    fi
    if printf 'zone %s\nupdate add %s 60 IN TXT "x"\nsend\n' "$ZONE" "$name" \
        | { echo "server 127.0.0.1 $NAMED_PORT"; cat; } \
        | nsupdate -t 5 -y "hmac-sha256:$TSIG_KEY_NAME:$(openssl rand 32 | base64 -w0)" >/dev/null 2>&1; then
        bad "an update signed with a wrong secret was accepted"
    fi
    [[ -z $(txt "$name") ]] || bad "refused update left a record"
}

dns_cname_delegation() {
    # The challenge name under $ZONE is a CNAME into $DELEGATE_ZONE; the TXT
    # lives in the delegate zone. A recursive query (what Pebble's resolver
    # sends) must follow the CNAME and return the TXT.
    local token="deleg-$RANDOM-$$"
    nsup hmac-sha256 "$TSIG_KEY_NAME" "$TSIG_SECRET" <<EOF || bad "nsupdate add in $DELEGATE_ZONE failed"
zone $DELEGATE_ZONE
update add $DELEGATED_CHALLENGE_TARGET. 60 IN TXT "$token"
send
EOF
    local ans
    ans=$(dig +noall +answer +recurse +time=2 +tries=1 @127.0.0.1 -p "$NAMED_PORT" TXT "_acme-challenge.$DELEGATED_NAME")
    nsup hmac-sha256 "$TSIG_KEY_NAME" "$TSIG_SECRET" <<EOF || bad "nsupdate delete in $DELEGATE_ZONE failed"
zone $DELEGATE_ZONE
update delete $DELEGATED_CHALLENGE_TARGET. TXT
send
EOF
    grep -q "CNAME[[:space:]]*$DELEGATED_CHALLENGE_TARGET\.$" <<<"$ans" || bad "no CNAME in answer: $ans"
    grep -q "TXT[[:space:]]*\"$token\"" <<<"$ans" || bad "CNAME not followed to the TXT: $ans"
}

dns_local_root() {
    # Names outside our zones are answered NXDOMAIN by the local root zone,
    # authoritatively and at once: recursion never leaves the machine.
    local out
    out=$(dig +time=2 +tries=1 @127.0.0.1 -p "$NAMED_PORT" A "example.com")
    grep -q 'status: NXDOMAIN' <<<"$out" || bad "example.com not NXDOMAIN: $out"
    grep -q 'flags: qr aa' <<<"$out" || bad "example.com answer not authoritative: $out"
    [[ $(dig +short @127.0.0.1 -p "$NAMED_PORT" A "foo.$ZONE") == 127.0.0.1 ]] || bad "foo.$ZONE does not resolve to 127.0.0.1"
}

# --- Pebble ----------------------------------------------------------------------
pebble_dir() { # URL EXPECT_EAB(true|false)
    local dir
    dir=$(curl -sSf --max-time 5 --cacert "$PEBBLE_CA_BUNDLE" "$1") || bad "GET $1 failed"
    grep -q '"newOrder"' <<<"$dir" || bad "no newOrder in directory: $dir"
    if [[ $2 == true ]]; then
        grep -q '"externalAccountRequired": *true' <<<"$dir" || bad "EAB not required: $dir"
    else
        grep -q '"externalAccountRequired": *true' <<<"$dir" && bad "EAB unexpectedly required: $dir"
    fi
    return 0
}
pebble_mgmt() { # MGMT_URL
    local f
    for f in roots/0 intermediates/0; do
        curl -sSf --max-time 5 --cacert "$PEBBLE_CA_BUNDLE" "$1/$f" -o "$WORK/${f//\//-}.pem" || bad "GET $1/$f failed"
        openssl x509 -noout -in "$WORK/${f//\//-}.pem" || bad "$1/$f is not a certificate"
    done
}

# --- SSH -------------------------------------------------------------------------
ssh_opts=(-i "$SSH_KEY" -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes
          -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" -o ConnectTimeout=5 -o IdentitiesOnly=yes
          -o LogLevel=ERROR)
ssh_login() {
    [[ $(ssh "${ssh_opts[@]}" "$SSH_USER@127.0.0.1" 'echo ok-$(id -un)') == "ok-root" ]] \
        || bad "ssh command did not run as root"
    # sftp subsystem (internal-sftp): what file-transfer deploys use.
    echo "ls /" | sftp -P "$SSH_PORT" -i "$SSH_KEY" -o BatchMode=yes -o StrictHostKeyChecking=yes \
        -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" -o LogLevel=ERROR -b - "$SSH_USER@127.0.0.1" >/dev/null \
        || bad "sftp failed"
    # Only public-key auth is offered.
    if ssh -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" \
        -o PubkeyAuthentication=no -o LogLevel=ERROR "$SSH_USER@127.0.0.1" true 2>/dev/null; then
        bad "login without the key succeeded"
    fi
    return 0
}

# --- TLS endpoints ---------------------------------------------------------------
served_fp() { # PORT -> sha256 fingerprint of the served leaf
    openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null \
        | openssl x509 -noout -fingerprint -sha256
}
file_fp() { openssl x509 -noout -fingerprint -sha256 -in "$1"; }
tls_serves() { # PORT CERTFILE
    local got want
    got=$(served_fp "$1") || bad "no certificate from 127.0.0.1:$1"
    want=$(file_fp "$2")
    [[ $got == "$want" ]] || bad "127.0.0.1:$1 serves $got, expected $want ($2)"
    [[ $(curl -sk --max-time 5 "https://127.0.0.1:$1/") == ok* ]] || bad "https://127.0.0.1:$1/ does not answer ok"
}
nginx_reload() {
    local before after
    before=$(<"$NGINX_PID_FILE")
    nginx -c "$NGINX_CONF" -s reload 2>&1 || bad "nginx -s reload failed"
    sleep 0.5
    after=$(<"$NGINX_PID_FILE")
    [[ $before == "$after" ]] || bad "nginx master pid changed on reload ($before -> $after)"
    tls_serves "$NGINX_TLS_PORT" "$NGINX_CERT"
}

hap() { socat -t 5 - "UNIX-CONNECT:$HAPROXY_SOCKET"; }
haproxy_admin() {
    local out
    out=$(echo "show ssl cert" | hap) || bad "unix socket not answering"
    grep -qxF "$HAPROXY_PEM" <<<"$out" || bad "show ssl cert does not list $HAPROXY_PEM: $out"
    out=$(echo "show ssl cert $HAPROXY_PEM" | socat -t 5 - "TCP:127.0.0.1:$HAPROXY_API_PORT") \
        || bad "TCP admin socket not answering"
    grep -q '^Status: Used' <<<"$out" || bad "TCP socket: unexpected 'show ssl cert' output: $out"
    # Hot swap to a fresh cert and back, without restarting HAProxy.
    local pid new orig_fp
    pid=$(<"$STATE_DIR/haproxy/haproxy.pid")
    orig_fp=$(file_fp "$HAPROXY_PEM")
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/k.pem" \
        -out "$WORK/c.pem" -days 1 -subj /CN=swap.certfleet.test 2>/dev/null || bad "openssl req failed"
    new=$(cat "$WORK/c.pem" "$WORK/k.pem")
    swap() { # BUNDLE
        local r
        r=$(printf 'set ssl cert %s <<\n%s\n\n' "$HAPROXY_PEM" "$1" | hap)
        grep -q 'Transaction created' <<<"$r" || bad "set ssl cert: $r"
        r=$(echo "commit ssl cert $HAPROXY_PEM" | hap)
        grep -q 'Success' <<<"$r" || bad "commit ssl cert: $r"
    }
    swap "$new"
    [[ $(served_fp "$HAPROXY_TLS_PORT") == "$(file_fp "$WORK/c.pem")" ]] || bad "swapped cert not served"
    swap "$(cat "$HAPROXY_PEM")"
    [[ $(served_fp "$HAPROXY_TLS_PORT") == "$orig_fp" ]] || bad "original cert not restored"
    if [[ $(<"$STATE_DIR/haproxy/haproxy.pid") != "$pid" ]] || ! kill -0 "$pid"; then
        bad "haproxy restarted"
    fi
}

# --- loopback only -----------------------------------------------------------------
loopback_only() {
    local f pid bad_lines=""
    for f in named/named.pid pebble/pebble.pid pebble-eab/pebble.pid ssh/sshd.pid nginx/nginx.pid haproxy/haproxy.pid; do
        pid=$(<"$STATE_DIR/$f") || bad "missing $f"
        kill -0 "$pid" 2>/dev/null || bad "$f: pid $pid is not running"
        for p in "$pid" $(ps -o pid= --ppid "$pid"); do
            bad_lines+=$(ss -Htulnp | grep -F "pid=$p," | awk '$5 !~ /^127\.0\.0\.1:/' || true)
        done
    done
    [[ -z $bad_lines ]] || bad "non-loopback sockets: $bad_lines"
}

# --- end to end: DNS-01 issuance through Pebble + BIND --------------------------
# Proves Pebble really resolves through our named (-dnsserver), including the
# CNAME into the delegate zone, using lego as a reference ACME client.
acme_dns01() { # DOMAIN DIRECTORY_URL [extra lego flags...]
    local domain=$1 dir="$WORK/lego-$1" server=$2; shift 2
    LEGO_CA_CERTIFICATES="$PEBBLE_CA_BUNDLE" \
    RFC2136_NAMESERVER="127.0.0.1:$NAMED_PORT" \
    RFC2136_TSIG_ALGORITHM="hmac-sha256." RFC2136_TSIG_KEY="$TSIG_KEY_NAME" RFC2136_TSIG_SECRET="$TSIG_SECRET" \
    RFC2136_PROPAGATION_TIMEOUT=30 RFC2136_POLLING_INTERVAL=1 RFC2136_TTL=1 \
        timeout 120 lego --server "$server" --accept-tos --email "check@$ZONE" "$@" \
            --path "$dir" --dns rfc2136 --dns.resolvers "127.0.0.1:$NAMED_PORT" --dns.disable-cp \
            --domains "$domain" run >"$dir.log" 2>&1 \
        || { tail -n 30 "$dir.log"; bad "lego could not issue $domain"; }
    openssl x509 -noout -in "$dir/certificates/$domain.crt" || bad "no certificate for $domain"
}

check "dns: hmac-sha256 update add/remove in $ZONE"          dns_update_roundtrip hmac-sha256 "$TSIG_KEY_NAME" "$TSIG_SECRET" "$ZONE"
check "dns: hmac-sha512 update add/remove in $DELEGATE_ZONE" dns_update_roundtrip hmac-sha512 "$TSIG512_KEY_NAME" "$TSIG512_SECRET" "$DELEGATE_ZONE"
check "dns: hmac-sha256 update in $DELEGATE_ZONE"             dns_update_roundtrip hmac-sha256 "$TSIG_KEY_NAME" "$TSIG_SECRET" "$DELEGATE_ZONE"
check "dns: unsigned / wrong-key updates refused"            dns_unsigned_refused
check "dns: CNAME into $DELEGATE_ZONE followed by recursion" dns_cname_delegation
check "dns: local root, nothing leaves the machine"          dns_local_root
check "pebble: directory"                                    pebble_dir "$PEBBLE_DIRECTORY_URL" false
check "pebble: management roots/0 + intermediates/0"         pebble_mgmt "$PEBBLE_MGMT_URL"
check "pebble-eab: directory requires EAB"                   pebble_dir "$PEBBLE_EAB_DIRECTORY_URL" true
check "pebble-eab: management"                               pebble_mgmt "$PEBBLE_EAB_MGMT_URL"
check "sshd: key login as root, sftp, no keyless login"      ssh_login
check "nginx: serves $NGINX_CERT"                            tls_serves "$NGINX_TLS_PORT" "$NGINX_CERT"
check "nginx: -s reload keeps the master pid"                nginx_reload
check "haproxy: serves $HAPROXY_PEM"                         tls_serves "$HAPROXY_TLS_PORT" "$HAPROXY_PEM"
check "haproxy: admin sockets + hot cert swap"               haproxy_admin
check "all peers listen on 127.0.0.1 only"                   loopback_only
if (( run_acme )) && command -v lego >/dev/null; then
    check "acme: DNS-01 issuance (lego) for check-$$.$ZONE"  acme_dns01 "check-$$.$ZONE" "$PEBBLE_DIRECTORY_URL"
    check "acme: DNS-01 via CNAME delegation for $DELEGATED_NAME" acme_dns01 "$DELEGATED_NAME" "$PEBBLE_DIRECTORY_URL"
    check "acme-eab: issuance with EAB kid $PEBBLE_EAB_KID"  acme_dns01 "eab-$$.$ZONE" "$PEBBLE_EAB_DIRECTORY_URL" \
        --eab --kid "$PEBBLE_EAB_KID" --hmac "$PEBBLE_EAB_HMAC"
else
    echo "SKIP  acme: DNS-01 end to end (needs lego: install.sh --peers)"
fi

if (( failures )); then
    echo "[check] $failures check(s) FAILED" >&2
    exit 1
fi
echo "[check] all checks passed"
