"""Python client for a benchboard server (the ``benchboard-client`` distribution). Imports only httpx
and websockets; ``benchmark_api_client`` is the same API under the seed's import name.

    from benchboard_client import BenchmarkAPIClient

    client = BenchmarkAPIClient("http://localhost:8000")
    run = client.start_benchmark(models=["bert-tiny"], batch_sizes=[1, 8])
    client.monitor_progress(run["run_id"], lambda status: print(status["progress"]))
    results = client.get_results(run["run_id"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from benchboard_client.errors import (
    BenchmarkAPIError,
    InvalidRequest,
    InvalidServerAddress,
    NotFound,
    ServerUnreachable,
    Unauthorized,
)
from benchboard_client.following import TERMINAL_STATUSES, FollowPolicy, is_terminal
from benchboard_client.formatting import (
    GENERATE_RESULT_COLUMNS,
    RESULT_COLUMNS,
    describe_progress,
    format_results,
    format_table,
)

if TYPE_CHECKING:
    from benchboard_client.async_client import AsyncBenchmarkAPIClient
    from benchboard_client.sync_client import BenchmarkAPIClient, RunMonitor

# The clients, and httpx and websockets with them (0.2 s), load on first use: `benchboard run`
# prints the column lists above at its end and sends nothing (issue 16).
_CLIENTS = {
    "AsyncBenchmarkAPIClient": "benchboard_client.async_client",
    "BenchmarkAPIClient": "benchboard_client.sync_client",
    "RunMonitor": "benchboard_client.sync_client",
}


def __getattr__(name: str):
    if name in _CLIENTS:
        value = getattr(importlib.import_module(_CLIENTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncBenchmarkAPIClient",
    "BenchmarkAPIClient",
    "BenchmarkAPIError",
    "FollowPolicy",
    "InvalidRequest",
    "InvalidServerAddress",
    "NotFound",
    "GENERATE_RESULT_COLUMNS",
    "RESULT_COLUMNS",
    "RunMonitor",
    "ServerUnreachable",
    "TERMINAL_STATUSES",
    "Unauthorized",
    "describe_progress",
    "format_results",
    "format_table",
    "is_terminal",
]
