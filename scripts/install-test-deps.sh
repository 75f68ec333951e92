#!/bin/sh
# Install what the tests need and pip cannot, idempotently (instant when everything is there):
# - Debian's chromium and chromium-driver for the browser tests (Selenium never downloads a
#   browser: the tests use /usr/bin/chromium and /usr/bin/chromedriver);
# - Node.js and npm for the Node client's tests, and the Node dependencies of clients/node with
#   `npm ci` from its committed package-lock.json (@grpc/grpc-js, the official Segment Node SDK).
# - Debian's postgresql (initdb, pg_ctl) for the suite's private PostgreSQL cluster
#   (tests/conftest.py's pg_server starts its own in a temp dir; no system cluster is used).
# apt-get runs as root, or with sudo -n.
set -eu
CHROMIUM="${SHOPKEEPER_CHROMIUM:-/usr/bin/chromium}"
DRIVER="${SHOPKEEPER_CHROMEDRIVER:-/usr/bin/chromedriver}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"

need=""
if [ ! -x "$CHROMIUM" ] || [ ! -x "$DRIVER" ]; then
    need="chromium chromium-driver"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    need="$need nodejs npm"
fi
if ! command -v curl >/dev/null 2>&1; then  # the docs' curl quick start is run as written
    need="$need curl"
fi
# --- PostgreSQL (issue 17): the storage tests' private cluster needs initdb and pg_ctl ---
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    need="$need postgresql"
fi
# --- end PostgreSQL ---
if [ -n "$need" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-test-deps: installing $need needs root:" >&2
        echo "  apt-get update && apt-get install -y $need" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "install-test-deps: installing $need with apt-get" >&2
    $SUDO apt-get update -qq >/dev/null
    # shellcheck disable=SC2086 - word splitting of the package list is wanted
    $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
    if [ ! -x "$CHROMIUM" ] || [ ! -x "$DRIVER" ]; then
        echo "install-test-deps: apt-get finished but $CHROMIUM or $DRIVER is still missing" >&2
        exit 1
    fi
fi

# --- pg_repack (issue 17): pack.rewrite on PostgreSQL; the package is per server major version ---
PG_MAJOR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sed 's,.*/postgresql/\([0-9]*\)/bin,\1,' | sort -n | tail -1)"
if [ -n "$PG_MAJOR" ] && [ ! -x "/usr/lib/postgresql/$PG_MAJOR/bin/pg_repack" ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
    echo "install-test-deps: installing postgresql-$PG_MAJOR-repack with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "postgresql-$PG_MAJOR-repack" >/dev/null
fi
# --- end pg_repack ---

# clients/node: npm ci only when the installed tree is not from the committed lockfile
NODE_DIR="$HERE/clients/node"
STAMP="$NODE_DIR/node_modules/.installed-from-package-lock.json"
if ! cmp -s "$NODE_DIR/package-lock.json" "$STAMP" 2>/dev/null; then
    echo "install-test-deps: npm ci in clients/node" >&2
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$NODE_DIR/package-lock.json" "$STAMP"
fi

# adapters/console (issue 18): Chart.js (vendored into static/vendor, checked against the lockfile by
# the tests) and axe-core (accessibility checks in the browser tests), from the committed lockfile
CONSOLE_DIR="$HERE/adapters/console"
CONSOLE_STAMP="$CONSOLE_DIR/node_modules/.installed-from-package-lock.json"
if ! cmp -s "$CONSOLE_DIR/package-lock.json" "$CONSOLE_STAMP" 2>/dev/null; then
    echo "install-test-deps: npm ci in adapters/console" >&2
    (cd "$CONSOLE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$CONSOLE_DIR/package-lock.json" "$CONSOLE_STAMP"
fi

# Kannel for the SMS adapter's tests (tests/adapters/test_sms*.py): /usr/sbin/bearerbox and
# /usr/sbin/smsbox from `kannel`, the fake SMS centre /usr/lib/kannel/test/fakesmsc from
# `kannel-extras` (paths overridable with SHOPKEEPER_KANNEL_SBIN and SHOPKEEPER_FAKESMSC).
# The tests write their own kannel.conf and start the daemons themselves; Debian's kannel
# service is stopped again if apt started it.
KANNEL_SBIN="${SHOPKEEPER_KANNEL_SBIN:-/usr/sbin}"
FAKESMSC="${SHOPKEEPER_FAKESMSC:-/usr/lib/kannel/test/fakesmsc}"
install_kannel() {
    if [ -x "$KANNEL_SBIN/bearerbox" ] && [ -x "$KANNEL_SBIN/smsbox" ] && [ -x "$FAKESMSC" ]; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ]; then
        KSUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        KSUDO="sudo -n"
    else
        echo "install-test-deps: installing kannel needs root:" >&2
        echo "  apt-get update && apt-get install -y kannel kannel-extras" >&2
        exit 1
    fi
    echo "install-test-deps: installing kannel kannel-extras with apt-get" >&2
    $KSUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $KSUDO apt-get install -y -qq --no-install-recommends \
        kannel kannel-extras >/dev/null
    # a package's init script may start Debian's own bearerbox on port 13000+: not ours
    if command -v service >/dev/null 2>&1; then
        $KSUDO service kannel stop >/dev/null 2>&1 || true
    fi
    for b in "$KANNEL_SBIN/bearerbox" "$KANNEL_SBIN/smsbox" "$FAKESMSC"; do
        if [ ! -x "$b" ]; then
            echo "install-test-deps: apt-get finished but $b is still missing" >&2
            exit 1
        fi
    done
}
install_kannel
