"""Live updates: engine events onto Litestar Channels, and the run WebSocket of the JSON API.

Scheduler threads publish through ``loop.call_soon_threadsafe``: ChannelsPlugin.publish
is not thread-safe and must run on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
import msgspec
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.exceptions import WebSocketDisconnect

from engine.errors import UnknownRunError
from engine.result import Measurement
from engine.runs import RunStatus
from webapp.api.dependencies import origin_allowed, token_accepted
from webapp.api.parameters import RUN_ID_MAX_LENGTH
from webapp.wiring.services import Services

log = logging.getLogger(__name__)
RUNS_CHANNEL = "runs"
WS_POLICY_VIOLATION = 1008


async def refuse(socket: WebSocket, reason: str) -> None:
    """Close the handshake with a policy violation the client can read: accepted first, since a
    close before the accept reaches a real client (a browser, ``websockets``) as a bare HTTP 403,
    its reason lost. Nothing is sent in between."""
    await socket.accept()
    await socket.close(code=WS_POLICY_VIOLATION, reason=reason)


def run_channel(run_id: str) -> str:
    return f"run:{run_id}"


class StatusEvent(msgspec.Struct, tag_field="type", tag="status", kw_only=True):
    status: RunStatus


class ResultEvent(msgspec.Struct, tag_field="type", tag="result", kw_only=True):
    run_id: str
    row: Measurement


RunEvent = StatusEvent | ResultEvent
decode_event = msgspec.json.Decoder(RunEvent).decode


class ChannelsPublisher:
    """engine.ports.EventSink that publishes to the ``runs`` and ``run:{id}`` channels."""

    def __init__(self, channels: ChannelsPlugin, loop: asyncio.AbstractEventLoop):
        self._channels = channels
        self._loop = loop

    def _publish(self, event: RunEvent, run_id: str) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish_on_loop, msgspec.json.encode(event), run_id)

    def _publish_on_loop(self, message: bytes, run_id: str) -> None:
        try:
            self._channels.publish(message, [RUNS_CHANNEL, run_channel(run_id)])
        except RuntimeError:
            # Channels stop before the scheduler at shutdown; nobody is listening any more.
            log.debug("dropped an event of run %s: channels are stopped", run_id)

    def run_updated(self, run_id: str, status: RunStatus) -> None:
        self._publish(StatusEvent(status=status), run_id)

    def result_recorded(self, run_id: str, result: Measurement) -> None:
        # Live views show statistics; the raw samples (up to 10,000) stay in storage.
        row = msgspec.structs.replace(result, samples_ms=None, ttft_samples_ms=None, tpot_samples_ms=None)
        self._publish(ResultEvent(run_id=run_id, row=row), run_id)

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        """The terminal status went out with ``run_updated``."""


async def send_struct(socket: WebSocket, value) -> None:
    await socket.send_data(msgspec.json.encode(value).decode(), mode="text")


async def _send_updates(socket: WebSocket, subscriber, last: RunStatus) -> None:
    """Forward status changes in order; close after the terminal one. A snapshot older than the
    last one sent (published before the status read at the start, delivered after it) is dropped:
    a client must never see a run's elapsed time go back."""
    async for raw in subscriber.iter_events():
        event = decode_event(raw)
        if not isinstance(event, StatusEvent) or event.status == last or event.status.elapsed_time < last.elapsed_time:
            continue
        last = event.status
        await send_struct(socket, last)
        if last.terminal:
            return


async def _answer_client(socket: WebSocket, services: Services, run_id: str) -> None:
    while True:
        text = (await socket.receive_text()).strip().strip('"').lower()
        if text == "ping":
            await socket.send_json({"pong": True})
        elif text == "status":
            await send_struct(socket, await anyio.to_thread.run_sync(services.run_status, run_id))
        else:
            await socket.send_json({"error": f"unknown message {text[:40]!r}: send \"ping\" or \"status\""})


@websocket("/api/benchmark/ws/{run_id:str}")
async def run_updates(socket: WebSocket, run_id: str, services: Services, channels: ChannelsPlugin) -> None:
    """Sends the status object at once, then on every change; closes after the terminal status."""
    # Browsers do not apply CORS to WebSockets; refuse the handshake from pages that the
    # CORS allowlist would refuse. Clients that send no Origin (scripts, Electron's main
    # process) are not browser pages and pass.
    if not origin_allowed(socket):
        await refuse(socket, "origin not allowed")
        return
    # With --token the stream needs it too: the header (clients) or /login's cookie (pages).
    if not token_accepted(socket, services.settings.token):
        await refuse(socket, "this server needs 'Authorization: Bearer <token>'")
        return
    await socket.accept()
    try:
        if len(run_id) > RUN_ID_MAX_LENGTH:
            await socket.send_json({"error": f"run_id: at most {RUN_ID_MAX_LENGTH} characters, not {len(run_id)}"})
            return
        async with channels.start_subscription([run_channel(run_id)]) as subscriber:
            # Read the status after subscribing, so no change between the two is lost.
            try:
                status = await anyio.to_thread.run_sync(services.run_status, run_id)
            except UnknownRunError as error:
                await socket.send_json({"error": str(error)})
                return
            await send_struct(socket, status)
            if status.terminal:
                return
            async with anyio.create_task_group() as tasks:
                async def follow() -> None:
                    await _send_updates(socket, subscriber, status)
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
