#!/usr/bin/env bash
# Install Debian's chromium for the browser tests when it is missing and we are root.
# Without it the browser tests skip and say why.
set -u
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium is not installed and we are not root: browser tests will be skipped." >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is not installed and apt-get is not available: browser tests will be skipped." >&2
    exit 0
fi
echo "Installing Debian's chromium for the browser tests..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null \
    || echo "chromium could not be installed: browser tests will be skipped." >&2
exit 0
