#!/usr/bin/env bash
# The seed's API server script: a thin wrapper over `benchboard serve`.
# Usage: ./run_benchmark_api_server.sh [--port 8000] [--db-path benchmarks.duckdb] [--results-dir results] [other serve flags]
set -euo pipefail
# `benchboard` from PATH, else from this checkout's .venv (the README's install).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if command -v benchboard >/dev/null 2>&1; then
  benchboard=benchboard
elif [ -x "$here/.venv/bin/benchboard" ]; then
  benchboard="$here/.venv/bin/benchboard"
else
  echo "error: benchboard is not installed; see README.md (pip install -c constraints.txt -e ./client -e .)" >&2
  exit 2
fi
exec "$benchboard" serve "$@"
