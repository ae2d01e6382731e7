"""How to follow a run to its end: the decisions, without the I/O.

Both clients follow a run the same way:

1. Read status objects from the run's WebSocket.
2. When the socket drops before a terminal status, reconnect after each of
   ``FollowPolicy.reconnect_delays``. A connection that delivers a status
   resets that count, so a server restart costs one short reconnect.
3. When the reconnects run out, poll ``GET /status`` until the run ends,
   waiting up to ``unreachable_timeout`` for a server that went away (counted
   from the drop, so the reconnects spend part of it).

A follower that cannot reach the server again says so at once, with a notice
("lost the connection to ...; retrying for up to 60 s"), and again when the
server answers ("... is back"): ``watch(run_id, on_notice=print)`` hands them
over; without ``on_notice`` they are logged as warnings.

The terminal status cannot be missed: it is always read, either from the
socket or from ``/status``, before following ends.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchboard_client.errors import BenchmarkAPIError, NotFound, ServerUnreachable

TERMINAL_STATUSES = ("completed", "failed", "cancelled")
log = logging.getLogger(__name__)


def is_terminal(status: dict) -> bool:
    return status.get("status") in TERMINAL_STATUSES


@dataclass(frozen=True)
class FollowPolicy:
    reconnect_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
    poll_interval: float = 1.0
    unreachable_timeout: float = 60.0


class RunFollower:
    """State of following one run: the last status seen and the reconnect budget."""

    def __init__(self, run_id: str, policy: FollowPolicy, clock: Callable[[], float] = time.monotonic, *,
                 on_notice: Callable[[str], object] | None = None, server: str = "the server"):
        self.run_id = run_id
        self.policy = policy
        self._clock = clock
        self._on_notice = on_notice
        self._server = server
        self.last: dict | None = None
        self._reached_server = False
        self._failed_connects = 0
        self._unreachable_since: float | None = None  # since the connection was lost
        self._announced = False  # the loss was noticed, so its end is too

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
        return self._accept(status)

    def _accept(self, status: dict) -> dict | None:
        self._reached_server = True
        self._unreachable_since = None
        if self._announced:
            self._announced = False
            self._notice(f"run {self.run_id}: {self._server} is back; following the run again")
        if status == self.last:
            return None
        self.last = status
        return status

    def _notice(self, text: str) -> None:
        if self._on_notice is None:
            log.warning("%s", text)
        else:
            log.info("%s", text)
            self._on_notice(text)

    def _lost(self, error: BaseException | None) -> None:
        """The server did not answer: start the outage's clock, and say so once."""
        if self._unreachable_since is None:
            self._unreachable_since = self._clock()
        if not self._announced:
            self._announced = True
            reason = f" ({error})" if error is not None and str(error) else ""
            self._notice(f"run {self.run_id}: lost the connection to {self._server}{reason}; "
                         f"retrying for up to {self.policy.unreachable_timeout:g} s")

    def after_socket_drop(self, error: BaseException | None = None) -> float | None:
        """Seconds to wait before reconnecting the socket, or None to poll /status instead.

        ``error``: what ended the connection, or the attempt to make one."""
        if not self._reached_server:
            # Never reached: a status request says at once whether the server or the run is missing.
            return None
        if self._unreachable_since is None:
            # A drop alone starts the outage's clock; a reconnect that fails too is a lost server
            # (a socket that drops and reconnects at once says nothing).
            self._unreachable_since = self._clock()
        elif self._failed_connects > 0:
            self._lost(error)
        if self._failed_connects >= len(self.policy.reconnect_delays):
            return None
        delay = self.policy.reconnect_delays[self._failed_connects]
        self._failed_connects += 1
        return delay

    def after_unreachable(self, error: ServerUnreachable) -> float:
        """Seconds until the next poll; re-raises once the server has been away too long."""
        if not self._reached_server:
            raise error
        self._lost(error)
        if self._clock() - self._unreachable_since > self.policy.unreachable_timeout:
            raise ServerUnreachable(f"{error} (gave up after {self.policy.unreachable_timeout:g} s)",
                                    status_code=error.status_code) from error
        return self.policy.poll_interval
