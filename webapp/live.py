"""Live updates: engine events onto Litestar Channels, and the run WebSocket of the JSON API.

Scheduler threads publish through ``loop.call_soon_threadsafe``: ChannelsPlugin.publish
is not thread-safe and must run on the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging

import anyio
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.exceptions import WebSocketDisconnect

from engine.errors import UnknownRunError
from engine.result import Result
from engine.runs import TERMINAL_STATUSES
from webapp.api.dependencies import origin_allowed
from webapp.services import Services

log = logging.getLogger(__name__)
RUNS_CHANNEL = "runs"
WS_POLICY_VIOLATION = 1008


def run_channel(run_id: str) -> str:
    return f"run:{run_id}"


def result_summary(run_id: str, result: Result) -> dict:
    """What a live view shows of a freshly recorded config."""
    stats = result.stats
    return {
        "run_id": run_id,
        "model_name": result.config.model,
        "hardware": result.config.hardware,
        "batch_size": result.config.batch_size,
        "precision": result.config.precision,
        "status": result.status,
        "p50_latency_ms": stats.p50_ms if stats else None,
        "p90_latency_ms": stats.p90_ms if stats else None,
        "p99_latency_ms": stats.p99_ms if stats else None,
        "throughput_items_per_second": result.throughput_items_per_second,
        "memory_peak_mb": result.memory_peak_mb,
        "ci_met": stats.ci_met if stats else None,
        "error_type": result.error_type,
        "error_message": result.error_message,
        "stop_reason": result.stop_reason,
    }


class ChannelsPublisher:
    """engine.ports.EventSink that publishes to the ``runs`` and ``run:{id}`` channels."""

    def __init__(self, channels: ChannelsPlugin, loop: asyncio.AbstractEventLoop):
        self._channels = channels
        self._loop = loop

    def _publish(self, message: dict, run_id: str) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish_on_loop, message, run_id)

    def _publish_on_loop(self, message: dict, run_id: str) -> None:
        try:
            self._channels.publish(message, [RUNS_CHANNEL, run_channel(run_id)])
        except RuntimeError:
            # Channels stop before the scheduler at shutdown; nobody is listening any more.
            log.debug("dropped an event of run %s: channels are stopped", run_id)

    def run_updated(self, run_id: str, status: dict) -> None:
        self._publish({"type": "status", "status": status}, run_id)

    def result_recorded(self, run_id: str, result: Result) -> None:
        self._publish({"type": "result", "run_id": run_id, "row": result_summary(run_id, result)}, run_id)


async def _send_updates(socket: WebSocket, subscriber, last: dict) -> None:
    """Forward status changes in order; close after the terminal one."""
    async for raw in subscriber.iter_events():
        message = json.loads(raw)
        if message.get("type") != "status":
            continue
        status = message["status"]
        if status == last:
            continue
        last.clear()
        last.update(status)
        await socket.send_json(status)
        if status["status"] in TERMINAL_STATUSES:
            return


async def _answer_client(socket: WebSocket, services: Services, run_id: str) -> None:
    while True:
        text = (await socket.receive_text()).strip().strip('"').lower()
        if text == "ping":
            await socket.send_json({"pong": True})
        elif text == "status":
            await socket.send_json(await anyio.to_thread.run_sync(services.run_status, run_id))
        else:
            await socket.send_json({"error": f"unknown message {text[:40]!r}: send \"ping\" or \"status\""})


@websocket("/api/benchmark/ws/{run_id:str}")
async def run_updates(socket: WebSocket, run_id: str, services: Services, channels: ChannelsPlugin) -> None:
    """Sends the status object at once, then on every change; closes after the terminal status."""
    # Browsers do not apply CORS to WebSockets; refuse the handshake from pages that the
    # CORS allowlist would refuse. Clients that send no Origin (scripts, Electron's main
    # process) are not browser pages and pass.
    if not origin_allowed(socket):
        await socket.close(code=WS_POLICY_VIOLATION, reason="origin not allowed")
        return
    await socket.accept()
    try:
        async with channels.start_subscription([run_channel(run_id)]) as subscriber:
            # Read the status after subscribing, so no change between the two is lost.
            try:
                status = await anyio.to_thread.run_sync(services.run_status, run_id)
            except UnknownRunError as error:
                await socket.send_json({"error": str(error)})
                return
            await socket.send_json(status)
            if status["status"] in TERMINAL_STATUSES:
                return
            last = dict(status)
            async with anyio.create_task_group() as tasks:
                async def follow() -> None:
                    await _send_updates(socket, subscriber, last)
                    tasks.cancel_scope.cancel()

                async def listen() -> None:
                    try:
                        await _answer_client(socket, services, run_id)
                    except WebSocketDisconnect:
                        pass
                    tasks.cancel_scope.cancel()

                tasks.start_soon(follow)
                tasks.start_soon(listen)
    finally:
        if socket.connection_state != "disconnect":
            await socket.close()
