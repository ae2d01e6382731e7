"""What the run WebSocket forwards of the run's channel: changes in order, never an older snapshot.

The subscriber and the socket are stand-ins for Litestar's (an async iterator of the channel's
raw events, and a sink for what is sent); the events are the publisher's own encoding."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import msgspec

from engine.runs import RunStatus
from webapp.live import StatusEvent, _send_updates


def status(elapsed: float, done: int, state: str = "running") -> RunStatus:
    return RunStatus(
        run_id="r1", status=state, progress=done / 4, current_step=None, start_time=None, elapsed_time=elapsed,
        estimated_remaining_time=None, completed_models=0, total_models=1, error=None, completed_configs=done,
        total_configs=4, priority="high", created_at=datetime(2026, 12, 3, tzinfo=timezone.utc), completion_time=None,
    )


class Channel:
    def __init__(self, statuses: list[RunStatus]):
        self._raw = [msgspec.json.encode(StatusEvent(status=s)) for s in statuses]

    async def iter_events(self):
        for raw in self._raw:
            yield raw


class Socket:
    def __init__(self):
        self.sent: list[dict] = []

    async def send_data(self, data: str, mode: str) -> None:
        self.sent.append(msgspec.json.decode(data))


def test_a_snapshot_older_than_the_one_sent_is_dropped_and_the_stream_ends_at_the_terminal_one():
    first_read = status(2.5, 1)
    channel = Channel([
        status(2.0, 1),  # published before the first read, delivered after it
        first_read,  # the same as sent
        status(3.0, 2),
        status(4.0, 4, "completed"),
        status(5.0, 4, "completed"),  # never reached: the stream ends at the terminal status
    ])
    socket = Socket()
    asyncio.run(_send_updates(socket, channel, first_read))
    assert [(sent["elapsed_time"], sent["status"]) for sent in socket.sent] == [(3.0, "running"), (4.0, "completed")]
