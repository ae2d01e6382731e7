#!/usr/bin/env bash
# The seed's API server script: a thin wrapper over `benchboard serve`.
# Usage: ./run_benchmark_api_server.sh [--port 8000] [--db-path benchmarks.duckdb] [--results-dir results] [other serve flags]
set -euo pipefail
exec benchboard serve "$@"
