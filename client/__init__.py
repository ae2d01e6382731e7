"""Python client for a benchboard server. Imports only httpx and websockets.

    from client import BenchmarkAPIClient

    client = BenchmarkAPIClient("http://localhost:8000")
    run = client.start_benchmark(models=["bert-tiny"], batch_sizes=[1, 8])
    client.monitor_progress(run["run_id"], lambda status: print(status["progress"]))
    results = client.get_results(run["run_id"])
"""

from client.async_client import AsyncBenchmarkAPIClient
from client.errors import BenchmarkAPIError, InvalidRequest, NotFound, ServerUnreachable, Unauthorized
from client.following import TERMINAL_STATUSES, FollowPolicy, is_terminal
from client.formatting import RESULT_COLUMNS, describe_progress, format_table
from client.sync_client import BenchmarkAPIClient, RunMonitor

__all__ = [
    "AsyncBenchmarkAPIClient",
    "BenchmarkAPIClient",
    "BenchmarkAPIError",
    "FollowPolicy",
    "InvalidRequest",
    "NotFound",
    "RESULT_COLUMNS",
    "RunMonitor",
    "ServerUnreachable",
    "TERMINAL_STATUSES",
    "Unauthorized",
    "describe_progress",
    "format_table",
    "is_terminal",
]
