#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the app's browser test (tests/test_app_browser.py).
#
# Usage: scripts/install_chromium.sh            (as root, or with sudo available)
# Exits 0 when a chromium binary is on PATH afterwards, 1 otherwise. Safe to run twice.
set -euo pipefail

find_chromium() {
    command -v chromium || command -v chromium-browser || command -v google-chrome || true
}

if [ -n "$(find_chromium)" ]; then
    echo "chromium already installed: $(find_chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "not root and no sudo: cannot install chromium" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install Chromium with your system's package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

if [ -z "$(find_chromium)" ]; then
    echo "apt-get finished but no chromium binary is on PATH" >&2
    exit 1
fi
echo "installed: $(find_chromium) ($("$(find_chromium)" --version 2>/dev/null || echo 'version unknown'))"
