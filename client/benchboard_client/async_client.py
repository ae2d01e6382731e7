"""``AsyncBenchmarkAPIClient``: the same API as ``BenchmarkAPIClient``, as coroutines.

    async with AsyncBenchmarkAPIClient("http://localhost:8000") as client:
        run = await client.start_benchmark(models=["bert-tiny"], batch_sizes=[1])
        async for status in client.watch(run["run_id"]):
            print(status["progress"], status["current_step"])
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

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
SOCKET_ERRORS = (OSError, WebSocketException)


class AsyncBenchmarkAPIClient:
    """See ``BenchmarkAPIClient`` for what each method does; here each is a coroutine."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, follow_policy: FollowPolicy | None = None):
        self.address = ServerAddress.parse(base_url, token, timeout)
        self.follow_policy = follow_policy or FollowPolicy()
        self._http = httpx.AsyncClient(**self.address.http_options())

    @property
    def base_url(self) -> str:
        return self.address.base_url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBenchmarkAPIClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def _send(self, call: calls.Call):
        with translated_errors(self.address):
            response = await self._http.request(call.method, call.path, params=call.params, json=call.json)
        return decode(response)

    async def _download(self, call: calls.Call, target: Path) -> Path:
        part = partial_file(target)
        try:
            with translated_errors(self.address):
                async with self._http.stream(call.method, call.path, params=call.params) as response:
                    if response.is_error:
                        await response.aread()
                        raise_for_error(response)
                    with open(part, "wb") as out:
                        async for chunk in response.aiter_bytes():
                            out.write(chunk)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)
        return target

    # ---- runs -------------------------------------------------------------------

    async def start_benchmark(self, priority: str | None = None, hardware: list[str] | None = None,
                              models: list[str] | None = None, batch_sizes: list[int] | None = None,
                              precision: str | None = None, progressive_mode: bool | None = None,
                              incremental: bool | None = None, sequence_length: int | None = None,
                              force: bool | None = None, scenario: str | None = None,
                              new_tokens: int | None = None, timing: str | None = None,
                              attn_implementation: str | None = None, image_size: int | None = None,
                              threads: int | None = None, repeats: int | None = None) -> dict:
        return await self._send(calls.start_benchmark(
            priority=priority, hardware=hardware, models=models, batch_sizes=batch_sizes, precision=precision,
            progressive_mode=progressive_mode, incremental=incremental, sequence_length=sequence_length,
            force=force, scenario=scenario, new_tokens=new_tokens, timing=timing,
            attn_implementation=attn_implementation, image_size=image_size, threads=threads, repeats=repeats))

    async def get_status(self, run_id: str) -> dict:
        return await self._send(calls.get_status(run_id))

    async def get_results(self, run_id: str) -> dict:
        return await self._send(calls.get_results(run_id))

    async def cancel(self, run_id: str) -> dict:
        return await self._send(calls.cancel(run_id))

    async def list_runs(self, status: str | None = None, limit: int | None = None,
                        offset: int | None = None) -> list[dict]:
        return await self._send(calls.list_runs(status=status, limit=limit, offset=offset))

    # ---- following a run --------------------------------------------------------

    async def watch(self, run_id: str, *,
                    on_notice: Callable[[str], object] | None = None) -> AsyncIterator[dict]:
        """Yield the run's status on every change, ending after its terminal status; ``on_notice``
        as for ``BenchmarkAPIClient.watch``."""
        follower = RunFollower(run_id, self.follow_policy, on_notice=on_notice,
                               server=f"the server at {self.base_url}")
        socket_url = self.address.socket_url(run_id)
        while True:
            try:
                async with connect(socket_url, additional_headers=self.address.headers,
                                   open_timeout=self.address.timeout) as socket:
                    async for message in socket:
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
            await asyncio.sleep(delay)
        log.info("run %s: following by polling /status", run_id)
        while True:
            try:
                status = follower.on_status(await self.get_status(run_id))
            except ServerUnreachable as error:
                await asyncio.sleep(follower.after_unreachable(error))
                continue
            if status is not None:
                yield status
            if follower.finished:
                return
            await asyncio.sleep(self.follow_policy.poll_interval)

    async def monitor_progress(self, run_id: str, callback: Callable[[dict], object],
                               exit_on_complete: bool = True, *,
                               on_notice: Callable[[str], object] | None = None) -> dict | asyncio.Task:
        """Call ``callback(status)`` on every change; return the final status.

        ``callback`` may be a function or a coroutine function.

        With ``exit_on_complete=False`` it returns at once an ``asyncio.Task`` that follows
        the run and whose result is the final status.
        """
        if not exit_on_complete:
            return asyncio.create_task(self.monitor_progress(run_id, callback, on_notice=on_notice))
        final = None
        async for status in self.watch(run_id, on_notice=on_notice):
            outcome = callback(status)
            if inspect.isawaitable(outcome):
                await outcome
            final = status
        return final

    # ---- catalog, results and reports ---------------------------------------------

    async def get_models(self) -> list[dict]:
        return await self._send(calls.get_models())

    async def get_hardware(self) -> list[dict]:
        return await self._send(calls.get_hardware())

    async def get_reports(self) -> list[dict]:
        return await self._send(calls.get_reports())

    async def download_report(self, run_id: str, name: str, path: str | Path) -> Path:
        return await self._download(calls.download_report(run_id, name), destination(path, name))

    async def query_results(self, model: str | None = None, hardware: str | None = None,
                            batch_size: int | None = None, precision: str | None = None,
                            limit: int | None = None, family: str | None = None) -> list[dict]:
        return await self._send(calls.query_results(model=model, hardware=hardware, batch_size=batch_size,
                                                    precision=precision, limit=limit, family=family))

    async def compare_runs(self, baseline: str | None = None, contender: str | None = None, *,
                           history: str | None = None, threshold: str | float | None = None,
                           threshold_for: list[str] | None = None, lookback: int | None = None) -> dict:
        return await self._send(calls.compare_runs(baseline=baseline, contender=contender, history=history,
                                                   threshold=threshold, threshold_for=threshold_for,
                                                   lookback=lookback))

    async def run_sql(self, sql: str, params: dict | None = None) -> dict:
        return await self._send(calls.run_sql(sql, params))

    async def export(self, format: str, path: str | Path, *, model: str | None = None,
                     hardware: str | None = None, batch_size: int | None = None, precision: str | None = None,
                     run_id: str | None = None) -> Path:
        call = calls.export(format, model=model, hardware=hardware, batch_size=batch_size,
                            precision=precision, run_id=run_id)
        return await self._download(call, destination(path, export_file_name(format)))
