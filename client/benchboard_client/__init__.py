"""Python client for a benchboard server (the ``benchboard-client`` distribution). Imports only httpx
and websockets; ``benchmark_api_client`` is the same API under the seed's import name.

    from benchboard_client import BenchmarkAPIClient

    client = BenchmarkAPIClient("http://localhost:8000")
    run = client.start_benchmark(models=["bert-tiny"], batch_sizes=[1, 8])
    client.monitor_progress(run["run_id"], lambda status: print(status["progress"]))
    results = client.get_results(run["run_id"])
"""

from benchboard_client.async_client import AsyncBenchmarkAPIClient
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
from benchboard_client.sync_client import BenchmarkAPIClient, RunMonitor

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
