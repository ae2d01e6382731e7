"""Finding the benchboard server that already serves a database, or answers at a URL.

``benchboard serve --reuse-running`` (what ./run_benchmark_dashboard.sh runs) uses these to
say where the dashboard already is instead of starting a second server on the same file,
and a plain ``benchboard serve`` to name the server that holds the file it was given.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import psutil

DEFAULT_API_URL = "http://localhost:8000"
SCHEMA_PATH = "/schema/openapi.json"  # open even with --token, and titled by the app
APP_TITLE = "benchboard"
PROBE_TIMEOUT_S = 5.0  # the schema is built on its first request; a busy machine is slow


def is_benchboard(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a benchboard server answers at ``url``."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + SCHEMA_PATH, timeout=timeout) as answer:
            schema = json.loads(answer.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(schema, dict) and schema.get("info", {}).get("title") == APP_TITLE


def _url(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("::", "::1") or ":" in host:
        host = "[::1]" if host in ("::", "::1") else f"[{host}]"
    return f"http://{host}:{port}"


def server_of(pid: int | None) -> str | None:
    """The URL of the benchboard server that process ``pid`` is, or None if it is not one
    (or cannot be inspected)."""
    if pid is None:
        return None
    try:
        listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return None
    for address in listening:
        url = _url(address.ip, address.port)
        if is_benchboard(url):
            return url
    return None
