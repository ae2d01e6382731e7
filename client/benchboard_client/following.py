"""How to follow a run to its end: the decisions, without the I/O.

Both clients follow a run the same way:

1. Read status objects from the run's WebSocket.
2. When the socket drops before a terminal status, reconnect after each of
   ``FollowPolicy.reconnect_delays``. A connection that delivers a status
   resets that count, so a server restart costs one short reconnect.
3. When the reconnects run out, poll ``GET /status`` until the run ends,
   waiting up to ``unreachable_timeout`` for a server that went away.

The terminal status cannot be missed: it is always read, either from the
socket or from ``/status``, before following ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchboard_client.errors import BenchmarkAPIError, NotFound, ServerUnreachable

TERMINAL_STATUSES = ("completed", "failed", "cancelled")


def is_terminal(status: dict) -> bool:
    return status.get("status") in TERMINAL_STATUSES


@dataclass(frozen=True)
class FollowPolicy:
    reconnect_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
    poll_interval: float = 1.0
    unreachable_timeout: float = 60.0


class RunFollower:
    """State of following one run: the last status seen and the reconnect budget."""

    def __init__(self, run_id: str, policy: FollowPolicy, clock: Callable[[], float] = time.monotonic):
        self.run_id = run_id
        self.policy = policy
        self._clock = clock
        self.last: dict | None = None
        self._reached_server = False
        self._failed_connects = 0
        self._unreachable_since: float | None = None

    @property
    def finished(self) -> bool:
        return self.last is not None and is_terminal(self.last)

    def on_message(self, text: str | bytes) -> dict | None:
        """A socket message: the status to report, or None for a repeat or a non-status message."""
        try:
            message = json.loads(text)
        except ValueError as error:
            message = f"run {self.run_id}: the server sent a message that is not JSON"
            raise BenchmarkAPIError(message) from error
        if not isinstance(message, dict) or "run_id" not in message:
            if isinstance(message, dict) and message.get("error"):
                # The only error the server sends unasked: the run does not exist.
                raise NotFound(str(message["error"]), status_code=404, error="not found", field="run_id",
                               body=message)
            return None
        self._failed_connects = 0
        return self._accept(message)

    def on_status(self, status: dict) -> dict | None:
        """A polled status: the status to report, or None for a repeat."""
        self._unreachable_since = None
        return self._accept(status)

    def _accept(self, status: dict) -> dict | None:
        self._reached_server = True
        if status == self.last:
            return None
        self.last = status
        return status

    def after_socket_drop(self) -> float | None:
        """Seconds to wait before reconnecting the socket, or None to poll /status instead."""
        if not self._reached_server:
            # Never reached: a status request says at once whether the server or the run is missing.
            return None
        if self._failed_connects >= len(self.policy.reconnect_delays):
            return None
        delay = self.policy.reconnect_delays[self._failed_connects]
        self._failed_connects += 1
        return delay

    def after_unreachable(self, error: ServerUnreachable) -> float:
        """Seconds until the next poll; re-raises once the server has been away too long."""
        if not self._reached_server:
            raise error
        now = self._clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if now - self._unreachable_since > self.policy.unreachable_timeout:
            raise error
        return self.policy.poll_interval
