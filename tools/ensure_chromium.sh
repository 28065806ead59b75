#!/bin/sh
# Make sure headless Chromium is available for the report rendering test (tests/test_report.py).
# Installs Debian's chromium with apt-get when /usr/bin/chromium is missing; one clear line if
# that is not possible (not root, no apt-get, no network).
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: $CHROMIUM is missing and apt-get is not available: install Chromium by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "chromium: $CHROMIUM is missing; run 'sudo apt-get install chromium' (needs root)" >&2
        exit 1
    fi
fi
echo "chromium: installing Debian's chromium with apt-get (for the report rendering test)" >&2
if ! { $SUDO apt-get update -qq >/dev/null && \
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
    echo "chromium: apt-get install chromium failed: install it by hand (apt-get install chromium)" >&2
    exit 1
fi
[ -x "$CHROMIUM" ] || { echo "chromium: installed, but $CHROMIUM is still missing" >&2; exit 1; }
