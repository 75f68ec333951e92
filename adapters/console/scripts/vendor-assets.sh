#!/bin/sh
# Copy the browser libraries the console serves from node_modules (installed by `npm ci` from the
# committed package-lock.json) into static/vendor/, with their licences. The console serves only
# these files: no CDN at run time. tests/adapters/test_console.py checks the copies match the lockfile's.
set -eu
HERE="$(cd "$(dirname "$0")/.." && pwd)"
cd "$HERE"
[ -d node_modules/chart.js ] || npm ci --no-audit --no-fund --loglevel=error
cp node_modules/chart.js/dist/chart.umd.js static/vendor/chart.umd.js
cp node_modules/chart.js/LICENSE.md static/vendor/chart.js.LICENSE.md
