#!/usr/bin/env bash
# Install the real test peers used by certfleet's integration tests
# (BIND9, Pebble, OpenSSH server, nginx, HAProxy, Prometheus with promtool, plus
# the client tools the stack scripts need) on a Debian 12 machine.
#
# Usage: scripts/stack/install.sh [--peers]
#   --peers   also install the benchmark peers (certbot + RFC 2136 plugin, lego)
#
# Also installs moto's server (PyPI `moto[server]`, the local Route 53 API that
# worker/tests/route53.rs talks to) with pip when `moto_server` is missing.
#
# Idempotent: packages that are already installed are skipped, and
# `apt-get update` only runs when something is actually missing.
#
# Debian's maintainer scripts start the system-wide daemons (named on :53,
# nginx on :80, sshd on :22, haproxy) listening on 0.0.0.0. We never want
# those: up.sh runs private instances on 127.0.0.1. So during the install a
# temporary /usr/sbin/policy-rc.d that exits 101 ("action forbidden") tells
# invoke-rc.d / deb-systemd-invoke not to start anything. It is removed
# afterwards (a pre-existing policy-rc.d, e.g. Docker's, is put back), even
# when the install fails.
set -euo pipefail

log() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get, policy-rc.d)"

want_peers=0
for arg in "$@"; do
    case "$arg" in
        --peers) want_peers=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

# Core peers + tools used by up.sh/check.sh:
#   socat      talks to the HAProxy admin socket in check.sh
#   curl       Pebble directory / management checks
#   python3    picks free ports in up.sh
#   iproute2   `ss`, to wait for listeners and to prove nothing is on 0.0.0.0
#   procps     `ps`, to verify a pid still belongs to the daemon we started
#   prometheus the real Prometheus that tests/metrics.rs starts on 127.0.0.1, and
#              promtool (check rules / test rules of deploy/prometheus/)
packages=(pebble bind9 bind9-utils bind9-dnsutils openssh-server openssh-client
          nginx haproxy openssl socat curl python3 iproute2 procps prometheus)
if (( want_peers )); then
    packages+=(certbot python3-certbot-dns-rfc2136 lego)
fi

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

missing=()
for p in "${packages[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if (( ${#missing[@]} == 0 )); then
    log "all packages already installed: ${packages[*]}"
else
    log "missing: ${missing[*]}"

    # pids of the daemons we care about that exist *before* the install, so
    # that afterwards we only stop instances the install itself started (an
    # operator's pre-existing sshd on :22 must survive).
    daemons=(named nginx sshd haproxy prometheus)
    declare -A pre_existing=()
    for d in "${daemons[@]}"; do
        for pid in $(pgrep -x "$d" 2>/dev/null || true); do pre_existing[$pid]=1; done
    done

    policy=/usr/sbin/policy-rc.d
    backup=""
    if [[ -e $policy || -L $policy ]]; then
        backup=$(mktemp /usr/sbin/.policy-rc.d.certfleet-backup.XXXXXX)
        cp -a "$policy" "$backup"
    fi
    restore_policy() {
        if [[ -n $backup ]]; then
            mv -f "$backup" "$policy"
        else
            rm -f "$policy"
        fi
    }
    trap restore_policy EXIT
    trap 'exit 130' INT TERM HUP   # makes the EXIT trap run on signals too
    printf '#!/bin/sh\n# temporary, written by certfleet scripts/stack/install.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"

    export DEBIAN_FRONTEND=noninteractive
    start=$(date +%s)
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    log "apt-get took $(( $(date +%s) - start )) s"

    restore_policy
    trap - EXIT INT TERM HUP

    # Belt and braces: if any system-wide daemon got started anyway (e.g. a
    # maintainer script that ignores policy-rc.d), stop it. Only pids that
    # did not exist before the install are touched.
    for d in "${daemons[@]}"; do
        for pid in $(pgrep -x "$d" 2>/dev/null || true); do
            [[ -n ${pre_existing[$pid]:-} ]] && continue
            log "stopping system-wide $d (pid $pid) started by the package install"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
fi

