#!/usr/bin/env bash
# The seed's dashboard script. The dashboard is served by the same server as the API,
# so this is `benchboard serve`; the seed's --api-url has no meaning here and is ignored.
# Usage: ./run_benchmark_dashboard.sh [--port 8050] [--db-path benchmarks.duckdb]
set -euo pipefail
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --api-url) echo "note: --api-url ignored: the dashboard and the API are one server" >&2; shift 2 ;;
    --api-url=*) echo "note: --api-url ignored: the dashboard and the API are one server" >&2; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
exec benchboard serve "${args[@]}"
