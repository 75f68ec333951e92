#!/bin/sh
# Install what the browser tests need and pip cannot: Debian's chromium and chromium-driver.
# Idempotent and instant when both are present; otherwise apt-get (as root, or with sudo -n).
# Selenium never downloads a browser: the tests use /usr/bin/chromium and /usr/bin/chromedriver.
set -eu
CHROMIUM="${SHOPKEEPER_CHROMIUM:-/usr/bin/chromium}"
DRIVER="${SHOPKEEPER_CHROMEDRIVER:-/usr/bin/chromedriver}"
if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-test-deps: $CHROMIUM or $DRIVER is missing and installing them needs root:" >&2
    echo "  apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing chromium and chromium-driver with apt-get" >&2
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
if [ ! -x "$CHROMIUM" ] || [ ! -x "$DRIVER" ]; then
    echo "install-test-deps: apt-get finished but $CHROMIUM or $DRIVER is still missing" >&2
    exit 1
fi
