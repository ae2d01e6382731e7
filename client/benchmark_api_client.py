"""The seed's import name for the benchboard client: the same public API as ``benchboard_client``.

    from benchmark_api_client import BenchmarkAPIClient
"""

from benchboard_client import *  # noqa: F403
from benchboard_client import __all__  # noqa: F401
