"""``BenchmarkAPIClient``: the blocking client.

    client = BenchmarkAPIClient("http://localhost:8000")
    run = client.start_benchmark(models=["bert-tiny"], batch_sizes=[1, 8])
    final = client.monitor_progress(run["run_id"], lambda s: print(s["progress"], s["current_step"]))
    results = client.get_results(run["run_id"])

Every answer is the server's JSON as plain dicts and lists, so ``status["progress"]`` works.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from benchboard_client import calls
from benchboard_client.errors import ServerUnreachable
from benchboard_client.following import FollowPolicy, RunFollower
from benchboard_client.transport import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT_S,
    ServerAddress,
    decode,
    destination,
    export_file_name,
    partial_file,
    raise_for_error,
    translated_errors,
)

log = logging.getLogger(__name__)
# OSError covers a refused or reset connection; WebSocketException a failed handshake or a drop.
SOCKET_ERRORS = (OSError, WebSocketException)


class BenchmarkAPIClient:
    """A benchboard server's JSON API. ``token`` is sent as ``Authorization: Bearer``; ``timeout``
    bounds each HTTP request (not a whole run: following one waits as long as it lasts)."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, follow_policy: FollowPolicy | None = None):
        self.address = ServerAddress.parse(base_url, token, timeout)
        self.follow_policy = follow_policy or FollowPolicy()
        self._http = httpx.Client(**self.address.http_options())

    @property
    def base_url(self) -> str:
        return self.address.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BenchmarkAPIClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _send(self, call: calls.Call):
        with translated_errors(self.address):
            response = self._http.request(call.method, call.path, params=call.params, json=call.json)
        return decode(response)

    def _download(self, call: calls.Call, target: Path) -> Path:
        part = partial_file(target)
        try:
            with translated_errors(self.address), self._http.stream(call.method, call.path,
                                                                     params=call.params) as response:
                if response.is_error:
                    response.read()
                    raise_for_error(response)
                with open(part, "wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)
        return target

    # ---- runs -------------------------------------------------------------------

    def start_benchmark(self, priority: str | None = None, hardware: list[str] | None = None,
                        models: list[str] | None = None, batch_sizes: list[int] | None = None,
                        precision: str | None = None, progressive_mode: bool | None = None,
                        incremental: bool | None = None, sequence_length: int | None = None,
                        force: bool | None = None, scenario: str | None = None,
                        new_tokens: int | None = None, timing: str | None = None,
                        attn_implementation: str | None = None, image_size: int | None = None,
                        threads: int | None = None, repeats: int | None = None) -> dict:
        """Queue a run; returns ``run_id, status, message, started_at, total_configs``.

        Arguments left at None take the server's defaults: priority "high", hardware
        ["cpu"], the priority's model tier, batch sizes [1, 8], fp32, progressive and
        incremental on, force off, scenario "forward" ("generate": greedy decoding of
        ``new_tokens`` tokens, 32 by default, timed token by token), sequence length 128;
        ``timing`` "latency" at batch size 1 and "throughput" above; ``attn_implementation``
        "sdpa" ("eager", "flash_attention_2"); ``image_size`` each vision model's own;
        ``threads`` (torch threads in the worker) the server's setting; ``repeats`` 1 (fresh
        worker processes each config is measured in, their samples pooled).
        """
        return self._send(calls.start_benchmark(
            priority=priority, hardware=hardware, models=models, batch_sizes=batch_sizes, precision=precision,
            progressive_mode=progressive_mode, incremental=incremental, sequence_length=sequence_length,
            force=force, scenario=scenario, new_tokens=new_tokens, timing=timing,
            attn_implementation=attn_implementation, image_size=image_size, threads=threads, repeats=repeats))

    def get_status(self, run_id: str) -> dict:
        return self._send(calls.get_status(run_id))

    def get_results(self, run_id: str) -> dict:
        """The run's rows so far (all of them once it has ended), its request and its failures."""
        return self._send(calls.get_results(run_id))

    def cancel(self, run_id: str) -> dict:
        """Cancel a queued or running run; returns its status. Cancelling an ended run changes nothing."""
        return self._send(calls.cancel(run_id))

    def list_runs(self, status: str | None = None, limit: int | None = None,
                  offset: int | None = None) -> list[dict]:
        """Status objects of runs, newest first, optionally only those with ``status``."""
        return self._send(calls.list_runs(status=status, limit=limit, offset=offset))

    # ---- following a run --------------------------------------------------------

    def watch(self, run_id: str, *, on_notice: Callable[[str], object] | None = None) -> Iterator[dict]:
        """Yield the run's status on every change, ending after its terminal status.

        Follows the WebSocket, reconnects when it drops, then falls back to polling
        ``/status`` (see ``benchboard_client.following``). Raises NotFound for an unknown run.
        ``on_notice(text)`` is called with a line when the server is lost and retried, and when
        it is back (without it, those lines are logged as warnings).
        """
        follower = RunFollower(run_id, self.follow_policy, on_notice=on_notice,
                               server=f"the server at {self.base_url}")
        socket_url = self.address.socket_url(run_id)
        while True:
            try:
                with connect(socket_url, additional_headers=self.address.headers,
                             open_timeout=self.address.timeout) as socket:
                    for message in socket:
                        status = follower.on_message(message)
                        if status is not None:
                            yield status
                        if follower.finished:
                            return
                dropped = None  # the server closed the socket before the run's end
            except SOCKET_ERRORS as error:
                log.info("run %s: socket dropped (%s)", run_id, error or type(error).__name__)
                dropped = error
            delay = follower.after_socket_drop(dropped)
            if delay is None:
                break
            log.info("run %s: reconnecting in %.1fs", run_id, delay)
            time.sleep(delay)
        log.info("run %s: following by polling /status", run_id)
        while True:
            try:
                status = follower.on_status(self.get_status(run_id))
            except ServerUnreachable as error:
                time.sleep(follower.after_unreachable(error))
                continue
            if status is not None:
                yield status
            if follower.finished:
                return
            time.sleep(self.follow_policy.poll_interval)

    def monitor_progress(self, run_id: str, callback: Callable[[dict], object],
                         exit_on_complete: bool = True, *,
                         on_notice: Callable[[str], object] | None = None) -> dict | RunMonitor:
        """Call ``callback(status)`` on every change of the run; return its final status.

        With ``exit_on_complete=False`` the call does not wait: it follows the run in a
        background thread and returns a ``RunMonitor`` whose ``wait()`` gives the final status.
        ``on_notice(text)`` hears when the server is lost (and retried) and when it is back.
        """
        if not exit_on_complete:
            return RunMonitor(lambda: self.monitor_progress(run_id, callback, on_notice=on_notice))
        final = None
        for status in self.watch(run_id, on_notice=on_notice):
            callback(status)
            final = status
        return final

    # ---- catalog, results and reports ---------------------------------------------

    def get_models(self) -> list[dict]:
        return self._send(calls.get_models())

    def get_hardware(self) -> list[dict]:
        return self._send(calls.get_hardware())

    def get_reports(self) -> list[dict]:
        """``[{run_id, status, reports: [file names], url}]``, one entry per run with reports."""
        return self._send(calls.get_reports())

    def download_report(self, run_id: str, name: str, path: str | Path) -> Path:
        """Save report ``name`` ("report.html", "report.md", "results.json") of a run to ``path``,
        a file, or a folder to put it in."""
        return self._download(calls.download_report(run_id, name), destination(path, name))

    def query_results(self, model: str | None = None, hardware: str | None = None,
                      batch_size: int | None = None, precision: str | None = None,
                      limit: int | None = None, family: str | None = None) -> list[dict]:
        """Stored result rows matching every filter given, newest first (server default limit 100):
        ``model`` a model's name, ``family`` a model family, ``hardware`` a device's name or type."""
        return self._send(calls.query_results(model=model, hardware=hardware, batch_size=batch_size,
                                              precision=precision, limit=limit, family=family))

    def compare_runs(self, baseline: str | None = None, contender: str | None = None, *,
                     history: str | None = None, threshold: str | float | None = None,
                     threshold_for: list[str] | None = None, lookback: int | None = None) -> dict:
        """Run ``contender`` against run ``baseline`` config by config, or (``history=RUN_ID``) a run
        against the last ``lookback`` results of each of its configs.

        ``threshold`` is "5%" or 0.05 (server default 5%); ``threshold_for`` lists per-config
        ones as "PATTERN=THRESHOLD". Returns ``{mode, configs: [{config_key, ratio, ratio_ci_low,
        ratio_ci_high, p_value, verdict, ...}], added, removed, counts, has_regression, ...}``.
        """
        return self._send(calls.compare_runs(baseline=baseline, contender=contender, history=history,
                                             threshold=threshold, threshold_for=threshold_for,
                                             lookback=lookback))

    def run_sql(self, sql: str, params: dict | None = None) -> dict:
        """One read-only query over the result tables and views, with ``$name`` parameters.

        Returns ``{columns, rows, row_count, truncated, elapsed_ms}``.
        """
        return self._send(calls.run_sql(sql, params))

    def export(self, format: str, path: str | Path, *, model: str | None = None, hardware: str | None = None,
               batch_size: int | None = None, precision: str | None = None,
               run_id: str | None = None) -> Path:
        """Save results as csv, parquet or json to ``path`` (a file, or a folder to put it in)."""
        call = calls.export(format, model=model, hardware=hardware, batch_size=batch_size,
                            precision=precision, run_id=run_id)
        return self._download(call, destination(path, export_file_name(format)))


class RunMonitor:
    """A run followed in a background thread (``monitor_progress(..., exit_on_complete=False)``)."""

    def __init__(self, follow: Callable[[], dict]):
        self._final: dict | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(follow,), name="benchboard-monitor",
                                        daemon=True)
        self._thread.start()

    def _run(self, follow: Callable[[], dict]) -> None:
        try:
            self._final = follow()
        except BaseException as error:  # handed to whoever waits
            self._error = error

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> dict:
        """The final status; re-raises what stopped the monitor; TimeoutError if still running."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the run was still being followed after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._final
