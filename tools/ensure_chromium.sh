#!/bin/sh
# What the report and dashboard tests need from Debian (tests/test_report.py, tests/test_serve.py,
# tests/test_plots.py): headless Chromium (/usr/bin/chromium: `oimon report` prints its PDF with it,
# Playwright drives it; no browser is downloaded) and poppler-utils (pdftotext, pdfinfo, pdftoppm:
# the tests read the PDF and keep its pages as PNG). Installs what is missing with apt-get; one clear
# line if that is not possible (not root, no apt-get, no network).
CHROMIUM=/usr/bin/chromium
missing=""
[ -x "$CHROMIUM" ] || missing="chromium"
command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 && command -v pdfinfo >/dev/null 2>&1 \
    || missing="$missing poppler-utils"
if [ -z "$missing" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: $missing missing and apt-get is not available: install them by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "chromium: $missing missing; run 'sudo apt-get install$missing' (needs root)" >&2
        exit 1
    fi
fi
echo "chromium: installing Debian's$missing with apt-get (for the report and dashboard tests)" >&2
if ! { $SUDO apt-get update -qq >/dev/null && \
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
    echo "chromium: apt-get install$missing failed: install it by hand" >&2
    exit 1
fi
[ -x "$CHROMIUM" ] || { echo "chromium: installed, but $CHROMIUM is still missing" >&2; exit 1; }
command -v pdftoppm >/dev/null 2>&1 || { echo "chromium: installed, but pdftoppm is still missing" >&2; exit 1; }
