"""The JSON API's requests, described once for both the sync and the async client.

Each function returns a ``Call``: what to send, not how. The clients only send it.
Arguments left at None are not sent, so the server's own defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from benchboard_client.errors import InvalidRequest

API_PREFIX = "/api/benchmark"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict = field(default_factory=dict)
    json: dict | None = None


def present(**values) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def segment(value: str, name: str) -> str:
    """A path segment from a user-given id; quoted so '/' or '..' cannot change the route."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name}: must be a non-empty string, not {value!r}", field=name,
                             reason="must be a non-empty string")
    return quote(value, safe="")


def start_benchmark(*, priority=None, hardware=None, models=None, batch_sizes=None, precision=None,
                    progressive_mode=None, incremental=None, sequence_length=None, force=None,
                    scenario=None, new_tokens=None, timing=None, attn_implementation=None, image_size=None,
                    threads=None, repeats=None) -> Call:
    body = present(priority=priority, hardware=hardware, models=models, batch_sizes=batch_sizes,
                   precision=precision, progressive_mode=progressive_mode, incremental=incremental,
                   sequence_length=sequence_length, force=force, scenario=scenario, new_tokens=new_tokens,
                   timing=timing, attn_implementation=attn_implementation, image_size=image_size,
                   threads=threads, repeats=repeats)
    return Call("POST", f"{API_PREFIX}/run", json=body)


def get_status(run_id: str) -> Call:
    return Call("GET", f"{API_PREFIX}/status/{segment(run_id, 'run_id')}")


def get_results(run_id: str) -> Call:
    return Call("GET", f"{API_PREFIX}/results/{segment(run_id, 'run_id')}")


def get_models() -> Call:
    return Call("GET", f"{API_PREFIX}/models")


def get_hardware() -> Call:
    return Call("GET", f"{API_PREFIX}/hardware")


def get_reports() -> Call:
    return Call("GET", f"{API_PREFIX}/reports")


def download_report(run_id: str, name: str) -> Call:
    return Call("GET", f"{API_PREFIX}/reports/{segment(run_id, 'run_id')}/{segment(name, 'name')}")


def query_results(*, model=None, hardware=None, batch_size=None, precision=None, limit=None, family=None) -> Call:
    params = present(model=model, family=family, hardware=hardware, batch_size=batch_size, precision=precision,
                     limit=limit)
    return Call("GET", f"{API_PREFIX}/query", params=params)


def list_runs(*, status=None, limit=None, offset=None) -> Call:
    return Call("GET", f"{API_PREFIX}/runs", params=present(status=status, limit=limit, offset=offset))


def cancel(run_id: str) -> Call:
    return Call("POST", f"{API_PREFIX}/cancel/{segment(run_id, 'run_id')}")


def run_sql(sql: str, params: dict | None = None) -> Call:
    return Call("POST", f"{API_PREFIX}/sql", json=present(sql=sql, params=params))


def export(export_format: str, *, model=None, hardware=None, batch_size=None, precision=None,
           run_id=None) -> Call:
    params = present(format=export_format, model=model, hardware=hardware, batch_size=batch_size,
                     precision=precision, run_id=run_id)
    return Call("GET", f"{API_PREFIX}/export", params=params)


def compare_runs(*, baseline=None, contender=None, history=None, threshold=None, threshold_for=None,
                 lookback=None) -> Call:
    if history is None and (baseline is None or contender is None):
        missing = "baseline" if baseline is None else "contender"
        raise InvalidRequest(f"{missing}: give baseline and contender, or history", field=missing,
                             reason="give baseline and contender, or history")
    params = present(baseline=baseline, contender=contender, history=history, threshold=threshold,
                     threshold_for=list(threshold_for) if threshold_for else None, lookback=lookback)
    return Call("GET", f"{API_PREFIX}/compare", params=params)


def run_socket_path(run_id: str) -> str:
    return f"{API_PREFIX}/ws/{segment(run_id, 'run_id')}"
