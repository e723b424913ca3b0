#!/bin/sh
# Installs Debian's Chromium for the browser tests (tests/e2e/browser.py drives it through
# Playwright for Python; never `playwright install`). Idempotent: does nothing when it is there.
#
#   scripts/install-chromium.sh          # CHROMIUM=/path/to/chromium to check another binary
set -eu

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

fail() {
    echo "install-chromium: $*" >&2
    echo "install-chromium: install it by hand (Debian/Ubuntu: apt-get install chromium)," \
        "or point CHROMIUM at a Chromium binary. Without it the browser tests are skipped" \
        "(and fail under CI=true)." >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$CHROMIUM is missing and apt-get is not available"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    fail "$CHROMIUM is missing; installing it needs root, and sudo is not available"
fi

echo "install-chromium: $CHROMIUM is missing; installing Debian's chromium package"
$SUDO apt-get update || fail "apt-get update failed (no network access to the package mirrors?)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium ||
    fail "apt-get install chromium failed"
[ -x "$CHROMIUM" ] || fail "the chromium package is installed but $CHROMIUM is still missing"
echo "install-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
