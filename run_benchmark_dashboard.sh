#!/usr/bin/env bash
# The seed's dashboard script. The dashboard is served by the same server as the API, so
# when a benchboard server already answers at --api-url (default http://localhost:8000),
# or already holds the database, this says where the dashboard is and exits 0. Otherwise
# it starts one (`benchboard serve`), which serves the API too.
# Usage: ./run_benchmark_dashboard.sh [--port 8050] [--api-url http://localhost:8000] [--db-path benchmarks.duckdb]
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
api_url="http://localhost:8000"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --api-url) api_url="${2:?--api-url needs a URL}"; shift 2 ;;
    --api-url=*) api_url="${1#--api-url=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
exec "$benchboard" serve --reuse-running --api-url "$api_url" ${args[@]+"${args[@]}"}