# Debian's bind9 ships an AppArmor profile for /usr/sbin/named that only allows
# /etc/bind, /var/cache/bind, /var/lib/bind, /run/named. Our instance keeps its
# config, zones and journals in a temp STATE_DIR, which that profile would deny
# (named then fails with "permission denied" on a real VM; containers usually
# have no AppArmor). The profile is named "named" (`profile named
# /usr/sbin/named`). Disable that one profile the Debian way.
if [[ -r /sys/kernel/security/apparmor/profiles ]] \
   && grep -Eq '^(named|/usr/sbin/named) \(enforce\)' /sys/kernel/security/apparmor/profiles 2>/dev/null \
   && [[ -f /etc/apparmor.d/usr.sbin.named ]]; then
    log "disabling the AppArmor profile of /usr/sbin/named (it forbids a private state dir)"
    mkdir -p /etc/apparmor.d/disable
    ln -sf /etc/apparmor.d/usr.sbin.named /etc/apparmor.d/disable/usr.sbin.named
    apparmor_parser -R /etc/apparmor.d/usr.sbin.named 2>/dev/null || true
fi

# Report anything of ours listening on a wildcard address (should be nothing).
if command -v ss >/dev/null; then
    wild=$(ss -Htlnup 2>/dev/null | awk '$5 ~ /^(0\.0\.0\.0|\*|\[::\]):/' \
           | grep -E '"(named|nginx|sshd|haproxy|pebble)"' || true)
    if [[ -n $wild ]]; then
        log "WARNING: test-peer daemons listening on a wildcard address (pre-existing?):"
        printf '%s\n' "$wild" >&2
    fi
fi

# moto's server: the local Route 53 and SSM APIs of worker/tests/route53.rs and
# worker/tests/aws_ssm.rs. Debian has no
# package for it; pip installs it (into the active Python) when it is missing.
if ! command -v moto_server >/dev/null; then
    log "installing moto[server] with pip"
    python3 -m pip --version >/dev/null 2>&1 \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip; }
    # Debian 12's system Python is "externally managed" (PEP 668): allow the install there.
    python3 -m pip install --quiet 'moto[server]' \
        || python3 -m pip install --quiet --break-system-packages 'moto[server]'
    hash -r
    command -v moto_server >/dev/null || die "moto_server still missing after pip install"
fi

# schemathesis (the OpenAPI fuzzer of scripts/schemathesis.sh) and aiosmtpd (the real SMTP
# server that tests/notify.rs starts, with STARTTLS), from PyPI into one venv of Debian's
# python3 (the python3 on PATH may be a pyenv shim). The tests look for the venv at
# $CERTFLEET_VENV (default /var/tmp/certfleet-venv).
venv=${CERTFLEET_VENV:-/var/tmp/certfleet-venv}
if [[ ! -x $venv/bin/schemathesis ]] || ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    log "installing schemathesis and aiosmtpd into $venv"
    /usr/bin/python3 -m venv --help >/dev/null 2>&1 && [[ -e /usr/lib/python3/dist-packages ]] \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv; }
    [[ -x $venv/bin/pip ]] || /usr/bin/python3 -m venv "$venv" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv \
             && /usr/bin/python3 -m venv "$venv"; }
    (cd /tmp && "$venv/bin/pip" install --quiet 'schemathesis>=4,<5' 'aiosmtpd>=1.4,<2')
    [[ -x $venv/bin/schemathesis ]] || die "schemathesis still missing after pip install"
    "$venv/bin/python" -c 'import aiosmtpd' || die "aiosmtpd still missing after pip install"
fi

# The dashboard's browser tests (tests/dashboard.rs): Debian's Chromium, driven by
# playwright-core from npm (pinned), installed into a directory of its own. No browser is
# downloaded (`npx playwright install` cannot work here): the tests launch /usr/bin/chromium.
playwright_dir=${CERTFLEET_PLAYWRIGHT_DIR:-/var/tmp/certfleet-playwright}
playwright_version=1.65.1
if ! is_installed chromium || ! command -v npm >/dev/null; then
    log "installing chromium (and nodejs/npm if missing)"
    need=(chromium)
    command -v node >/dev/null || need+=(nodejs)
    command -v npm >/dev/null || need+=(npm)
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
if [[ ! -f $playwright_dir/node_modules/playwright-core/package.json ]] \
   || ! grep -q "\"version\": \"$playwright_version\"" "$playwright_dir/node_modules/playwright-core/package.json"; then
    log "installing playwright-core@$playwright_version into $playwright_dir"
    mkdir -p "$playwright_dir"
    (cd "$playwright_dir" && npm install --no-audit --no-fund --silent "playwright-core@$playwright_version")
fi

for p in "${packages[@]}"; do
    is_installed "$p" || die "package $p is still not installed"
done
log "ok: $(dpkg-query -W -f='${Package} ${Version}  ' pebble bind9 openssh-server nginx haproxy prometheus)"
