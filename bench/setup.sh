#!/usr/bin/env bash
# Install what the benchmarks need beyond Surge itself: uvloop, python-socketio and py-spy into
# the project's .venv (make setup creates it), Socket.IO for Node into bench/node, and the C
# subscribers (bench/csubs, run.py --loadgen c) with gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "no $VENV: run 'make setup' first" >&2
  exit 1
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r bench/requirements.txt
gcc -O2 -Wall -o bench/csubs bench/csubs.c   # the C subscribers (run.py --loadgen c)
if command -v npm >/dev/null; then
  (cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "npm not found: the Socket.IO-on-Node comparison will be skipped" >&2
fi
echo "bench ready: $VENV/bin/python bench/run.py smoke"
